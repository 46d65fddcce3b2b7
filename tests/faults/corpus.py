"""What goes into a trial's bucket: ordinary objects of mixed sizes, decoys outside the prefix,
and hostile keys. Everything derives from the trial's seed, so a failing trial's bucket can be
rebuilt exactly."""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass

from tests.faults.invariant import Version

PREFIX = "exports/2024/"
KiB = 1024
MiB = 1024 * KiB
EMPTY_MD5 = hashlib.md5(b"").hexdigest()

# Keys beside the prefix that a drain of PREFIX must never touch: the prefix without its
# slash, a sibling that shares its first characters, another year.
DECOY_KEYS = ("exports/2024", "exports/2024-old/keep.bin", "exports/2023/keep.bin")
_FOLDERS = ("", "d0/", "d1/", "d2/", "deep/a/b/", "deep/a/c/", "x y/", "ünï/")


@dataclass(frozen=True)
class Blob:
    key: str
    data: bytes
    version: Version

    @property
    def size(self) -> int:
        return len(self.data)


def blob(key: str, data: bytes) -> Blob:
    version = Version(
        key=key,
        md5=hashlib.md5(data).hexdigest(),
        sha256=hashlib.sha256(data).hexdigest(),
        size=len(data),
    )
    return Blob(key, data, version)


@dataclass(frozen=True)
class Corpus:
    blobs: tuple[Blob, ...]  # in the bucket before the first run
    # Of those, the ones the test also puts in processed/ (the ETL already has them).
    processed: tuple[Blob, ...] = ()
    # Of those, the keys whose processed copy carries s3drain's ETag xattr, as when the ETL
    # moved the file from raw/; the others were copied, or written by the ETL itself.
    tagged: frozenset[str] = frozenset()

    @property
    def versions(self) -> tuple[Version, ...]:
        return tuple(b.version for b in self.blobs)

    @property
    def drainable(self) -> tuple[Blob, ...]:
        return tuple(b for b in self.blobs if b.key.startswith(PREFIX))

    @property
    def total_bytes(self) -> int:
        return sum(b.size for b in self.blobs)

    def with_more(self, *extra: Blob) -> Corpus:
        return Corpus((*self.blobs, *extra), self.processed, self.tagged)


def _small_size(rng: random.Random) -> int:
    """Mostly small files, a few empty, a tail up to 512 KiB (below the ranged threshold)."""
    roll = rng.random()
    if roll < 0.04:
        return 0
    if roll < 0.25:
        return rng.randint(1, 200)
    if roll < 0.9:
        return rng.randint(200, 48 * KiB)
    return rng.randint(48 * KiB, 512 * KiB)


def ordinary(
    rng: random.Random,
    *,
    small: tuple[int, int],
    large: tuple[int, int],
    processed_share: float = 0.05,
) -> Corpus:
    """`small` and `large` are (min, max) counts; large objects are 2-6 MiB at odd sizes, so
    with a 1 MiB part size their ranged GETs are in flight for a while."""
    blobs: list[Blob] = []
    for i in range(rng.randint(*small)):
        folder = rng.choice(_FOLDERS)
        blobs.append(blob(f"{PREFIX}{folder}f{i:04d}.bin", rng.randbytes(_small_size(rng))))
    for i in range(rng.randint(*large)):
        size = rng.randint(2 * MiB, 6 * MiB) | 1
        blobs.append(blob(f"{PREFIX}big/L{i:02d}.dat", rng.randbytes(size)))
    for key in DECOY_KEYS:
        blobs.append(blob(key, rng.randbytes(rng.randint(1, 2000))))
    candidates = [b for b in blobs if b.key.startswith(PREFIX) and b.size > 0]
    processed = rng.sample(candidates, k=int(len(candidates) * processed_share))
    tagged = frozenset(b.key for b in processed if rng.random() < 0.5)
    return Corpus(tuple(blobs), tuple(processed), tagged)


