"""botocore's model files, parsed once and kept: a run's client starts in about 20 ms instead of
about 85.

botocore reads S3's service model (1.4 MB of JSON, gzipped) and its endpoint rules from disk
and parses them at every start: 60-70 ms of a 4 KiB-object run's 1.6 s, before its first
request. Here each file botocore would parse is kept as a pickle of exactly what botocore's
JSON loader returns (its OrderedDicts included), in the user's cache folder, and loaded from
there (about 4 ms for S3's model) while the source file has the same path, size and
modification time, under the same botocore and Python versions. Anything else, or any
problem with the cache, falls back to botocore's own loader: the cache can make a start
faster, never different.

A pickle runs code when loaded, so one is loaded only from a folder and a file that belong
to this user and that no one else can write (the trust Python gives its own `__pycache__`).
`S3DRAIN_MODEL_CACHE=off` turns the cache off; `XDG_CACHE_HOME` moves it, as for other tools.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import os
import pickle
import stat
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import botocore
from botocore.loaders import JSONFileLoader

_EXTENSIONS = (".json", ".json.gz")  # what botocore's loader tries, in its order
_FORMAT = 1  # bump when what a cache file holds changes


def cache_folder(environ: Mapping[str, str] = os.environ) -> Path | None:
    """Where the parsed models are kept: None when the cache is off or there is no home."""
    # Any case, as the settings' names (config/sources.py) are read.
    switch = next((v for k, v in environ.items() if k.upper() == "S3DRAIN_MODEL_CACHE"), "")
    if switch.strip().lower() in ("off", "0", "no", "false"):
        return None
    base = environ.get("XDG_CACHE_HOME") or ""
    if not base:
        home = environ.get("HOME") or ""
        if not home:
            return None
        base = os.path.join(home, ".cache")
    return Path(base) / "s3drain" / "botocore-models"


class CachedJSONFileLoader(JSONFileLoader):
    """botocore's JSON loader, with what it parses kept in `folder`."""

    def __init__(self, folder: Path | None) -> None:
        self._folder = folder

    def load_file(self, file_path: str) -> Any:
        if self._folder is None:
            return super().load_file(file_path)
        source = _source(file_path)
        if source is None:
            return super().load_file(file_path)  # nothing there: botocore says so
        key = _key(source)
        cached = self._folder / (hashlib.sha256(key.encode()).hexdigest() + ".pickle")
        found = _read(cached, key)
        if found is not None:
            return found
        data = super().load_file(file_path)
        if data is not None:
            _write(self._folder, cached, key, data)
        return data


def _source(file_path: str) -> tuple[str, os.stat_result] | None:
    """The file botocore would read for `file_path`, and its stat."""
    for ext in _EXTENSIONS:
        with contextlib.suppress(OSError):
            found = os.stat(file_path + ext)
            if stat.S_ISREG(found.st_mode):
                return file_path + ext, found
    return None


def _key(source: tuple[str, os.stat_result]) -> str:
    path, found = source
    return "\0".join(
        map(
            str,
            (
                _FORMAT,
                botocore.__version__,
                sys.version_info[:3],
                os.path.abspath(path),
                found.st_size,
                found.st_mtime_ns,
            ),
        )
    )


def _private(path: Path, folder: bool) -> bool:
    """Owned by this user, writable by no one else (and, for a file, a regular file)."""
    try:
        found = os.lstat(path)
    except OSError:
        return False
    kind = stat.S_ISDIR if folder else stat.S_ISREG
    return kind(found.st_mode) and found.st_uid == os.geteuid() and not found.st_mode & 0o022


def _read(cached: Path, key: str) -> Any:
    if not (_private(cached.parent, folder=True) and _private(cached, folder=False)):
        return None
    # A model is a few hundred thousand small objects: the collector's passes while they are
    # made (each over every object of the process) cost more than making them.
    collecting = gc.isenabled()
    gc.disable()
    try:
        with open(cached, "rb") as handle:
            # Loaded only from this user's private folder and file (checked above).
            stored_key, data = pickle.load(handle)  # noqa: S301
    except Exception:  # damaged or from another format: parse the source instead
        return None
    finally:
        if collecting:
            gc.enable()
    return data if stored_key == key else None


def _write(folder: Path, cached: Path, key: str, data: Any) -> None:
    """Best effort: a cache that cannot be written is a cache that is not used."""
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not _private(folder, folder=True):
            return
        fd, temp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".pickle")
        try:
            with os.fdopen(fd, "wb") as handle:
                pickle.dump((key, data), handle, protocol=pickle.HIGHEST_PROTOCOL)
            os.replace(temp, cached)  # whole or not at all, for runs starting side by side
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise
    except (OSError, pickle.PicklingError, RecursionError):
        return
