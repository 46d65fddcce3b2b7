"""`s3drain history`: what the ledger knows about a key, one line per delivery."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from s3drain.config.sources import Sources, required
from s3drain.errors import ConfigError, ExitCode
from s3drain.local.ledger import Ledger
from s3drain.local.ledger_rows import Delivery
from s3drain.output import printable
from s3drain.units import parse_duration

_GLOB = frozenset("*?[")


def _when(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _since(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        day = datetime.strptime(text.strip(), "%Y-%m-%d").replace(tzinfo=UTC)
        return day.timestamp()
    except ValueError:
        pass
    try:
        return time.time() - parse_duration(text)
    except ValueError:
        raise ConfigError(
            f"--since {text!r} is neither an age (90m, 2d) nor a date (2026-11-01)"
        ) from None


def _fate(d: Delivery) -> str:
    if d.state == "staged" or d.delete_state == "sending":
        return "in flight"
    if d.delete_state == "deleted":
        return f"deleted {_when(d.settled_at)}"
    if d.delete_state == "changed":
        return "changed in S3 (a newer version stays)"
    return "kept in S3"


def _line(d: Delivery) -> str:
    version = f" version {d.version_id}" if d.version_id else ""
    checks = f"  {d.checksums}" if d.checksums else f"  ({d.verified})" if d.verified else ""
    return (
        f"{_when(d.delivered_at)}  {printable(d.key)}  etag {d.etag}{version}"
        f"  -> {printable(d.path)}{checks}  {_fate(d)}"
    )


def _json(d: Delivery) -> dict[str, Any]:
    return {
        "bucket": d.bucket,
        "key": d.key,
        "etag": d.etag,
        "version_id": d.version_id,
        "size": d.size,
        "last_modified": d.last_modified or None,
        "path": d.path,
        "device": d.file.device if d.file else None,
        "inode": d.file.inode if d.file else None,
        "checksums": d.checksums,
        "verified": d.verified,
        "how": d.how,
        "run": d.run,
        "delivered_at": _when(d.delivered_at) if d.delivered_at else None,
        "state": d.state,
        "delete_state": d.delete_state,
        "settled_at": _when(d.settled_at) if d.settled_at else None,
    }


def history_command(sources: Sources, key: str | None, out: TextIO) -> int:
    base = Path(
        os.path.expanduser(required(sources, "local_base_path", "local base path"))
    ).absolute()
    bucket = sources.get("bucket")
    since = _since(str(sources.flags["since"]) if sources.flags.get("since") else None)
    status = sources.flags.get("status")
    ledger = Ledger.open_read_only(base / ".s3drain", base)
    if ledger is None:
        raise ConfigError(
            f"no ledger at {base / '.s3drain' / 'state.db'}: no drain has run with this "
            "--local-base-path (or it ran with an s3drain before the ledger)",
            hint="check --local-base-path; the audit log (.s3drain/audit.jsonl) has older runs",
        )
    glob = key is not None and bool(_GLOB & set(key))
    with ledger:
        rows: Iterable[Delivery] = ledger.history(
            pattern=key if glob else None,
            key=key if key is not None and not glob else None,
            since=since,
            status=str(status) if status else None,
            bucket=str(bucket.raw) if bucket is not None else None,
        )
        found = 0
        for row in rows:
            found += 1
            if sources.flags.get("json_summary"):
                out.write(json.dumps(_json(row), ensure_ascii=False) + "\n")
            else:
                out.write(_line(row) + "\n")
    out.flush()
    return int(ExitCode.OK if found else ExitCode.PARTIAL)
