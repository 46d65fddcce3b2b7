"""`checksums.py`: the CRC32 s3drain proves most objects with is zlib-ng's, gives the standard
zlib's values however the bytes are cut, and is loaded only when an object needs it."""

from __future__ import annotations

import random
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

from s3drain import checksums


def _cuts(data: bytes, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    pieces, pos = [], 0
    while pos < len(data):
        step = rng.choice((1, 7, 4096, 65_537, 1 << 20))
        pieces.append(data[pos : pos + step])
        pos += step
    return pieces


@pytest.mark.parametrize("seed", range(4))
def test_crc32_gives_zlibs_values_however_the_bytes_are_cut(seed: int) -> None:
    data = random.Random(seed).randbytes(3 * 1024 * 1024 + seed)
    value = 0
    for piece in _cuts(data, seed):
        value = checksums.crc32(memoryview(piece) if seed % 2 else piece, value)
    assert value == zlib.crc32(data)


def test_a_crc32_of_segments_combined_is_the_crc32_of_the_whole() -> None:
    data = random.Random(9).randbytes(5 * 1024 * 1024 + 3)
    first, second = checksums.Crc("crc32"), checksums.Crc("crc32")
    first.update(data[: 2 * 1024 * 1024 + 1])
    second.update(data[2 * 1024 * 1024 + 1 :])
    whole = first.then(second)
    assert whole.value == zlib.crc32(data) and whole.length == len(data)


def test_a_files_crc32_is_the_one_s3_writes(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"hello, world\n" * 100_000)
    expected = checksums.Crc("crc32")
    expected.value = zlib.crc32(path.read_bytes())
    assert checksums.file_digest(str(path), "crc32") == expected.b64()


def test_zlib_ng_is_loaded_by_the_first_crc32_and_not_before() -> None:
    script = (
        "import sys\n"
        "from s3drain import checksums\n"
        "before = 'zlib_ng.zlib_ng' in sys.modules\n"
        "checksums.crc32(b'x', 0)\n"
        "print(before, 'zlib_ng.zlib_ng' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout
    assert out.split() == ["False", "True"]
