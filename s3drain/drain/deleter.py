"""The deleter thread: verified objects in, batches out, each batch in this order.

1. Durable: every folder a download was linked into is fsynced (once per batch), and a local file
   whose content proved an object (an ETL's copy) is fsynced with its folder. One that cannot
   be (the ETL moved it meanwhile) fails alone, not the batch.
2. Recorded: one ledger commit turns the batch's staged rows into deliveries, records the files
   that proved objects, and marks each delete `sending` (the ledger is the delete journal).
3. Sent (`delete_requests.py`), in the form the run's delete guard asks for.
4. Settled: one ledger commit records what S3 answered (a delete that failed stays `sending`:
   S3 may have done it all the same, and the next run asks); then the audit lines are written
   and fsynced, and a last commit notes that they were.

Batches overlap: a batch is taken as soon as a flush is free and MIN_CHUNK (250) objects wait
(a full batch only while every flush is busy), and up to `DeletePolicy.flushes` (8) batches
are on their way at once, each in a thread of its own. A server works through one request's
keys one after another, and while downloads share it a lone request falls behind them
(SeaweedFS: 250 keys in 0.8 s beside 16 GETs): with one batch at a time, the last thousand
objects of a run waited for the batch before them. Every step but the request itself holds
one lock, so the ledger, the audit log and `_leave_open` see one batch at a time, as they
did when the whole flush was serial.

A run killed anywhere in between leaves the ledger saying enough for the next run to finish
(`recovery.py`). With --no-delete the batch stops after step 2. A delete whose audit line
cannot be written, or whose ledger row cannot, is not sent.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

from s3drain.drain.batches import BatchQueue
from s3drain.drain.delete_requests import MAX_BATCH, MIN_CHUNK, DeleteGuard, Sender
from s3drain.errors import AbortError, DeleteGuardError, S3DrainError, describe
from s3drain.local.fs import LocalFS
from s3drain.local.ledger import Ledger
from s3drain.local.ledger_rows import NewDelivery
from s3drain.records import Outcome, Status
from s3drain.s3.client import S3Client
from s3drain.s3.retry import RetryPolicy


@dataclass(frozen=True)
class DeletePolicy:
    bucket: str
    guard: DeleteGuard = DeleteGuard.ETAG_BATCH
    send: bool = True  # False: --no-delete (deliveries are still recorded)
    batch_size: int = MAX_BATCH
    min_batch_size: int = MIN_CHUNK  # taken early only when a flush is free to take it
    flushes: int = 8  # batches on their way at once
    flush_seconds: float = 5.0
    single_workers: int = 16
    max_deletes: int | None = None  # a hard cap behind --max-delete


class Deleter:
    """A thread that batches verified objects and settles them; `submit` from any worker."""

    def __init__(
        self,
        client: S3Client,
        policy: DeletePolicy,
        *,
        retry: RetryPolicy,
        fs: LocalFS,
        ledger: Ledger,
        record: Callable[[Outcome], None],
        can_record: Callable[[], bool],
        room_to_record: Callable[[Sequence[Outcome]], bool],
        sync: Callable[[], bool],
        fatal: Callable[[S3DrainError], None],
        crashed: Callable[[BaseException, str], None],
        delete_objects: Callable[..., Mapping[str, Any]] | None = None,
    ) -> None:
        self._policy = policy
        self._fs = fs
        self._ledger = ledger
        self._record = record
        self._can_record = can_record
        self._room_to_record = room_to_record
        self._sync = sync
        self._fatal = fatal
        self._crashed = crashed
        # Outcomes handed over and not yet recorded, by key: after a bug in a flush, each still
        # gets its one line, saying what is known of it (`_leave_open`). Once a batch is sent,
        # its entries are S3's answers; while it is on its way, only S3 can tell.
        self._open: dict[str, Outcome] = {}
        self._stage: dict[str, str] = {}  # key -> "sent", "answered", "settled" (in the ledger)
        # Rows of settled deletes whose lines this flush wrote (while the audit log could take
        # them): noted as audited once synced, even if a later line or a bug broke the flush.
        self._written: list[int] = []
        self._open_lock = threading.Lock()
        self._books = threading.Lock()  # every step of a flush but the request itself
        self._queue: BatchQueue[Outcome] = BatchQueue(
            window=policy.flush_seconds,
            size=policy.batch_size,
            maxsize=2 * policy.batch_size,
            min_size=min(policy.min_batch_size, policy.batch_size),
        )
        # A flush slot is taken before the next batch is asked for, so a batch smaller than
        # `batch_size` goes only to a flush that would otherwise wait.
        self._slots = threading.Semaphore(policy.flushes)
        self._flushes = ThreadPoolExecutor(policy.flushes, thread_name_prefix="s3drain-flush")
        self._deletes_sent = 0
        self._broken: S3DrainError | None = None
        self._pool = ThreadPoolExecutor(policy.single_workers, thread_name_prefix="s3drain-delete")
        self._sender = Sender(
            client, policy.bucket, policy.guard, retry, self._pool, self._break, delete_objects
        )
        self._thread = threading.Thread(target=self._loop, name="s3drain-deleter", daemon=True)
        self._thread.start()

    def submit(self, outcome: Outcome) -> None:
        with self._open_lock:
            self._open[outcome.record.key] = outcome
        self._queue.put(outcome)

    def close(self) -> None:
        self._queue.close()
        self._thread.join()
        self._flushes.shutdown()
        self._pool.shutdown()

    def _loop(self) -> None:
        batches = self._queue.batches()
        while True:
            self._slots.acquire()
            batch = next(batches, None)
            if batch is None:
                return
            self._flushes.submit(self._flush_guarded, batch)

    def _flush_guarded(self, batch: list[Outcome]) -> None:
        try:
            self._flush(batch)
        except Exception as exc:
            with self._books:
                self._bug(exc)
        finally:
            self._slots.release()

    def _flush(self, batch: list[Outcome]) -> None:
        with self._books:
            try:
                sending = self._prepare(batch)
            except Exception as exc:
                self._bug(exc)  # within the same hold: the lines this flush wrote are still known
                return
        if not sending:
            return
        results = self._sender.send(sending)
        with self._books:
            try:
                self._settle(results)
            except Exception as exc:
                self._bug(exc)

    def _bug(self, exc: Exception) -> None:
        """A bug: no further delete is sent, and every object handed over still gets its one
        outcome. The other flushes go on taking batches, so no worker blocks."""
        if self._broken is None:
            self._broken = S3DrainError(f"internal error in the deleter: {exc!r}")
        self._crashed(exc, "the deleter")
        self._leave_open("not deleted: internal error in the deleter")

    def _prepare(self, batch: list[Outcome]) -> list[Outcome]:
        """Durable and recorded: the objects whose deletes may now be sent (none with
        --no-delete: their deliveries are recorded and their lines written here)."""
        self._written = []
        if self._broken is not None:
            self._leave(
                [o for o in batch if o.record.key in self._open],
                f"not deleted: {self._broken.message}",
            )
            return []
        send = self._policy.send
        if send and (not self._can_record() or not self._room_to_record(batch)):
            # A delete whose audit line cannot be written is not sent.
            self._break(
                AbortError(
                    "no room to record deletes in the audit log (disk full or file-size limit): "
                    "free space and run again; objects not deleted stay in S3"
                )
            )
            self._leave(batch, "not deleted: the audit log cannot take its line")
            return []
        allowed = self._within_cap(batch) if send else batch
        durable = self._make_durable(allowed)
        if not durable:
            return []
        try:
            durable = self._deliver(durable, send)
        except S3DrainError as exc:
            self._break(exc)
            self._leave(durable, f"not deleted: the ledger could not record it: {exc.message}")
            return []
        if not send:
            self._record_all(durable)
            return []
        self._deletes_sent += len(durable)
        self._note(durable, "sent")
        return durable

    def _settle(self, results: list[Outcome]) -> None:
        """S3's answers into the ledger, then the audit lines, then "audited" for those lines."""
        self._written = []
        self._note(results, "answered")
        try:
            self._ledger.settle([(o.delivery_id, _settled(o)) for o in results if o.delivery_id])
        except S3DrainError as exc:
            # The deletes happened: their lines are still written; the rows stay `sending`, and
            # the next run asks S3 again.
            self._break(exc)
        else:
            self._note(results, "settled")
        synced = self._record_all(results)
        if synced and self._written:
            # Only the lines that were written: should the audit log have failed part way, the
            # rest stay owed, and the next run writes them (and no line twice). Also after
            # another flush broke the run: this one's lines are written all the same.
            try:
                self._ledger.mark_audited(self._written)
            except S3DrainError as exc:
                self._break(exc)

    def _within_cap(self, batch: list[Outcome]) -> list[Outcome]:
        cap = self._policy.max_deletes
        if cap is None or self._deletes_sent + len(batch) <= cap:
            return batch
        # Objects appeared after the guard counted: the cap holds, and the run says so with the
        # guard's own exit code.
        allowed = batch[: max(0, cap - self._deletes_sent)]
        self._break(
            DeleteGuardError(
                f"--max-delete {cap:,} reached during the run: objects that appeared after the "
                "check were downloaded but not deleted",
                hint="the next run deletes them if --max-delete allows",
            )
        )
        self._leave(batch[len(allowed) :], f"not deleted: --max-delete {cap} reached")
        return allowed

    def _make_durable(self, batch: Sequence[Outcome]) -> list[Outcome]:
        """Each object's local copy on disk, or the object fails alone (and stays in S3)."""
        durable: list[Outcome] = []
        folders: dict[str, list[Outcome]] = {}
        for outcome in batch:
            path = outcome.local_path
            if outcome.status is Status.DOWNLOADED and path is not None:
                folders.setdefault(os.path.dirname(path), []).append(outcome)
            elif outcome.delivery_id is None and outcome.file is not None and path is not None:
                try:
                    self._fs.fsync_file(path, outcome.file)
                except OSError as exc:
                    self._leave(
                        [outcome],
                        f"not deleted: {path} moved or changed before its delete "
                        f"({describe(exc)}); left for the next run",
                    )
                    continue
                durable.append(outcome)
            else:
                durable.append(outcome)  # delivered by an earlier run: on disk long since
        for folder, outcomes in folders.items():
            try:
                self._fs.fsync_dir(folder)
            except OSError as exc:
                self._leave(
                    outcomes, f"not deleted: its folder could not be fsynced: {describe(exc)}"
                )
                continue
            durable.extend(outcomes)
        return durable

    def _deliver(self, batch: list[Outcome], send: bool) -> list[Outcome]:
        staged = [o.delivery_id for o in batch if o.status is Status.DOWNLOADED and o.delivery_id]
        earlier = [
            o.delivery_id for o in batch if o.status is not Status.DOWNLOADED and o.delivery_id
        ]
        adopted = [o for o in batch if o.delivery_id is None]
        new_rows = [
            NewDelivery(
                o.record, o.local_path or "", o.file, o.checksums, o.verified, o.status.value
            )
            for o in adopted
        ]
        new_ids = self._ledger.deliver(
            staged=[i for i in staged if i is not None],
            adopted=new_rows,
            sending=[i for i in (*staged, *earlier) if i is not None] if send else [],
            adopted_sending=send,
        )
        ids = iter(new_ids)
        return [o if o.delivery_id else replace(o, delivery_id=next(ids)) for o in batch]

    def _recorded(self, outcome: Outcome) -> None:
        with self._open_lock:
            self._open.pop(outcome.record.key, None)
            stage = self._stage.pop(outcome.record.key, None)
        self._record(outcome)
        if stage == "settled" and outcome.delivery_id is not None and self._can_record():
            self._written.append(outcome.delivery_id)

    def _record_all(self, outcomes: Sequence[Outcome]) -> bool:
        """Each outcome's line; True when they are all on disk."""
        for outcome in outcomes:
            self._recorded(outcome)
        return self._sync()

    def _leave(self, outcomes: Sequence[Outcome], why: str) -> None:
        for outcome in outcomes:
            self._recorded(replace(outcome, status=Status.FAILED, detail=why, deleted=False))
        self._sync()

    def _note(self, outcomes: Sequence[Outcome], stage: str) -> None:
        """Where a batch stands, for `_leave_open`: sent (no answer yet), answered by S3 (the
        entries become the answers), settled (the ledger holds the answers)."""
        with self._open_lock:
            for outcome in outcomes:
                key = outcome.record.key
                # Settled counts even once `_leave_open` let go of the key (another flush's bug
                # while this batch was on its way): its line is written here, and only here.
                if key in self._open or stage == "settled":
                    self._stage[key] = stage
                    if stage == "answered":
                        self._open[key] = outcome

    def _leave_open(self, why: str) -> None:
        """After a bug in a flush: each object handed over and not yet recorded gets a line
        that tells the truth. Not sent: failed, `why`. Answered: what S3 answered (it may
        well be deleted). Sent without an answer: no line here; its ledger row says `sending`,
        and the next run asks S3 and writes the line. Settled deletes whose lines are written
        (before the bug or here) are noted as audited, so the next run does not repeat them."""
        with self._open_lock:
            left, self._open = list(self._open.values()), {}
            stages, self._stage = self._stage, {}
        audited, self._written = self._written, []
        for outcome in left:
            stage = stages.get(outcome.record.key)
            if stage == "sent":
                continue
            verdict = (
                outcome
                if stage in ("answered", "settled")
                else replace(outcome, status=Status.FAILED, detail=why, deleted=False)
            )
            try:
                self._record(verdict)
            except Exception:  # noqa: S112 - its line stays owed: the next run writes it
                continue
            if stage == "settled" and outcome.delivery_id is not None and self._can_record():
                audited.append(outcome.delivery_id)
        synced = False
        with contextlib.suppress(Exception):
            synced = self._sync()
        if audited and synced:
            with contextlib.suppress(Exception):
                self._ledger.mark_audited(audited)

    def _break(self, error: S3DrainError) -> None:
        if self._broken is None:
            self._broken = error
            self._fatal(error)


def _settled(outcome: Outcome) -> str:
    """The ledger's `delete_state` for S3's answer. A delete that failed stays `sending`: S3
    may have carried it out all the same (its answer lost, then errors until the retries ran
    out), and only S3 can say; the next run asks it (`recovery.py`) and writes the line that
    says so. Without this, an object deleted that way would be gone with no audit line."""
    if outcome.deleted:
        return "deleted"
    if outcome.status is Status.CHANGED:
        return "changed"
    return "sending"
