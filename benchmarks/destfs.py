"""Where the contenders write: a journaled ext4 the bench mounts (on a loop device doing direct
I/O to its image file, as a disk takes writes), or the work folder's own.

Why not simply the work folder: on this machine ``/`` is ext4 **without a journal**, and there
creating a file costs 0.4-0.7 ms of kernel CPU after many recent deletes (``__ext4_new_inode``
→ ``find_inode_bit`` → ``recently_deleted``: without a journal ext4 skips inodes freed in the
last minute or so, scanning past each one). A drain of 2,000 small files right after another
contender's 2,000 were deleted pays it on every create: every contender alike, inflating their
CPU figures, and nothing a real ETL host (journaled ext4 or XFS) sees. benchmarks/README.md has
the figures. So, when it runs as root, the bench puts every destination on a fresh journaled
ext4 in an image file, loop-mounted for the run and removed after; where it cannot, it says
so and uses the work folder's file system, whatever it is.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from benchmarks.scenarios import GIB

_COMMAND_TIMEOUT = 120.0
MIN_IMAGE_BYTES = 4 * GIB


@dataclass(frozen=True)
class Destination:
    root: Path
    description: str
    # Why the journaled image is not in use, when it was asked for; "" when it is (or was not
    # asked for).
    fallback_note: str = ""


def mount_of(path: Path) -> tuple[str, str, str] | None:
    """(device, mount point, type) of the mount holding ``path``, from /proc/mounts."""
    best: tuple[str, str, str] | None = None
    resolved = str(path.resolve())
    try:
        lines = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        fields = line.split()
        if len(fields) < 3:
            continue
        device, mount, fstype = fields[:3]
        inside = resolved == mount or resolved.startswith(mount.rstrip("/") + "/")
        if inside and (best is None or len(mount) > len(best[1])):
            best = (device, mount, fstype)
    return best


def describe(path: Path) -> str:
    """The file system holding ``path``, and for ext4 whether it has a journal."""
    found = mount_of(path)
    if found is None:
        return "unknown file system"
    device, mount, fstype = found
    text = f"{fstype} on {device} (mounted at {mount})"
    if Path(device).name.startswith("loop"):
        text += ", direct I/O to its image file" if direct_io(device) else ", buffered loop"
    if fstype == "ext4":
        task = Path("/sys/fs/ext4") / Path(device).name / "journal_task"
        with contextlib.suppress(OSError):
            journal = task.read_text().strip()
            text += ", no journal" if journal == "<none>" else ", journaled"
    return text


def _call(*argv: str) -> tuple[str, str | None]:
    """(its output, None) on success, else ("", what went wrong)."""
    try:
        done = subprocess.run(
            argv, check=False, capture_output=True, text=True, timeout=_COMMAND_TIMEOUT
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return "", f"{argv[0]}: {exc}"
    if done.returncode != 0:
        return "", f"{' '.join(argv[:2])}: {(done.stderr or done.stdout).strip()[:200]}"
    return done.stdout, None


def _run(*argv: str) -> str | None:
    """None on success, else what went wrong."""
    return _call(*argv)[1]


def _is_mount(path: Path) -> bool:
    found = mount_of(path)
    return found is not None and found[1] == str(path.resolve())


def _loop_devices(image: Path) -> list[str]:
    """The loop devices attached to ``image`` (`losetup -j`: "/dev/loop0: []: (/path)")."""
    listed, _ = _call("losetup", "-j", str(image))
    return [line.partition(":")[0] for line in listed.splitlines() if line.startswith("/")]


def _detach(image: Path) -> None:
    for device in _loop_devices(image):
        _run("losetup", "-d", device)


def direct_io(device: str) -> bool:
    """Does this loop device write to its file with direct I/O?"""
    flag = Path("/sys/block") / Path(device).name / "loop" / "dio"
    try:
        return flag.read_text().strip() == "1"
    except OSError:
        return False


def _attach(image: Path) -> tuple[str | None, str | None]:
    """(the loop device, None), or (None, what went wrong).

    With direct I/O to the image file, as a disk would take them, a file's writeback reaches
    the disk when the kernel writes it. A buffered loop device (`mount -o loop`) lands it in the
    image file's page cache instead, and the next fsync's flush writes all of it: an fsync
    then pays for every byte written since, whatever was handed to the disk before.
    """
    device, error = _call(
        "losetup", "-f", "--show", "--direct-io=on", "--sector-size", "4096", str(image)
    )
    return (None, error) if error else (device.strip(), None)


@contextlib.contextmanager
def journaled_image(workdir: Path, size: int) -> Iterator[Path | str]:
    """A fresh journaled ext4 on a loop device doing direct I/O to its image file, mounted at
    workdir/dest-ext4; or why there is none."""
    tools = ("mkfs.ext4", "mount", "umount", "losetup")
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if os.geteuid() != 0:
        yield "not root (mount needs it)"
        return
    if missing:
        yield f"{', '.join(missing)} not found"
        return
    image, mountpoint = workdir / "dest-ext4.img", workdir / "dest-ext4"
    mountpoint.mkdir(parents=True, exist_ok=True)
    if _is_mount(mountpoint):  # left behind by a bench that was killed
        _run("umount", str(mountpoint))
    _detach(image)
    image.unlink(missing_ok=True)
    with image.open("wb") as file:
        file.truncate(max(size, MIN_IMAGE_BYTES))  # sparse: only what is written takes space
    # Inode tables and journal zeroed now, not by a kernel thread in the middle of a run; 4 KiB
    # blocks, as the loop device's 4 KiB sectors (which direct I/O needs) require.
    error = _run(
        "mkfs.ext4",
        *("-q", "-F", "-b", "4096", "-E", "lazy_itable_init=0,lazy_journal_init=0"),
        str(image),
    )
    device = None
    if not error:
        device, error = _attach(image)
    if device is not None:
        error = _run("mount", device, str(mountpoint))
    if error:
        _detach(image)
        image.unlink(missing_ok=True)
        yield error
        return
    try:
        yield mountpoint
    finally:
        _run("umount", str(mountpoint))
        _detach(image)
        image.unlink(missing_ok=True)


@contextlib.contextmanager
def destination(workdir: Path, loop: bool, size: int) -> Iterator[Destination]:
    """Where the runs' folders go; ``size``: the most one run writes."""
    note = ""
    if loop:
        with journaled_image(workdir, 2 * size) as mounted:
            if isinstance(mounted, Path):
                text = (
                    f"{describe(mounted)}: a fresh image file on the work folder's "
                    f"{describe(workdir)}"
                )
                yield Destination(mounted, text)
                return
            note = f"no journaled ext4 image ({mounted}): the work folder's file system is used"
    root = workdir / "dest"
    root.mkdir(parents=True, exist_ok=True)
    yield Destination(root, describe(root), note)
