"""Did a contender do the job? Every object on disk with its bytes, nothing else, bucket empty."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from benchmarks.dataset import ObjectSpec, file_md5
from benchmarks.s3 import S3Client, remaining_keys

_SHOWN = 3  # problems named one by one; the rest are counted


@dataclass(frozen=True)
class Verdict:
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def summary(self) -> str:
        return "; ".join(self.problems)


def verify(
    client: S3Client, bucket: str, prefix: str, objects: Sequence[ObjectSpec], dest: Path
) -> Verdict:
    problems = []
    left = remaining_keys(client, bucket, prefix)
    if left:
        problems.append(f"left in the bucket: {_some(left)}")
    problems += _check_files(objects, dest)
    return Verdict(tuple(problems))


def _check_files(objects: Sequence[ObjectSpec], dest: Path) -> list[str]:
    missing, damaged = [], []
    for spec in objects:
        path = dest / spec.rel
        if not path.is_file():
            missing.append(spec.rel)
        elif path.stat().st_size != spec.size or file_md5(path) != spec.md5:
            damaged.append(spec.rel)
    expected = {spec.rel for spec in objects}
    extra = [rel for rel in _files_under(dest) if rel not in expected]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing: {_some(missing)}")
    if damaged:
        problems.append(f"{len(damaged)} with wrong bytes: {_some(damaged)}")
    if extra:
        problems.append(f"{len(extra)} unexpected files: {_some(extra)}")
    return problems


def _files_under(root: Path) -> list[str]:
    found = []
    for folder, _, names in os.walk(root):
        found += [(Path(folder) / name).relative_to(root).as_posix() for name in names]
    return sorted(found)


def _some(items: Sequence[str]) -> str:
    shown = ", ".join(items[:_SHOWN])
    return shown if len(items) <= _SHOWN else f"{shown}, …"
