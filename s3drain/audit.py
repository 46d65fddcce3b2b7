"""The JSON Lines audit log: one line per object, appended, never rewritten.

It answers "what did s3drain delete, and where did it go?" long after the run:

    jq -c 'select(.deleted) | {key, local_path, verified}' .s3drain/audit.jsonl
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from s3drain.records import Outcome


def audit_entry(outcome: Outcome, run_id: str, bucket: str) -> dict[str, Any]:
    r = outcome.record
    return {
        "time": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "run": run_id,
        "bucket": bucket,
        "key": r.key,
        "size": r.size,
        "etag": r.etag,
        "version_id": r.version_id,
        "last_modified": r.last_modified.isoformat(),
        "status": outcome.status.value,
        "deleted": outcome.deleted,
        "local_path": outcome.local_path,
        "verified": outcome.verified,
        "detail": outcome.detail or None,
    }


class AuditLog:
    """Appends with O_APPEND, one write per line: a killed run never leaves half a line behind
    another line, and `tail -f` shows each object as it is decided. Opened at the first line,
    so a run stopped by a check before any object was handled leaves no file behind."""

    def __init__(self, path: Path, run_id: str, bucket: str) -> None:
        self.path = path
        self._run_id = run_id
        self._bucket = bucket
        self._fd: int | None = None
        self.lines = 0

    def write(self, outcome: Outcome) -> None:
        if self._fd is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC
            self._fd = os.open(self.path, flags, 0o644)
        line = json.dumps(audit_entry(outcome, self._run_id, self._bucket), ensure_ascii=False)
        data = (line + "\n").encode("utf-8", "surrogateescape")
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]
        self.lines += 1

    def sync(self) -> None:
        if self._fd is not None:
            os.fsync(self._fd)

    def close(self) -> None:
        if self._fd is None:
            return
        try:
            os.fsync(self._fd)
        finally:
            os.close(self._fd)
            self._fd = None
