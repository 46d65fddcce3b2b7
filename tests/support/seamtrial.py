"""One seam trial, and the checks after it: a small seeded bucket is drained (in one process, on
moto's mock_aws) while one seam raises at one random call (`seamkit.py`), then drained again
undisturbed. What a run promises, whatever breaks:

- it ends (within RUN_BOUND; a hang fails the trial with every thread's stack);
- nothing is lost: every object is still in S3, or its exact bytes are under raw/ or
  processed/ and a line of the audit log says it was deleted;
- every object has one outcome line in the faulty run, and that line tells the truth (deleted
  only if it left S3, kept only if it is still there); or it is still in S3 untouched; or its
  line is owed in the ledger (`audited = 0`) and the next run writes it;
- the exit code tells the truth: not 0 while anything is undone, not 1 when nothing was left,
  70 when (and only when) a bug was raised, naming a crash log that holds the traceback;
- the undisturbed run after it finishes the job: exit 0, the bucket empty, every byte local,
  over both runs one line per object saying it was deleted (a recovery line may repeat one
  whose safety could not be known: counted, see REPEATS_ALLOWED), no line owed, no temp file.

`tests/test_seams.py` runs a few hundred trials; `make chaos` runs more (`seams_row`).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import re
import shutil
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from s3drain.config.s3 import S3Settings
from s3drain.drain.fanout import FixedStreams
from s3drain.drain.run import DrainResult, run_drain
from s3drain.drain.settings import DrainSettings
from s3drain.errors import ExitCode
from s3drain.local.fs import LocalFS
from s3drain.local.paths import is_temp_name, temp_name_for
from s3drain.s3.client import S3Client, make_client
from tests.support import moto_aws_like
from tests.support.drainkit import (
    PREFIX,
    bucket_keys,
    drain_settings,
    inject,
    ledger_rows,
    mock_aws,
    place_copy,
    put_objects,
)
from tests.support.seamkit import (
    AFTER_ALLOWED,
    KINDS,
    SEAMS,
    Fault,
    SeamFS,
    SeamStream,
    activate,
    listing_rule,
    seams_installed,
)

KiB = 1024
RUN_BOUND = 60.0  # seconds: an undisturbed run here takes ~0.1 s; a run past this hangs
THRESHOLD = 256 * KiB  # multipart threshold of a trial: its large objects get two streams
# Seams a trial reaches only with a processed copy, or with a stale temp file to sweep.
NEEDS_PROCESSED = frozenset({"fs.fsync_file"})
NEEDS_STALE_TEMP = frozenset({"fs.remove_if_unlocked", "fs.remove"})
# The line the next run writes for a delete an earlier run could not see recorded. It may
# repeat a line only where the earlier run could not know its line was safe: the audit log's
# fsync failed (the line may be lost), or the ledger could not note that it was written. At
# least once, never a lie: counted, not failed, at those seams; a repeat anywhere else is.
RECOVERY_DETAIL = "delete confirmed after an interrupted run"
REPEATS_ALLOWED = frozenset({"audit.sync", "ledger.write"})


@dataclass(frozen=True)
class Violation:
    kind: str  # hang, raised, lost, outcome-missing, duplicate, false-line, exit-code, ...
    key: str
    detail: str

    def __str__(self) -> str:
        where = f"{self.key}: " if self.key else ""
        return f"{self.kind}: {where}{self.detail}"


@dataclass(frozen=True)
class Corpus:
    objects: Mapping[str, bytes]
    processed: tuple[str, ...]  # keys with a copy placed in processed/ before the first run
    stale_temp: bool  # a temp file of a killed run planted in raw/


@dataclass(frozen=True)
class Setup:
    seed: int
    seam: str
    kind: str
    persistent: bool
    after: bool
    at: int
    workers: int
    aws_like: bool  # moto made to honour DeleteObjects' per-key ETag: etag-batch deletes
    batch: int
    corpus: Corpus

    @property
    def label(self) -> str:
        mode = "from then on" if self.persistent else "once"
        when = " after the call" if self.after and self.seam in AFTER_ALLOWED else ""
        return (
            f"{self.seam} {self.kind} at call {self.at} {mode}{when}; {len(self.corpus.objects)} "
            f"objects, {len(self.corpus.processed)} in processed/, workers {self.workers}, "
            f"{'etag-batch' if self.aws_like else 'if-match'} deletes, batch {self.batch}"
            f"{', stale temp' if self.corpus.stale_temp else ''}"
        )


@dataclass
class TrialReport:
    setup: Setup
    violations: list[Violation] = field(default_factory=list)
    fired: int = 0
    first_code: int | None = None
    hung: bool = False
    repeated: int = 0  # deleted lines a recovery repeated, across the two runs
    seconds: float = 0.0
    folder: Path | None = None

    @property
    def lost(self) -> int:
        return sum(v.kind == "lost" for v in self.violations)

    @property
    def missing(self) -> int:
        return sum(v.kind == "outcome-missing" for v in self.violations)

    def describe(self, limit: int = 20) -> str:
        lines = [f"seams seed={self.setup.seed}: {self.setup.label}"]
        lines.append(f"  fired {self.fired}x, first run exit {self.first_code}")
        if self.folder is not None:
            lines.append(f"  files kept in {self.folder}")
        lines += [f"  {v}" for v in self.violations[:limit]]
        if len(self.violations) > limit:
            lines.append(f"  ... and {len(self.violations) - limit} more")
        return "\n".join(lines)


def make_corpus(rng: random.Random, small: int, large: int, processed: int) -> Corpus:
    objects: dict[str, bytes] = {}
    for i in range(small):
        objects[f"{PREFIX}d{i % 3}/s{i:02d}.csv"] = rng.randbytes(rng.randrange(0, 3000))
    for i in range(large):
        objects[f"{PREFIX}big{i}.bin"] = rng.randbytes(rng.randrange(THRESHOLD, 3 * THRESHOLD))
    smalls = sorted(k for k in objects if k.endswith(".csv"))
    return Corpus(objects, tuple(rng.sample(smalls, processed)), rng.random() < 0.3)


def plan(seed: int, seam: str, calibrated: Mapping[str, float]) -> Setup:
    """The trial of `seed`: its bucket, its settings, and where its fault strikes (a call
    drawn from the number an undisturbed run of that size makes)."""
    rng = random.Random(seed)
    processed = rng.randint(1 if seam in NEEDS_PROCESSED else 0, 3)
    corpus = make_corpus(rng, rng.randint(10, 26), rng.randint(1, 2), processed)
    if seam in NEEDS_STALE_TEMP:
        corpus = Corpus(corpus.objects, corpus.processed, stale_temp=True)
    expected = max(1, round(calibrated.get(seam, 1.0) * len(corpus.objects)))
    return Setup(
        seed=seed,
        seam=seam,
        kind=rng.choice(KINDS[seam]),
        persistent=rng.random() < 0.4,
        after=rng.random() < 0.5,
        at=rng.randint(1, expected),
        workers=rng.choice((1, 2, 4)),
        aws_like=rng.random() < 0.5,
        batch=rng.choice((4, 1000)),
        corpus=corpus,
    )


# -- running --------------------------------------------------------------------------------


@dataclass
class Ran:
    result: DrainResult | None
    raised: str | None  # the traceback, had run_drain raised instead of returning
    hung: str | None  # every thread's stack, had the run not ended within RUN_BOUND
    err: str


def run_bounded(settings: DrainSettings, client: S3Client, fs: LocalFS, err: io.StringIO) -> Ran:
    """One run in a thread of its own, given RUN_BOUND seconds to end."""
    box: list[DrainResult | BaseException] = []

    def target() -> None:
        try:
            box.append(
                run_drain(
                    settings,
                    out=io.StringIO(),
                    err=err,
                    client=client,
                    fs=fs,
                    sleep=lambda _: None,
                    streams=FixedStreams(2),
                )
            )
        except BaseException as exc:
            box.append(exc)

    thread = threading.Thread(target=target, name="seam-trial-run", daemon=True)
    thread.start()
    thread.join(RUN_BOUND)
    if thread.is_alive():
        return Ran(None, None, thread_stacks(), err.getvalue())
    outcome = box[0]
    if isinstance(outcome, BaseException):
        return Ran(None, "".join(traceback.format_exception(outcome)), None, err.getvalue())
    return Ran(outcome, None, None, err.getvalue())


def thread_stacks() -> str:
    names = {t.ident: t.name for t in threading.enumerate()}
    return "\n".join(
        f"--- thread {names.get(ident, ident)}\n" + "".join(traceback.format_stack(frame))
        for ident, frame in sys._current_frames().items()
    )


# -- what is on disk and in S3 --------------------------------------------------------------


def _rel(key: str) -> str:
    return key[len(PREFIX) :]


def local_copy(settings: DrainSettings, key: str, data: bytes) -> bool:
    """Are the object's exact bytes under raw/ or processed/?"""
    for root in (settings.raw_dir, settings.processed_dir):
        path = root / _rel(key)
        with contextlib.suppress(OSError):
            if path.is_file() and path.read_bytes() == data:
                return True
    return False


