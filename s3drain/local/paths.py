"""Where a key becomes a local path, and what already sits at that path.

A key maps to `<raw>/<key relative to the prefix's folder>` and, for the processed check, to the
same relative path under `<processed>`. Keys that cannot map safely are refused, never
normalised: `..`, absolute keys, `a//b`, NUL and control characters, names or paths too long for
the file system, and names s3drain reserves for its temporary files. Two keys never share a file.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import uuid
from dataclasses import dataclass
from enum import StrEnum

from s3drain.records import FileId

TEMP_NAME_PREFIX = ".s3drain-"
NAME_MAX = 255  # the usual limit on one file name, in bytes
TEMP_NAME_SUFFIX = ".part"
# Unicode's category Cc, which is fixed at these 65 code points: one search per key, not a
# category lookup per character.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


@dataclass(frozen=True, slots=True)
class Refusal:
    reason: str


@dataclass(frozen=True, slots=True)
class FolderMarker:
    """A zero-byte `dir/` key: the console's 'Create folder'. Nothing to download."""


@dataclass(frozen=True, slots=True)
class MappedPath:
    rel: str
    raw: str
    processed: str


def prefix_folder(prefix: str) -> str:
    """`exports/2024/` -> itself; `exports/2024` -> `exports/` (the folder the prefix names
    things in, so `exports/2024-old/x` keeps the part that tells it apart)."""
    return prefix[: prefix.rfind("/") + 1]


def relative_key(key: str, prefix: str) -> str:
    folder = prefix_folder(prefix)
    if not key.startswith(folder):
        raise ValueError(f"key {key!r} is not under the prefix {prefix!r}")
    return key[len(folder) :]


def refusal_for(rel: str, name_max: int = NAME_MAX) -> str | None:
    """Why this relative path cannot be a local file's, or None."""
    if "\x00" in rel:
        return "the key contains a NUL byte, which no file name can hold"
    control = _CONTROL.search(rel)
    if control is not None:
        return f"the key contains the control character U+{ord(control.group()):04X}"
    if rel.startswith("/"):
        return "the key would become an absolute path ('/' after the prefix)"
    for segment in rel.split("/"):
        if segment == "":
            return "the key has an empty path segment ('//'), which would merge with another key"
        if segment in (".", ".."):
            return f"the key has a {segment!r} segment, which would leave the download folder"
        try:
            encoded = len(segment.encode("utf-8"))
        except UnicodeEncodeError:
            return "the key is not valid UTF-8"
        if encoded > name_max:
            return f"a name in the key is {encoded} bytes; the file system allows {name_max}"
        if segment.startswith(TEMP_NAME_PREFIX):
            return f"names starting with {TEMP_NAME_PREFIX!r} are reserved for temporary files"
    return None


@dataclass(frozen=True)
class Layout:
    """The two local folders a key can map into, with their file-system limits."""

    raw_dir: str
    processed_dir: str
    prefix: str
    name_max: int = 255
    path_max: int = 4096
    case_insensitive: bool = False

    @classmethod
    def create(cls, raw_dir: str, processed_dir: str, prefix: str, *, probe: bool = True) -> Layout:
        """`probe=False` (dry run) writes nothing and assumes a case-sensitive file system."""
        probe_dir = _existing_ancestor(raw_dir)
        return cls(
            raw_dir=os.path.abspath(raw_dir),
            processed_dir=os.path.abspath(processed_dir),
            prefix=prefix,
            name_max=_pathconf(probe_dir, "PC_NAME_MAX", 255),
            path_max=_pathconf(probe_dir, "PC_PATH_MAX", 4096),
            case_insensitive=probe and is_case_insensitive(probe_dir),
        )

    def map_key(self, key: str, size: int) -> MappedPath | Refusal | FolderMarker:
        rel = relative_key(key, self.prefix)
        if rel == "" or rel.endswith("/"):
            if size == 0:
                return FolderMarker()
            return Refusal(f"the key ends with '/' (a folder name) but holds {size} bytes")
        reason = refusal_for(rel, self.name_max)
        if reason is not None:
            return Refusal(reason)
        raw = os.path.join(self.raw_dir, rel)
        processed = os.path.join(self.processed_dir, rel)
        longest = max(len(os.fsencode(raw)), len(os.fsencode(processed)))
        if longest >= self.path_max:
            return Refusal(f"the local path would be {longest} bytes; the limit is {self.path_max}")
        for root, path in ((self.raw_dir, raw), (self.processed_dir, processed)):
            if not _stays_inside(os.path.dirname(path), root):
                return Refusal(f"a symbolic link under {root} would take the file outside it")
        return MappedPath(rel=rel, raw=raw, processed=processed)