# -- hostile keys ----------------------------------------------------------------------------


@dataclass(frozen=True)
class HostileKey:
    rel: str  # the part after PREFIX
    why: str
    # True: the README says s3drain refuses it (or skips it), so it must stay in S3.
    must_stay: bool
    size: int = 64


def hostile_keys(abs_marker: str) -> tuple[HostileKey, ...]:
    """`abs_marker` is a unique name; the `/abs` key would land at `/<abs_marker>` if joined
    naively, and the trial checks that no such path appears."""
    long_segments = "/".join(["s" * 200] * 4)  # many segments: a legal path
    return (
        HostileKey("../escape.bin", "'..' would leave raw/ for the base path", True),
        HostileKey("../../escape-further.bin", "'..' twice would leave the base path", True),
        HostileKey(f"/{abs_marker}", "a '/' after the prefix: an absolute path", True),
        HostileKey("a/../../b.bin", "'..' inside the key", True),
        HostileKey("a//b.bin", "an empty segment would merge with a/b.bin", True),
        HostileKey("./dot.bin", "a '.' segment", True),
        HostileKey("nul\x00byte.bin", "NUL cannot be in a file name", True),
        HostileKey("tab\tkey.bin", "control character U+0009", True),
        HostileKey("cr\rkey.bin", "control character U+000D", True),
        HostileKey("esc\x1b[31mred.bin", "an ANSI escape: terminal injection", True),
        HostileKey("del\x7fkey.bin", "control character U+007F", True),
        HostileKey("nel\x85key.bin", "C1 control character U+0085", True),
        HostileKey("nl\nkey.bin", "a newline (moto's HTTP server cannot hold it)", True),
        HostileKey(_fill_to("longname/", 1024), "1024-byte key, one 1002-byte name", True),
        HostileKey(_fill_to(f"{long_segments}/", 1024), "1024-byte key in 200-byte names", False),
        HostileKey(
            _fill_to("wide/", 1024, char="é", segment=100), "1024 bytes of 2-byte UTF-8", False
        ),
        HostileKey("dir/", "a zero-byte folder marker: skipped", True, size=0),
        HostileKey("", "the prefix itself as a zero-byte marker: skipped", True, size=0),
        HostileKey("notdir/", "a folder-style key holding bytes: refused", True),
        HostileKey("pair", "'a' beside 'a/b': one of the two must stay", False),
        HostileKey("pair/child.bin", "'a/b' beside 'a': one of the two must stay", False),
        HostileKey("Case.csv", "differs from case.csv only in case", False),
        HostileKey("case.csv", "differs from Case.csv only in case", False),
        HostileKey("caf\u00e9.csv", "NFC é", False),
        HostileKey("cafe\u0301.csv", "NFD é: another key, another name on ext4", False),
        HostileKey("bidi\u202egnp.exe", "a right-to-left override (category Cf)", False),
        HostileKey("emoji-\U0001f600.bin", "a four-byte UTF-8 character", False),
        HostileKey("nonchar-\ufffe.bin", "the noncharacter U+FFFE", False),
        HostileKey("back\\slash.bin", "a backslash, legal on Linux", False),
        HostileKey(".s3drain-0123456789abcdef0123.part", "s3drain's own temp-file name", True),
        HostileKey("link/evil.bin", "a symlinked folder in raw/ points outside", True),
    )


def _fill_to(start: str, total: int, *, char: str = "n", segment: int | None = None) -> str:
    """A rel path that makes PREFIX + rel exactly `total` UTF-8 bytes; with `segment`, a '/'
    every `segment` characters keeps each name under the 255-byte limit."""
    rel, count = start, 0
    while True:
        piece = f"/{char}" if segment and count and count % segment == 0 else char
        if len((PREFIX + rel + piece).encode()) > total:
            break
        rel, count = rel + piece, count + 1
    return rel + "z" * (total - len((PREFIX + rel).encode()))