def read_audit(settings: DrainSettings) -> list[dict[str, Any]]:
    """Every line of the audit log; one that does not parse is kept as such (a violation)."""
    if not settings.audit_log.exists():
        return []
    lines = []
    for number, text in enumerate(settings.audit_log.read_text().splitlines(), 1):
        try:
            lines.append(json.loads(text))
        except ValueError:
            lines.append({"key": "", "unparsable": f"line {number}: {text[:80]!r}"})
    return lines


def temp_files(root: Path) -> list[str]:
    found = []
    for folder, _, names in os.walk(root):
        found += [os.path.join(folder, n) for n in names if is_temp_name(n)]
    return found


# -- the checks -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Trial:
    setup: Setup
    settings: DrainSettings
    client: S3Client
    bucket: str

    def left(self) -> set[str]:
        return bucket_keys(self.client, self.bucket) & set(self.setup.corpus.objects)


def _ended(ran: Ran, which: str) -> list[Violation]:
    if ran.hung is not None:
        return [
            Violation("hang", "", f"the {which} run did not end in {RUN_BOUND:.0f} s\n{ran.hung}")
        ]
    if ran.raised is not None:
        return [
            Violation("raised", "", f"the {which} run raised instead of returning\n{ran.raised}")
        ]
    return []


def check_first(
    trial: Trial, ran: Ran, lines: Sequence[Mapping[str, Any]], fault: Fault
) -> list[Violation]:
    """After the faulty run: nothing lost, one true outcome per object (or untouched in S3, or
    a line the ledger says is owed), an exit code and a message that tell the truth."""
    found = _ended(ran, "faulty")
    if found or ran.result is None:
        return found
    left = trial.left()
    owed = {
        row["key"]
        for row in ledger_rows(trial.settings, "audited = 0")
        if row["delete_state"] in ("sending", "deleted", "changed")
    }
    found += [
        Violation("audit-unparsable", "", x["unparsable"]) for x in lines if "unparsable" in x
    ]
    undone = bool(left)
    for key, data in trial.setup.corpus.objects.items():
        mine = [line for line in lines if line.get("key") == key]
        found += _object_violations(trial, key, data, mine, in_s3=key in left, owed=key in owed)
        undone = undone or (key not in left and not mine)  # its line is still to be written
    found += _message_violations(ran.result, lines)
    found += _exit_violations(ran.result, fault, undone=undone, left=left)
    return found


