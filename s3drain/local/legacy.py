"""Taking over a base path an s3drain without a ledger wrote: once, in full, by the first run
that completes it (a first run stopped midway - disk full, killed - leaves it to the next).

That version left two records of what it did: the extended attribute `user.s3drain.etag` on each
file it downloaded (where the file system kept it), and `.s3drain/deletes-in-flight.jsonl`, the
deletes a killed run may have sent. Both become ledger rows:

- journal entries become rows whose delete is in flight; the run's recovery then asks S3 about
  each, as that version's own recovery would have. An entry that version decided by size alone
  (no tag, an mtime after the upload: the rule that deleted corrected uploads) records no
  delivery: its row is `unproven`, settled by the recovery but never vouching for the object,
  which this release's rules decide afresh if it is still there;
- a file tagged with a multipart ETag becomes a delivery of that ETag (and the file's size), so
  it is not downloaded again only to be compared. A file tagged with an MD5 ETag is left to the
  usual proof by content, which costs a read but no download and trusts nothing but the bytes.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from s3drain.local.ledger import Ledger
from s3drain.local.ledger_rows import NewDelivery
from s3drain.records import UNKNOWN_TIME, FileId, ObjectRecord

XATTR_ETAG = "user.s3drain.etag"
LEGACY_JOURNAL = "deletes-in-flight.jsonl"
TAKEN_OVER = "legacy_taken_over"  # the ledger's note that it was done


@dataclass(frozen=True)
class TakenOver:
    files: int
    journaled: int


def has_legacy_state(state_dir: Path) -> bool:
    return (state_dir / LEGACY_JOURNAL).exists() or (state_dir / "audit.jsonl").exists()


def _proven(status: str, verified: str | None) -> bool:
    """Did that version's decision rest on a delivery or a proof? A download did; so did a
    local file matched by its MD5 or by the ETag s3drain had tagged it with. A match by size
    alone (no tag: the file's mtime was after the upload) is the old rule that deleted corrected
    uploads: it proves nothing."""
    if status == "downloaded":
        return True
    return verified is not None and not verified.startswith("size")


def _journal_rows(path: Path) -> list[tuple[NewDelivery, bool]]:
    """The journal's entries, each with whether it records a delivery (`_proven`)."""
    try:
        lines = path.read_text(encoding="ascii").splitlines()
    except (FileNotFoundError, UnicodeDecodeError):
        return []
    rows: list[tuple[NewDelivery, bool]] = []
    for line in lines:
        try:
            entry = json.loads(line)
            record = ObjectRecord(
                key=entry["key"],
                size=int(entry["size"]),
                etag=entry["etag"],
                last_modified=datetime.fromisoformat(entry["last_modified"]),
                version_id=entry.get("version_id"),
            )
        except (ValueError, KeyError, TypeError):
            continue  # a torn last write: that batch was never sent
        how = entry.get("status") if entry.get("status") in ("processed", "present") else None
        new = NewDelivery(
            record,
            entry.get("local_path") or "",
            None,
            None,
            entry.get("verified"),
            how or "downloaded",
        )
        rows.append((new, _proven(new.how, new.verified)))
    return rows


def _tagged_files(root: Path) -> Iterator[tuple[Path, str, os.stat_result]]:
    if not hasattr(os, "getxattr"):
        return
    for folder, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".s3drain")]
        for name in names:
            path = Path(folder) / name
            try:
                info = os.lstat(path)
                if not stat.S_ISREG(info.st_mode):
                    continue
                etag = os.getxattr(path, XATTR_ETAG, follow_symlinks=False).decode("ascii")
            except (OSError, UnicodeDecodeError):
                continue
            yield path, etag, info


def take_over_once(
    ledger: Ledger, state_dir: Path, raw_dir: Path, processed_dir: Path, prefix_folder: str
) -> TakenOver | None:
    """At the start of every run: take over an older s3drain's records unless the ledger notes
    that this was done (or that a new ledger found none)."""
    if ledger.meta(TAKEN_OVER) is not None:
        return None
    if not has_legacy_state(state_dir):
        if ledger.created:
            ledger.set_meta(TAKEN_OVER, "nothing to take over")
        return None
    return take_over(ledger, state_dir, raw_dir, processed_dir, prefix_folder)


def take_over(
    ledger: Ledger, state_dir: Path, raw_dir: Path, processed_dir: Path, prefix_folder: str
) -> TakenOver:
    journal = state_dir / LEGACY_JOURNAL
    journaled = _journal_rows(journal)
    files: list[NewDelivery] = []
    for root in (raw_dir, processed_dir):
        for path, etag, info in _tagged_files(root):
            if "-" not in etag:
                continue  # an MD5 ETag: the file's content proves it, or does not
            rel = path.relative_to(root).as_posix()
            record = ObjectRecord(prefix_folder + rel, info.st_size, etag, UNKNOWN_TIME)
            files.append(
                NewDelivery(
                    record,
                    str(path),
                    FileId.of(info),
                    None,
                    "etag (s3drain before 0.2)",
                    "migrated",
                )
            )
    ledger.take_over(
        journaled, files, (TAKEN_OVER, f"{len(files)} files, {len(journaled)} journaled")
    )
    if journal.exists():
        journal.unlink()  # its entries live in the ledger now
    return TakenOver(len(files), len(journaled))
