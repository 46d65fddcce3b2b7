"""The objects of a scenario: made once, PUT identically before every contender, checked after.

Small bodies are random bytes kept in memory (2,000 objects of 4 KiB are 8 MiB); big ones are
written once to files and streamed from there, so a 1 GiB object is never held in memory.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from benchmarks.scenarios import FOLDERS, MIB, Scenario

IN_MEMORY_LIMIT = 1 * MIB
_WRITE_CHUNK = 8 * MIB


@dataclass(frozen=True)
class ObjectSpec:
    key: str
    # The key below the prefix: where a correct drain puts the file under its destination.
    rel: str
    size: int
    md5: str
    body: bytes | None = None
    source: Path | None = None

    @contextlib.contextmanager
    def open_body(self) -> Iterator[bytes | BinaryIO]:
        if self.body is not None:
            yield self.body
            return
        assert self.source is not None
        with self.source.open("rb") as file:
            yield file


def relative_key(index: int) -> str:
    return f"d{index % FOLDERS:02d}/obj-{index:05d}.bin"


def build(scenario: Scenario, prefix: str, data_dir: Path) -> tuple[ObjectSpec, ...]:
    """Random contents for every object of ``scenario`` (fresh random bytes, so MD5s differ)."""
    specs = []
    for index in range(scenario.count):
        rel = relative_key(index)
        if scenario.size <= IN_MEMORY_LIMIT:
            body = os.urandom(scenario.size)
            specs.append(ObjectSpec(prefix + rel, rel, scenario.size, _md5(body), body=body))
        else:
            source = data_dir / f"obj-{index:05d}.bin"
            digest = _write_random(source, scenario.size)
            specs.append(ObjectSpec(prefix + rel, rel, scenario.size, digest, source=source))
    return tuple(specs)


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def _write_random(path: Path, size: int) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.md5()
    with path.open("wb") as file:
        remaining = size
        while remaining:
            chunk = os.urandom(min(_WRITE_CHUNK, remaining))
            digest.update(chunk)
            file.write(chunk)
            remaining -= len(chunk)
    return digest.hexdigest()


def file_md5(path: Path) -> str:
    digest = hashlib.md5()
    with path.open("rb") as file:
        while chunk := file.read(_WRITE_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