def _object_violations(
    trial: Trial,
    key: str,
    data: bytes,
    lines: Sequence[Mapping[str, Any]],
    *,
    in_s3: bool,
    owed: bool,
) -> list[Violation]:
    found = []
    if len(lines) > 1:
        found.append(Violation("duplicate", key, f"{len(lines)} lines in one run: {lines}"))
    if in_s3:
        if any(line["deleted"] for line in lines):
            found.append(Violation("false-line", key, "a line says deleted; it is in S3"))
        return found
    if not local_copy(trial.settings, key, data):
        found.append(Violation("lost", key, "gone from S3 and its bytes are not local"))
    if not lines and not owed:
        found.append(Violation("outcome-missing", key, "gone from S3, no line, none owed"))
    if lines and not all(line["deleted"] for line in lines):
        found.append(Violation("false-line", key, f"gone from S3; its line says kept: {lines[0]}"))
    return found


def _exit_violations(
    result: DrainResult, fault: Fault, *, undone: bool, left: set[str]
) -> list[Violation]:
    found = []
    code = result.exit_code
    if code == ExitCode.OK and undone:
        found.append(Violation("exit-code", "", "exit 0 with objects left undone"))
    if code == ExitCode.PARTIAL and not left:
        found.append(Violation("exit-code", "", "exit 1 (objects left in S3) with none left"))
    if fault.unexpected and code != ExitCode.INTERNAL:
        found.append(Violation("exit-code", "", f"a bug was raised; exit {int(code)}, not 70"))
    if code != ExitCode.INTERNAL:
        return found
    error = result.info.error or ""
    marker = "the traceback is in "
    if marker not in error:
        found.append(Violation("crash-log", "", f"exit 70 naming no crash log: {error!r}"))
    else:
        path = Path(error.split(marker, 1)[1].split(";")[0].strip())
        if not path.is_file() or "Traceback" not in path.read_text():
            found.append(Violation("crash-log", "", f"{path} holds no traceback"))
    if not fault.unexpected:
        # 70 says "a bug in s3drain": for a full or failing disk that is not the truth.
        found.append(Violation("exit-code", "", f"exit 70 for {fault.kind}: {error}"))
    return found


