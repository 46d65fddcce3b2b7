"""A file system without user extended attributes, as NFS v3/v4.0-4.1, SMB and many FUSE
mounts are on ETL hosts: a FUSE mount made by `bindfs --xattr-none` over a folder of the test's.

Where FUSE itself is missing (no /dev/fuse, or no permission to mount) the caller skips with
`FUSE_MISSING` as the loud reason. Where FUSE works but bindfs is not installed, it is an
error, not a skip: `make test` installs it (Debian's bindfs) on machines like CI's.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

FUSE_MISSING = "FUSE is not available here (no /dev/fuse, or mounting is not permitted)"


class MountError(RuntimeError):
    """The mount could not be made on a machine that has FUSE."""


def fuse_available() -> bool:
    return os.path.exists("/dev/fuse") and os.access("/dev/fuse", os.R_OK | os.W_OK)


def takes_user_xattrs(folder: Path) -> bool:
    probe = folder / ".xattr-probe"
    probe.write_bytes(b"")
    try:
        os.setxattr(probe, "user.s3drain.probe", b"1")
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM, errno.EACCES):
            return False
        raise
    finally:
        probe.unlink()
    return True


def _unmount(mountpoint: Path) -> None:
    for command in (["fusermount", "-u", "-z", str(mountpoint)], ["umount", "-l", str(mountpoint)]):
        if shutil.which(command[0]):
            done = subprocess.run(command, capture_output=True, check=False)
            if done.returncode == 0:
                return


@contextlib.contextmanager
def xattrless(backing: Path, mountpoint: Path) -> Iterator[Path]:
    """`mountpoint` shows `backing` with extended attributes turned off."""
    if shutil.which("bindfs") is None:
        raise MountError(
            "bindfs is not installed: run `apt-get install -y bindfs` (make test does)"
        )
    backing.mkdir(parents=True, exist_ok=True)
    mountpoint.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["bindfs", "--xattr-none", "--no-allow-other", str(backing), str(mountpoint)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise MountError(f"bindfs failed: {done.stderr.strip() or done.returncode}")
    try:
        deadline = time.monotonic() + 5
        while not os.path.ismount(mountpoint):
            if time.monotonic() > deadline:
                raise MountError(f"{mountpoint} did not appear as a mount")
            time.sleep(0.05)
        if takes_user_xattrs(mountpoint):
            raise MountError(f"{mountpoint} still takes user xattrs: bindfs ignored --xattr-none")
        yield mountpoint
    finally:
        _unmount(mountpoint)