def _stays_inside(parent: str, root: str) -> bool:
    """A symlinked folder inside raw/ must not carry a key (or a 'present' check) elsewhere.

    Checked afresh for every key, since the disk may change during a run, but cheaply: one
    lstat per existing folder *below* the root (the segments were already validated, so
    `parent` is `root/<segments>`); only a symlink among them costs a full realpath."""
    below = parent[len(root) + 1 :] if parent != root else ""
    current = root
    for segment in below.split("/") if below else ():
        current = f"{current}/{segment}"
        try:
            mode = os.lstat(current).st_mode
        except (FileNotFoundError, NotADirectoryError):
            return True  # the rest does not exist yet and will be created as real folders
        if stat.S_ISLNK(mode):
            real_parent = os.path.realpath(parent)
            real_root = os.path.realpath(root)
            return real_parent == real_root or real_parent.startswith(real_root.rstrip("/") + "/")
    return True


def _existing_ancestor(path: str) -> str:
    current = os.path.abspath(path)
    while not os.path.isdir(current):
        parent = os.path.dirname(current)
        if parent == current:
            break
        current = parent
    return current


def _pathconf(path: str, name: str, default: int) -> int:
    try:
        value = os.pathconf(path, name)
    except (OSError, ValueError):
        return default
    return value if value > 0 else default


def is_case_insensitive(directory: str) -> bool:
    """Probe once per run: on such a file system `A.csv` and `a.csv` are one file."""
    probe = os.path.join(directory, f"{TEMP_NAME_PREFIX}case-{uuid.uuid4().hex}{TEMP_NAME_SUFFIX}")
    try:
        fd = os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except OSError:
        return False  # cannot write here (dry run on a fresh path): assume the Linux default
    os.close(fd)
    try:
        return os.path.exists(os.path.join(directory, os.path.basename(probe).upper()))
    finally:
        os.unlink(probe)


class Kind(StrEnum):
    MISSING = "missing"
    FILE = "file"
    DIR = "dir"  # a folder where the file would go
    OTHER = "other"  # a symlink, fifo or device: never trusted, never replaced
    BLOCKED = "blocked"  # a parent in the path is a file, so the path cannot exist


@dataclass(frozen=True, slots=True)
class LocalFile:
    """What sits at a path: its kind, and for a regular file which file it is (device, inode,
    size, mtime). Nothing here says whose bytes it holds: only content, or the ledger, can."""

    path: str
    kind: Kind
    file: FileId | None = None

    @property
    def size(self) -> int:
        return self.file.size if self.file is not None else 0


def look(path: str, *, case_insensitive: bool = False) -> LocalFile:
    """One lstat: never a directory walk (a listdir only on a case-insensitive file system)."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return LocalFile(path, Kind.MISSING)
    except NotADirectoryError:
        return LocalFile(path, Kind.BLOCKED)
    if stat.S_ISDIR(info.st_mode):
        return LocalFile(path, Kind.DIR)
    if not stat.S_ISREG(info.st_mode):
        return LocalFile(path, Kind.OTHER)
    if case_insensitive and os.path.basename(path) not in os.listdir(os.path.dirname(path)):
        # Found under another case: it is another key's file, not this one's.
        return LocalFile(path, Kind.OTHER)
    return LocalFile(path, Kind.FILE, FileId.of(info))


def temp_name_for(target: str, key: str, etag: str) -> str:
    """A hidden, short name beside the target: same folder (so the final link is atomic), a name
    no key can take (refused above), and derived from key + ETag so two workers never share one."""
    token = hashlib.sha1(f"{key}\x00{etag}".encode("utf-8", "surrogatepass")).hexdigest()[:20]
    return os.path.join(os.path.dirname(target), f"{TEMP_NAME_PREFIX}{token}{TEMP_NAME_SUFFIX}")


def is_temp_name(name: str) -> bool:
    return name.startswith(TEMP_NAME_PREFIX) and name.endswith(TEMP_NAME_SUFFIX)