def _message_violations(result: DrainResult, lines: Sequence[Mapping[str, Any]]) -> list[Violation]:
    """'before the run stopped, N object(s) had been deleted from S3, each recorded in the
    audit log': N is what the run recorded as deleted, and "each recorded" must be so."""
    error = result.info.error or ""
    match = re.search(r"before the run stopped, ([\d,]+) object\(s\) had been deleted", error)
    if match is None:
        return []
    said = int(match.group(1).replace(",", ""))
    written = sum(1 for line in lines if line.get("deleted"))
    found = []
    if said != result.totals.deleted:
        found.append(
            Violation("false-message", "", f"says {said}, counted {result.totals.deleted}")
        )
    if "each recorded in the audit log" in error and said != written:
        found.append(
            Violation("false-message", "", f"says {said} deleted, each recorded; {written} lines")
        )
    return found


def check_second(
    trial: Trial,
    ran: Ran,
    first_lines: Sequence[Mapping[str, Any]],
    second_lines: Sequence[Mapping[str, Any]],
) -> tuple[list[Violation], int]:
    """After the undisturbed run: the job is done, and over both runs each object has one line
    saying it was deleted (a repeat only from recovery: counted, returned)."""
    found = _ended(ran, "undisturbed")
    if found or ran.result is None:
        return found, 0
    left = trial.left()
    if ran.result.exit_code != ExitCode.OK:
        # What the run said of each object it left, whole: the tail of stderr may not hold it.
        said = [line for line in ran.err.splitlines() if any(key in line for key in left)]
        audit = [line for line in second_lines if line.get("key") in left]
        why = (
            f"exit {int(ran.result.exit_code)}: {ran.result.info.error}; "
            f"of the objects left: {said} {audit}; stderr ends: {ran.err[-800:]}"
        )
        found.append(Violation("not-finished", "", why))
    repeated = 0
    for key, data in trial.setup.corpus.objects.items():
        if key in left:
            found.append(Violation("not-finished", key, "still in S3 after the clean run"))
        elif not local_copy(trial.settings, key, data):
            found.append(Violation("lost", key, "gone from S3 and its bytes are not local"))
        again = [line for line in second_lines if line.get("key") == key]
        if len(again) > 1:
            found.append(Violation("duplicate", key, f"{len(again)} lines in the clean run"))
        deleted = [x for x in (*first_lines, *again) if x.get("key") == key and x["deleted"]]
        if key not in left and not deleted:
            found.append(Violation("outcome-missing", key, "deleted, and no line says so"))
        repeats = deleted[1:]
        if repeats and (
            trial.setup.seam not in REPEATS_ALLOWED
            or any(line.get("detail") != RECOVERY_DETAIL for line in repeats)
        ):
            found.append(Violation("duplicate", key, f"deleted twice over: {deleted}"))
        repeated += max(0, len(deleted) - 1)
    unaudited = [row["key"] for row in ledger_rows(trial.settings, "audited = 0")]
    if unaudited:
        found.append(Violation("outcome-missing", "", f"lines still owed: {unaudited}"))
    temps = temp_files(trial.settings.raw_dir)
    if temps:
        found.append(Violation("temp-left", "", f"{temps}"))
    return found, repeated


