"""Which local files `s3drain ingest` takes, and the key each one gets.

Taken: each file named, and every file in a named folder and its sub-folders. Only the file's
own name goes into the key (the layout is fixed), so two files of one name and format would
meet at one key: both are refused and neither is uploaded. Folder walks leave out hidden files
and folders (a leading dot, which covers s3drain's temp files), symlinked folders (no loops),
sockets, pipes and broken links; a file named on the command line is taken as named.

The key is `<layer>/<origin>/<format>/<spec>/YYYY/MM/DD/<name>`. The format is the one given,
or the file's last extension upper-cased (`movies.csv` -> CSV, `x.csv.gz` -> GZ). A name that
the drain would refuse (control characters, s3drain's reserved prefix) or that is not UTF-8
gets no key, so whatever ingest writes, drain can bring back.
"""

from __future__ import annotations

import os
import re
import stat
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

from s3drain.errors import ConfigError, describe
from s3drain.local.paths import TEMP_NAME_PREFIX

MAX_KEY_BYTES = 1024
_FORMAT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")


# -- the key layout ------------------------------------------------------------------------------


class LayoutError(ValueError):
    """This file cannot get a key in the layout; the message says why."""


@dataclass(frozen=True)
class Layout:
    layer: str
    origin: str
    spec: str
    format: str | None  # None: from each file's extension
    day: date

    def format_for(self, name: str) -> str:
        if self.format is not None:
            return self.format
        extension = name.rpartition(".")[2] if "." in name.lstrip(".") else ""
        if not _FORMAT.match(extension):
            raise LayoutError(
                f"{name!r} has no extension to take the format from: pass --format"
                if not extension
                else f"the extension of {name!r} cannot be a format segment: pass --format"
            )
        return extension.upper()

    def key_for(self, name: str) -> str:
        """The key for a file called `name`; LayoutError when it cannot safely have one."""
        if any(unicodedata.category(char) == "Cc" for char in name):
            raise LayoutError(f"the name {name!r} contains a control character")
        if name.startswith(TEMP_NAME_PREFIX):
            raise LayoutError(f"names starting with {TEMP_NAME_PREFIX!r} are s3drain's own")
        day = self.day
        segments = (self.layer, self.origin, self.format_for(name), self.spec)
        key = "/".join((*segments, f"{day.year:04d}", f"{day.month:02d}", f"{day.day:02d}", name))
        try:
            size = len(key.encode("utf-8"))
        except UnicodeEncodeError:
            raise LayoutError(f"the name {name!r} is not valid UTF-8") from None
        if size > MAX_KEY_BYTES:
            raise LayoutError(f"the key would be {size} bytes; S3 allows {MAX_KEY_BYTES}")
        return key


def today_utc() -> date:
    return datetime.now(UTC).date()


# -- which files ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ignored:
    path: Path
    why: str


@dataclass(frozen=True)
class Planned:
    path: Path
    key: str | None
    size: int
    refused: str | None = None


def collect(paths: Sequence[Path]) -> tuple[list[Path], list[Ignored]]:
    """The files to ingest, in a stable order, each once; and what folder walks left out.

    A named path that does not exist, or is neither file nor folder, is a usage error: a typo
    must not become a quiet run that uploaded nothing.
    """
    files: dict[str, Path] = {}
    ignored: list[Ignored] = []
    for given in paths:
        try:
            mode = given.stat().st_mode
        except FileNotFoundError:
            raise ConfigError(f"{given} does not exist") from None
        except OSError as exc:
            raise ConfigError(f"cannot read {given}: {describe(exc)}") from None
        if stat.S_ISDIR(mode):
            found, left_out = _walk(given)
            ignored.extend(left_out)
        elif stat.S_ISREG(mode):
            found = [given]
        else:
            raise ConfigError(f"{given} is not a file or a folder")
        for path in found:
            files.setdefault(os.path.realpath(path), path)
    return sorted(files.values()), ignored


def _walk(top: Path) -> tuple[list[Path], list[Ignored]]:
    files: list[Path] = []
    ignored: list[Ignored] = []
    for folder, dirs, names in os.walk(top):
        here = Path(folder)
        for name in sorted(dirs):
            if name.startswith("."):
                ignored.append(Ignored(here / name, "hidden folder"))
            elif (here / name).is_symlink():
                ignored.append(Ignored(here / name, "symlinked folder (not followed)"))
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and not (here / d).is_symlink())
        for name in sorted(names):
            path = here / name
            if name.startswith("."):
                ignored.append(Ignored(path, "hidden file"))
                continue
            try:
                regular = stat.S_ISREG(path.stat().st_mode)
            except OSError:
                regular = False
            if regular:
                files.append(path)
            else:
                ignored.append(Ignored(path, "not a regular file (or a broken link)"))
    return files, ignored


def plan(files: Sequence[Path], layout: Layout) -> list[Planned]:
    """A key for every file, or the reason it has none. Files that would share a key are all
    refused: uploading one would hide the other, and which one wins would depend on order."""
    keyed: list[tuple[Path, str | None, str | None]] = []
    for path in files:
        try:
            keyed.append((path, layout.key_for(path.name), None))
        except LayoutError as exc:
            keyed.append((path, None, str(exc)))
    owners: dict[str, list[Path]] = {}
    for path, key, _ in keyed:
        if key is not None:
            owners.setdefault(key, []).append(path)
    planned: list[Planned] = []
    for path, key, refused in keyed:
        others = [str(p) for p in owners.get(key or "", []) if p != path]
        if key is not None and others:
            why = f"{', '.join(others)} would go to the same key {key}"
            planned.append(Planned(path, None, size_of(path), why))
        else:
            planned.append(Planned(path, key, size_of(path), refused))
    return planned


def size_of(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0
