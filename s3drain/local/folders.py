"""The local folders a run needs: created, proven writable, and not on a full disk, before
anything in S3 changes."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from s3drain.errors import AbortError, ConfigError, describe

MIN_FREE_BYTES = 1024 * 1024


def prepare_local(folders: list[Path]) -> None:
    """Create the folders, prove we can write there, and refuse to start on a full disk."""
    for folder in folders:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            raise ConfigError(f"{folder} exists and is not a folder") from None
        except PermissionError:
            raise ConfigError(
                f"cannot create {folder}: permission denied; choose a --local-base-path this user "
                "can write"
            ) from None
        except OSError as exc:
            raise ConfigError(f"cannot create {folder}: {describe(exc)}") from None
        if not os.access(folder, os.W_OK | os.X_OK):
            raise ConfigError(f"cannot write to {folder}: permission denied")
    free = shutil.disk_usage(folders[0]).free
    if free < MIN_FREE_BYTES:
        raise AbortError(
            f"the disk holding {folders[0]} is full ({free:,} bytes free): free some space and "
            "run again; nothing was changed"
        )