# -- the bench and the trials ---------------------------------------------------------------


@dataclass
class Bench:
    """What the trials share: one mock_aws, one client, a work folder, the calibration."""

    client: S3Client
    work: Path
    calibrated: dict[str, float] = field(default_factory=dict)
    reached: Counter[str] = field(default_factory=Counter)
    keep_failed: bool = False


@contextlib.contextmanager
def bench_in(work: Path, *, keep_failed: bool = False) -> Iterator[Bench]:
    with mock_aws(), seams_installed():
        client = make_client(
            S3Settings(region="us-east-1", access_key_id="testing", secret_access_key="testing")
        )
        inject(client, listing_rule)
        bench = Bench(client, work, keep_failed=keep_failed)
        bench.calibrated, bench.reached = calibrate(bench)
        yield bench


def _prepare(bench: Bench, setup: Setup, name: str) -> Trial:
    bucket = f"seams-{name}"
    bench.client.create_bucket(Bucket=bucket)
    put_objects(bench.client, setup.corpus.objects, bucket=bucket)
    base = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=bench.work))
    settings = drain_settings(
        base,
        bucket=bucket,
        workers=setup.workers,
        delete_batch_size=setup.batch,
        delete_flush_seconds=0.05,
        multipart_threshold=THRESHOLD,
        part_size=64 * KiB,
        verbosity=1,  # a line per object on the stream: the `err` seam has calls to strike
    )
    for key in setup.corpus.processed:
        place_copy(settings.processed_dir / _rel(key), setup.corpus.objects[key])
    if setup.corpus.stale_temp:
        target = settings.raw_dir / "d0" / "stale.csv"
        target.parent.mkdir(parents=True, exist_ok=True)
        Path(temp_name_for(str(target), "stale", "0" * 32)).write_bytes(b"half")
    return Trial(setup, settings, bench.client, bucket)


def _cleanup(trial: Trial, *, keep: bool) -> None:
    with contextlib.suppress(Exception):
        for key in bucket_keys(trial.client, trial.bucket):
            trial.client.delete_object(Bucket=trial.bucket, Key=key)
        trial.client.delete_bucket(Bucket=trial.bucket)
    if not keep:
        shutil.rmtree(trial.settings.local_base_path, ignore_errors=True)


CALIBRATION_SEED = 424242


def calibrate(bench: Bench) -> tuple[dict[str, float], Counter[str]]:
    """Calls per object of each seam in an undisturbed run of a bucket with every feature a
    trial may have (processed copies, a stale temp file, large objects, small batches)."""
    corpus = make_corpus(random.Random(CALIBRATION_SEED), 20, 2, 3)
    corpus = Corpus(corpus.objects, corpus.processed, stale_temp=True)
    setup = Setup(CALIBRATION_SEED, "", "bug", False, False, 0, 2, False, 4, corpus)
    trial = _prepare(bench, setup, "calibration")
    with activate(Fault()) as counting:
        ran = run_bounded(trial.settings, bench.client, SeamFS(), SeamStream())
    if ran.result is None or ran.result.exit_code != ExitCode.OK:
        raise RuntimeError(f"the calibration run failed: {ran.raised or ran.hung or ran.err}")
    _cleanup(trial, keep=False)
    size = len(corpus.objects)
    return {seam: counting.calls[seam] / size for seam in SEAMS}, Counter(counting.calls)


