"""Every write s3drain makes to the local disk goes through `LocalFS`.

It is the seam the tests use to inject a full disk or a failing link (a subclass that raises), and
the one place that knows how a file becomes durable: data fsynced before the file gets its real
name, the name linked in without ever replacing another file, the folder fsynced after.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os

from s3drain.records import FileId

_HAS_FALLOCATE = hasattr(os, "posix_fallocate")
_HAS_FADVISE = hasattr(os, "posix_fadvise")
# errno values that mean "this disk cannot take more": the run stops instead of failing every
# object that follows.
STORAGE_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS})
_COMPARE_CHUNK = 1024 * 1024


class LocalFS:
    def __init__(self) -> None:
        self._known_dirs: set[str] = set()

    def makedirs(self, path: str) -> None:
        """Create missing folders; fsync the parent of each one created, so the folder a file is
        linked into survives a crash too. Raises NotADirectoryError/FileExistsError when a file
        is in the way."""
        if path in self._known_dirs:
            return
        missing: list[str] = []
        current = path
        while not os.path.isdir(current):
            # Re-check isdir: another worker may have just made this very folder.
            if os.path.lexists(current) and not os.path.isdir(current):
                raise NotADirectoryError(errno.ENOTDIR, "a file is in the way", current)
            missing.append(current)
            current = os.path.dirname(current)
        for folder in reversed(missing):
            try:
                os.mkdir(folder)
            except FileExistsError:
                if not os.path.isdir(folder):
                    raise
            self.fsync_dir(os.path.dirname(folder))
        if len(self._known_dirs) > 50_000:
            self._known_dirs.clear()  # bounded memory on prefixes with many folders
        self._known_dirs.add(path)

    def create_temp(self, path: str) -> int:
        """Open the temp file locked (flock), so no other run's sweep removes it while it is
        written. Locked before it is truncated: if another run is writing this very file
        (same key and ETag), raise BlockingIOError and leave its bytes alone.

        Almost always the file is new: created exclusively, it is empty and needs no truncate
        (a syscall per small object saved). Only a file left by a killed run or held by
        another run takes the second open."""
        flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW
        try:
            fd = os.open(path, flags | os.O_EXCL, 0o666)
            new = True
        except FileExistsError:
            fd = os.open(path, flags, 0o666)
            new = False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if not new:
                os.ftruncate(fd, 0)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def remove_if_unlocked(self, path: str) -> bool:
        """Remove a stale temp file, unless a live writer holds its lock."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except OSError:  # gone already, or not ours to open
            return False
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            self.remove(path)
            return True
        finally:
            os.close(fd)

    def write(self, fd: int, data: bytes | memoryview) -> None:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]

    def pwrite(self, fd: int, data: bytes | memoryview, offset: int) -> None:
        view = memoryview(data)
        while view:
            written = os.pwrite(fd, view, offset)
            view = view[written:]
            offset += written

    def pread(self, fd: int, size: int, offset: int) -> bytes:
        return os.pread(fd, size, offset)

    def truncate(self, fd: int, size: int) -> None:
        os.ftruncate(fd, size)

    def allocate(self, fd: int, size: int) -> None:
        """Reserve the blocks up front: a full disk shows before a byte is downloaded."""
        if size <= 0:
            return
        if _HAS_FALLOCATE:
            try:
                os.posix_fallocate(fd, 0, size)
            except OSError as exc:
                if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
                    raise
                os.ftruncate(fd, size)
        else:
            os.ftruncate(fd, size)

    def fsync(self, fd: int) -> None:
        os.fsync(fd)

    def write_behind(self, fd: int, offset: int, length: int) -> None:
        """Start writing these bytes to disk now, without waiting: the fsync that makes a large
        download durable then finds most of it done (1 GiB: 0.5 s of fsync here otherwise,
        all of it after the last byte arrived). Linux starts the writeback on DONTNEED, and
        drops those of the range's pages that are already clean."""
        if _HAS_FADVISE:
            with contextlib.suppress(OSError):
                os.posix_fadvise(fd, offset, length, os.POSIX_FADV_DONTNEED)

    def close(self, fd: int) -> None:
        os.close(fd)

    def link_into_place(self, temp: str, target: str) -> None:
        """Give the finished file its real name atomically and never over another file: a hard
        link fails with FileExistsError where rename would silently replace."""
        try:
            os.link(temp, target, follow_symlinks=False)
        except FileExistsError:
            raise
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EMLINK, errno.ENOSYS):
                raise
            # No hard links here (some FUSE and SMB mounts): check, then rename.
            if os.path.lexists(target):
                raise FileExistsError(errno.EEXIST, "file exists", target) from exc
            os.rename(temp, target)
            return
        os.unlink(temp)

    def is_dir(self, path: str) -> bool:
        return os.path.isdir(path)

    def fsync_dir(self, path: str) -> None:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def file_id(self, fd: int) -> FileId:
        return FileId.of(os.fstat(fd))

    def fsync_file(self, path: str, expect: FileId) -> None:
        """Before a delete that relies on a file this run did not write (an ETL's copy): its
        bytes and its folder entry on disk. The file must still be the one whose content was
        proven; one moved or replaced since raises FileNotFoundError."""
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        try:
            if FileId.of(os.fstat(fd)) != expect:
                raise FileNotFoundError(errno.ENOENT, "changed since its content was proven", path)
            os.fsync(fd)
        finally:
            os.close(fd)
        self.fsync_dir(os.path.dirname(path))

    def same_bytes(self, fd: int, path: str) -> bool:
        """Does the file at `path` hold exactly the bytes of the open file `fd`?"""
        size = os.fstat(fd).st_size
        try:
            other = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except (FileNotFoundError, NotADirectoryError):
            return False
        try:
            if os.fstat(other).st_size != size:
                return False
            offset = 0
            while offset < size:
                want = min(_COMPARE_CHUNK, size - offset)
                mine, theirs = os.pread(fd, want, offset), os.pread(other, want, offset)
                if mine != theirs or not mine:
                    return False
                offset += len(mine)
            return True
        finally:
            os.close(other)

    def remove(self, path: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def is_storage_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in STORAGE_FULL_ERRNOS