def run_trial(bench: Bench, seed: int, seam: str) -> TrialReport:
    started = time.monotonic()
    setup = plan(seed, seam, bench.calibrated)
    report = TrialReport(setup)
    trial = _prepare(bench, setup, f"{seed}")
    patched = moto_aws_like.patched() if setup.aws_like else contextlib.nullcontext()
    fault = Fault(setup.seam, setup.at, setup.kind, setup.persistent, setup.after)
    with patched:
        with activate(fault):
            first = run_bounded(trial.settings, bench.client, SeamFS(), SeamStream())
        report.fired = fault.fired
        report.first_code = int(first.result.exit_code) if first.result else None
        first_lines = read_audit(trial.settings)
        report.violations += check_first(trial, first, first_lines, fault)
        report.hung = first.hung is not None
        if not report.hung:
            second = run_bounded(trial.settings, bench.client, LocalFS(), io.StringIO())
            second_lines = read_audit(trial.settings)[len(first_lines) :]
            more, report.repeated = check_second(trial, second, first_lines, second_lines)
            report.violations += more
            report.hung = second.hung is not None
    keep = bench.keep_failed and bool(report.violations)
    report.folder = trial.settings.local_base_path if keep else None
    _cleanup(trial, keep=keep)
    report.seconds = time.monotonic() - started
    return report


def seam_for(index: int) -> str:
    """Trials go round the seams, so each is struck about as often."""
    return SEAMS[index % len(SEAMS)]


def default_work() -> Path:
    """A tmpfs where there is one (an fsync costs nothing there, and the trials test s3drain's
    logic, not the disk), else the system's temp folder."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        return shm
    return Path(tempfile.gettempdir())


# -- for make chaos -------------------------------------------------------------------------


@dataclass(frozen=True)
class SeamsRow:
    trials: int
    fired: int
    hangs: int
    lost: int
    missing: int
    violations: int
    repeated: int
    seconds: float

    def line(self) -> str:
        others = self.violations - self.lost - self.missing
        return (
            f"seams: trials {self.trials} (fault fired in {self.fired}), hangs: {self.hangs}, "
            f"lost: {self.lost}, outcomes missing: {self.missing}, other violations: {others}, "
            f"lines repeated by recovery: {self.repeated}, wall time {self.seconds:.0f} s"
        )


def seams_row(
    trials: int, seed: int, log: Callable[[str], None], *, keep_failed: bool = False
) -> tuple[SeamsRow, list[TrialReport]]:
    """`trials` seam trials from `seed` on, each line given to `log`; one row of figures."""
    started = time.monotonic()
    reports: list[TrialReport] = []
    work = Path(tempfile.mkdtemp(prefix="s3drain-seams-", dir=default_work()))
    try:
        with bench_in(work, keep_failed=keep_failed) as bench:
            for number in range(trials):
                report = run_trial(bench, seed + number, seam_for(seed + number))
                reports.append(report)
                verdict = (
                    "ok" if not report.violations else f"{len(report.violations)} VIOLATION(S)"
                )
                log(
                    f"seams {number + 1:>5}/{trials} seed={seed + number} "
                    f"{report.seconds:4.1f}s {verdict}  [{report.setup.label}]"
                )
                if report.violations:
                    log(report.describe())
                if report.hung:
                    break  # a hung run's threads are still there: stop here
    finally:
        if not (keep_failed and any(r.violations for r in reports)):
            shutil.rmtree(work, ignore_errors=True)
    row = SeamsRow(
        trials=len(reports),
        fired=sum(r.fired > 0 for r in reports),
        hangs=sum(r.hung for r in reports),
        lost=sum(r.lost for r in reports),
        missing=sum(r.missing for r in reports),
        violations=sum(len(r.violations) for r in reports),
        repeated=sum(r.repeated for r in reports),
        seconds=time.monotonic() - started,
    )
    return row, reports


SEAMS_SHARE = 2.0  # seam trials per --trials of `make chaos` (they are cheap: ~0.2 s each)


def chaos_seams(trials: int, seed: int, *, flat: bool = False, keep_failed: bool = False) -> bool:
    """The `seams` row of `python -m tests.faults.chaos`: trials on stderr, the row on stdout.
    True when any trial broke a promise."""
    count = trials if flat else max(2, round(trials * SEAMS_SHARE))
    sys.stderr.write(f"chaos: seams, seed {seed}, {count} trials (in one process)\n")

    def log(line: str) -> None:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()

    row, reports = seams_row(count, seed, log, keep_failed=keep_failed)
    print(row.line())
    return any(r.violations or r.hung for r in reports)
