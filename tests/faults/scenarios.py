"""The six fault scenarios, one trial at a time. A trial builds a fresh bucket from its seed, runs
the real CLI against it through a fault-injecting proxy, checks the invariant (also in between,
right after a kill), then runs once more undisturbed and checks again. Each returns a
TrialReport; `test_scenarios.py` asserts on them, `chaos.py` tabulates them."""

from __future__ import annotations

import contextlib
import functools
import os
import random
import shutil
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from xml.etree import ElementTree

from tests.faults.corpus import (
    PREFIX,
    Blob,
    Corpus,
    HostileKey,
    KiB,
    MiB,
    blob,
    hostile_keys,
    ordinary,
)
from tests.faults.harness import (
    Credentials,
    KillPlan,
    KillSwitch,
    Lab,
    Local,
    Running,
    RunResult,
    Sandbox,
    Trial,
    chain,
    read_ledger,
    run,
)
from tests.faults.invariant import (
    Kind,
    Version,
    Violation,
    check,
    lost_objects,
    partial_files,
    temp_files,
)
from tests.support.mounts import FUSE_MISSING, fuse_available, xattrless
from tests.support.proxy import FaultProxy, RequestInfo

# The two servers: plain moto honours If-Match on DeleteObject only, so s3drain's probe makes it
# delete one object per request (`if-match`); the AWS-like moto also honours the per-key ETag
# of DeleteObjects, as AWS does, so s3drain deletes in batches (`etag-batch`). No trial forces
# --delete-mode: s3drain picks the form, as it does in production.
MOTO = "moto"
AWS_LIKE = "moto-aws-like"
SERVERS = (MOTO, AWS_LIKE)
# The base path's file system: the machine's own, or a FUSE mount without user xattrs (as NFS,
# SMB and many FUSE mounts are on ETL hosts).
NATIVE = "native"
XATTR_NONE = "xattr-none"
FILE_SYSTEMS = (NATIVE, XATTR_NONE)
# The name s3drain gives the probe's random missing keys (`<prefix folder>.s3drain-probe-<uuid>`).
PROBE_NAME = ".s3drain-probe-"


@dataclass(frozen=True)
class TrialReport:
    scenario: str
    seed: int
    label: str  # the trial's settings, enough to tell trials apart in a report
    at_stake: int  # objects in the bucket before the first run
    violations: tuple[Violation, ...]
    partial_files: int
    seconds: float
    notes: Mapping[str, int] = field(default_factory=dict)  # figures for the chaos notes
    runs: tuple[str, ...] = ()  # one line per CLI run: name, exit code, time, last words
    # Keys whose version s3drain had deleted before the test uploaded a new one (kill trials
    # with rewrites): what a known bug's signature is checked against.
    recreated: frozenset[str] = frozenset()

    @property
    def lost(self) -> int:
        return lost_objects(self.violations)

    def describe(self, limit: int = 15) -> str:
        lines = [f"{self.scenario} seed={self.seed} ({self.label}):"]
        lines += [f"  run: {r}" for r in self.runs]
        lines += [f"  {v}" for v in self.violations[:limit]]
        if len(self.violations) > limit:
            lines.append(f"  ... and {len(self.violations) - limit} more")
        return "\n".join(lines)


@dataclass
class Bench:
    """What all trials of a session share: the two moto servers, a work folder, and facts
    learned once (how long a drain takes on each server here, which hostile keys moto can
    hold, whether a small tmpfs can be mounted)."""

    lab: Lab  # plain moto
    work: Path
    aws_lab: Lab | None = None  # the AWS-like moto; trials that want it fail without it
    keep_failed: bool = False
    _holdable: dict[str, frozenset[str]] = field(default_factory=dict)
    _run_seconds: dict[tuple[str, str], float] = field(default_factory=dict)
    _tmpfs: bool | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _open: list[contextlib.ExitStack] = field(default_factory=list)  # trials' mounts

    def lab_for(self, server: str) -> Lab:
        if server == MOTO:
            return self.lab
        if self.aws_lab is None:
            raise AssertionError("this bench has no AWS-like moto server")
        return self.aws_lab

    def pick_server(self, rng: random.Random) -> str:
        """Plain moto two times in three (single `if-match` deletes, the more requests to kill
        among), the AWS-like one otherwise (`etag-batch`)."""
        return AWS_LIKE if rng.random() < 1 / 3 and self.aws_lab is not None else MOTO

    def calibrate(self, lab: Lab | None = None, fs: str = NATIVE) -> float:
        """Time one undisturbed drain of an ordinary corpus through the proxy, once per server
        and file system, so kills by the clock land anywhere in a run on this machine, loaded
        or not (the FUSE mount is slower than the native file system)."""
        lab = lab or self.lab
        if (lab.name, fs) not in self._run_seconds:
            corpus = ordinary(random.Random(12345), small=(150, 300), large=(1, 3))
            trial, local = _begin(self, "calibrate", 0, corpus, lab=lab, fs=fs)
            with FaultProxy(lab.url) as proxy:
                result = run(trial.spec(local, proxy.url), "calibrate", trial.sandbox)
            self._run_seconds[(lab.name, fs)] = max(result.seconds, 1.0)
            _end(self, trial, passed=True)
        return self._run_seconds[(lab.name, fs)]

    def holdable(self, lab: Lab | None = None) -> frozenset[str]:
        """The hostile rel paths this moto server stores and lists back exactly."""
        lab = lab or self.lab
        with self._lock:
            if lab.name not in self._holdable:
                bucket = lab.new_bucket("probe")
                held = set()
                for hostile in hostile_keys("s3drain-probe"):
                    key = PREFIX + hostile.rel
                    with contextlib.suppress(Exception):
                        lab.put(bucket, blob(key, b"probe"))
                        if lab.holds(bucket, key):
                            held.add(hostile.rel)
                lab.empty(bucket)
                self._holdable[lab.name] = frozenset(held)
            return self._holdable[lab.name]

    def untestable_keys(self) -> list[HostileKey]:
        held = self.holdable()
        return [h for h in hostile_keys("s3drain-probe") if h.rel not in held]

    def tmpfs_available(self) -> bool:
        with self._lock:
            if self._tmpfs is None:
                probe = self.work / "tmpfs-probe"
                probe.mkdir(parents=True, exist_ok=True)
                self._tmpfs = _mount_tmpfs(probe, 1 * MiB)
                if self._tmpfs:
                    _umount(probe)
            return self._tmpfs

    def close(self) -> None:
        """Unmount what trials that failed half-way (a harness error) left mounted."""
        while self._open:
            with contextlib.suppress(Exception):
                self._open.pop().close()


@contextlib.contextmanager
def bench_on(
    url: str, work: Path, *, aws_url: str | None = None, keep_failed: bool = False
) -> Iterator[Bench]:
    work.mkdir(parents=True, exist_ok=True)
    aws_lab = Lab(aws_url, AWS_LIKE) if aws_url else None
    bench = Bench(Lab(url, MOTO), work, aws_lab=aws_lab, keep_failed=keep_failed)
    try:
        yield bench
    finally:
        bench.close()


# -- trial plumbing ----------------------------------------------------------------------------


def _begin(
    bench: Bench,
    label: str,
    seed: int,
    corpus: Corpus,
    watch: tuple[str, ...] = (),
    *,
    lab: Lab | None = None,
    fs: str = NATIVE,
) -> tuple[Trial, Local]:
    lab = lab or bench.lab
    bucket = lab.new_bucket(f"{label}-{seed}")  # unique: it names the sandbox too
    sandbox = Sandbox.create(bench.work / bucket)
    mounts = contextlib.ExitStack()
    bench._open.append(mounts)
    local = sandbox.local()
    if fs == XATTR_NONE:
        if not fuse_available():
            raise AssertionError(FUSE_MISSING)
        # The backing folder lies beside the sandbox, so the sandbox's scan sees the base path
        # once, through the mount.
        backing = sandbox.root.parent / "backing"
        mounts.enter_context(xattrless(backing, local.base))
        local = sandbox.local(backing=backing)
    lab.fill(bucket, corpus.blobs)
    local = _place_processed(local, corpus)
    trial = Trial(
        lab=lab,
        bucket=bucket,
        before=corpus.versions,
        sandbox=sandbox,
        credentials=Credentials.fresh(),
        snapshot=sandbox.snapshot(),
        watch=watch,
        mounts=mounts,
    )
    return trial, local


ETAG_XATTR = "user.s3drain.etag"  # the xattr an earlier s3drain left on its downloads


def _place_processed(local: Local, corpus: Corpus) -> Local:
    """The ETL already has these: their bytes sit in processed/ under the key's path, some
    with the ETag xattr an earlier s3drain left on its downloads (moved from raw/), some
    without (copied). s3drain no longer trusts that xattr; the trials check it does not."""
    for item in corpus.processed:
        rel = f"processed/{item.key[len(PREFIX) :]}"
        local = local.place(rel, item.data)
        if item.key in corpus.tagged:
            # Past an xattr-less mount the tag goes on the backing file, where the mount hides
            # it; a file system without user xattrs at all leaves the copy untagged.
            with contextlib.suppress(OSError):
                tagged = (local.backing or local.base) / rel
                os.setxattr(tagged, ETAG_XATTR, item.version.md5.encode())
    return local


def _tagged_copies(local: Local, corpus: Corpus) -> int:
    """Processed copies that carry the ETag xattr where the test put it (on the backing file,
    past a mount), counted after the runs."""
    tagged = 0
    for item in corpus.processed:
        path = (local.backing or local.base) / f"processed/{item.key[len(PREFIX) :]}"
        with contextlib.suppress(OSError):
            tagged += os.getxattr(path, ETAG_XATTR) == item.version.md5.encode()
    return tagged


def xattrs_supported(folder: Path) -> bool:
    probe = folder / "xattr-probe"
    probe.write_bytes(b"")
    try:
        os.setxattr(probe, ETAG_XATTR, b"x")
    except OSError:
        return False
    finally:
        probe.unlink()
    return True


def _resnapshot(trial: Trial) -> Trial:
    """After the test itself changed the sandbox (prefilled a log, planted odd files)."""
    return replace(trial, snapshot=trial.sandbox.snapshot())


def _end(bench: Bench, trial: Trial, *, passed: bool) -> None:
    with contextlib.suppress(Exception):
        trial.lab.empty(trial.bucket)
    if trial.mounts in bench._open:
        bench._open.remove(trial.mounts)
    trial.mounts.close()
    if passed or not bench.keep_failed:
        shutil.rmtree(trial.sandbox.root.parent, ignore_errors=True)


def _tail(text: str, lines: int = 6) -> str:
    return " | ".join(text.strip().splitlines()[-lines:])


def _crashes(*runs: RunResult) -> list[Violation]:
    return [
        Violation(Kind.CRASH, r.name, "s3drain printed a traceback: " + _tail(r.stderr))
        for r in runs
        if r.crashed
    ]


def _drained(
    trial: Trial, result: RunResult, corpus: Corpus, *, may_stay: frozenset[str] = frozenset()
) -> list[Violation]:
    """After an undisturbed run every drainable object is gone - the run finished what a
    disturbed one left - except those the scenario expects to stay."""
    left = {s.key for s in trial.lab.stored(trial.bucket)}
    stuck = [b.key for b in corpus.drainable if b.key in left and b.key not in may_stay]
    found = [
        Violation(Kind.NOT_DRAINED, key, f"still in S3 after a clean run ({result.name})")
        for key in stuck
    ]
    if stuck and result.returncode != 0:
        found.append(
            Violation(
                Kind.NOT_DRAINED, result.name, f"exit {result.returncode}: {_tail(result.stderr)}"
            )
        )
    return found


@dataclass(frozen=True)
class _Verdicts:
    """What a trial found, gathered as it goes."""

    found: tuple[Violation, ...] = ()
    runs: tuple[RunResult, ...] = ()

    def add(self, *violations: Violation) -> _Verdicts:
        return replace(self, found=(*self.found, *violations))

    def ran(self, *results: RunResult) -> _Verdicts:
        return replace(self, runs=(*self.runs, *results))


def _report(
    scenario: str,
    seed: int,
    label: str,
    corpus: Corpus,
    *,
    verdicts: _Verdicts,
    started: float,
    notes: Mapping[str, int],
    recreated: Iterable[Version] = (),
) -> TrialReport:
    """One line per distinct problem: an object unaudited after the first run and still after
    the second is one object, not two."""
    distinct: dict[tuple[Kind, str], Violation] = {}
    for violation in verdicts.found:
        distinct.setdefault((violation.kind, violation.subject), violation)
    violations = tuple(distinct.values())
    return TrialReport(
        scenario=scenario,
        seed=seed,
        label=label,
        at_stake=len(corpus.blobs),
        violations=violations,
        partial_files=partial_files(violations),
        seconds=time.monotonic() - started,
        notes=notes,
        runs=tuple(_run_line(r) for r in verdicts.runs),
        recreated=frozenset(v.key for v in recreated),
    )


def _run_line(result: RunResult) -> str:
    how = "killed" if result.killed else f"exit {result.returncode}"
    return f"{result.name}: {how} after {result.seconds:.1f}s: {_tail(result.stderr, 2)}"


def _finish(bench: Bench, trial: Trial, report: TrialReport) -> TrialReport:
    _end(bench, trial, passed=not report.violations)
    return report


# -- 1. kill -9 at a random moment -------------------------------------------------------------


def _delete_op(server: str) -> str:
    """The request s3drain deletes with on this server, as its probe will find."""
    return "DeleteObjects" if server == AWS_LIKE else "DeleteObject"


def _kill_plan(rng: random.Random, corpus: Corpus, server: str, run_seconds: float) -> KillPlan:
    """Most kills by the clock, anywhere from process start to a little past a typical run's
    end; many a few ms after the proxy receives a chosen request - a listing page, a (ranged)
    GET, a delete - so the kill lands while it is in flight or its body streams; some right
    after the server executed a delete whose answer never came (the ledger's reason to
    record a delete as `sending` before it is sent)."""
    delete_op = _delete_op(server)
    roll = rng.random()
    if roll < 0.45:
        return KillPlan(delay=rng.uniform(0.0, 1.2 * run_seconds))
    if roll < 0.55:
        return KillPlan(delay=rng.uniform(0.0, 0.02), op=delete_op, stall=True)
    to_fetch = [b for b in corpus.drainable if b.size > 0 and b not in corpus.processed]
    gets = len(to_fetch)  # at least one GET each; a large one may get more streams
    # Single deletes: one request per object; batches: one per 5 s or 1000 keys, so a trial's
    # few hundred objects usually go in one batch at the end.
    deletes = len(corpus.drainable) if delete_op == "DeleteObject" else 1
    op, count = rng.choice(
        (
            ("ListObjectsV2", 1),
            ("GetObject", gets),
            ("GetObject", gets),
            ("GetObject", gets),
            (delete_op, deletes),
            (delete_op, deletes),
        )
    )
    return KillPlan(delay=rng.uniform(0.0, 0.04), op=op, nth=rng.randint(1, count))


def _kill_phase(switch: KillSwitch, killed: bool, temps: int, ledger_in_flight: bool) -> str:
    """Where the kill landed, judged from what it left behind and what was in flight."""
    in_flight = switch.fired_in_flight
    if not killed:
        return "phase: run ended before the kill"
    if temps:
        return "phase: mid-download"
    if ledger_in_flight or any(op.startswith("DeleteObject") for op in in_flight or {}):
        return "phase: delete in flight" if switch.listed else "phase: probe"
    if not switch.listed:
        return "phase: checks, probe or recovery"
    if not in_flight:
        return "phase: between requests"
    if "ListObjectsV2" in in_flight:
        return "phase: listing"
    return "phase: other request in flight"


def kill_trial(bench: Bench, seed: int, fs: str = NATIVE) -> TrialReport:
    started = time.monotonic()
    rng = random.Random(seed)
    corpus = ordinary(rng, small=(150, 300), large=(1, 3))
    workers = rng.choice((1, 2, 4, 8))
    server = bench.pick_server(rng)
    lab = bench.lab_for(server)
    plan = _kill_plan(rng, corpus, server, bench.calibrate(lab, fs))
    verbose = rng.random() < 0.3
    # A quarter of the seeds kill a run with fetch processes (the default from three cores up
    # where lanes do not run), a quarter a run in two lanes (the default for a full page of
    # small objects from two cores up; these corpora are too small for `auto` to choose
    # them), the rest this 2-core machine's default for them, the run's own threads. (Not
    # drawn from `rng`, so every other choice of a seed stays as it was.)
    fetch = {1: ("--processes", "2"), 3: ("--lanes", "2")}.get(seed % 4, ("--processes", "0"))
    label = (
        f"{len(corpus.blobs)} objects, {server}, {fs}, workers={workers}, "
        f"{fetch[0][2:]}={fetch[1]}, {plan}"
    )
    trial, local = _begin(bench, "kill", seed, corpus, lab=lab, fs=fs)
    with FaultProxy(lab.url, record_log=True, latency=rng.choice((0.0, 0.0, 0.003))) as px:
        switch = KillSwitch(plan, px)
        px.before_forward = switch.on_request
        spec = trial.spec(local, px.url, workers=workers, verbose=verbose, more_args=fetch)
        running = Running(spec, "killed run", trial.sandbox)
        switch.arm(running)
        first = running.wait()
        switch.disarm()
    # Between the kill and the next run: no partial file under a real name, nothing lost
    # that the ledger does not name as in flight.
    mid = trial.observe([local], [first], settled=not first.killed)
    temps = temp_files(mid)
    ledger = read_ledger(local)
    second = run(trial.spec(local, lab.url, workers=8), "second run", trial.sandbox)
    final = trial.observe([local], [first, second])
    verdicts = (
        _Verdicts()
        .ran(first, second)
        .add(*check(mid), *check(final), *_crashes(first, second))
        .add(*_drained(trial, second, corpus))
    )
    phase = _kill_phase(switch, first.killed, temps, bool(ledger.sending))
    notes = {
        phase: 1,
        "temp files left by kills": temps,
        "staged rows left by kills": ledger.staged,
        "deletes left in flight (ledger)": len(ledger.sending),
        "audit lines owed (ledger)": len(ledger.unaudited),
        f"server {server}": 1,
    }
    return _finish(
        bench,
        trial,
        _report("kill", seed, label, corpus, verdicts=verdicts, started=started, notes=notes),
    )


# -- 2. 20 % of requests faulted -----------------------------------------------------------------

FAULT_RATE = 0.2
READ_TIMEOUT = 1.0
STALL_SECONDS = 1.6  # past the read timeout: a stalled response becomes a client timeout


def faults_trial(bench: Bench, seed: int) -> TrialReport:
    started = time.monotonic()
    rng = random.Random(seed)
    corpus = ordinary(rng, small=(80, 160), large=(1, 2))
    workers = rng.choice((2, 4, 8))
    server = bench.pick_server(rng)
    lab = bench.lab_for(server)
    # Odd seeds drain in two lanes (not drawn from `rng`: every other choice stays as it was).
    lanes = ("--lanes", "2") if seed % 2 else ()
    label = f"{len(corpus.blobs)} objects, {server}, workers={workers}, lanes={lanes[1] if lanes else 1}"
    trial, local = _begin(bench, "faults", seed, corpus, lab=lab)
    with FaultProxy(
        lab.url, fault_rate=FAULT_RATE, seed=seed, stall_seconds=STALL_SECONDS
    ) as proxy:
        spec = trial.spec(
            local,
            proxy.url,
            workers=workers,
            read_timeout=READ_TIMEOUT,
            verbose=True,
            more_args=lanes,
        )
        first = run(spec, "faulted run", trial.sandbox)
        injected = proxy.fault_counts()
        requests = sum(proxy.counts().values())
    during = trial.observe([local], [first])
    second = run(trial.spec(local, lab.url), "clean run", trial.sandbox)
    final = trial.observe([local], [first, second])
    verdicts = (
        _Verdicts()
        .ran(first, second)
        .add(*check(during), *check(final), *_crashes(first, second))
        .add(*_drained(trial, second, corpus))
    )
    notes = {f"fault {kind}": n for kind, n in injected.items()}
    notes["requests through the proxy"] = requests
    notes[f"server {server}"] = 1
    return _finish(
        bench,
        trial,
        _report("faults", seed, label, corpus, verdicts=verdicts, started=started, notes=notes),
    )


# -- 3. disk full --------------------------------------------------------------------------------

DISK_VARIANTS = (
    "fsize: object files",  # RLIMIT_FSIZE below the larger objects: their writes fail EFBIG
    "fsize: audit log",  # RLIMIT_FSIZE just above a long audit log: its appends fail EFBIG
    "fsize: ledger",  # small objects, RLIMIT_FSIZE above them: the ledger's WAL fills first
    "tmpfs: raw folder",  # a real small file system under raw/: ENOSPC (root only)
    "tmpfs: whole base",  # the same under the whole base path, audit log included
)
TMPFS_ROOMY = 512 * MiB


def _mount_tmpfs(path: Path, size: int) -> bool:
    """False where mounting is not allowed (not root, a container) or there is no `mount`."""
    try:
        result = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)],
            capture_output=True,
            check=False,
        )
    except OSError:
        return False
    return result.returncode == 0


def _resize_tmpfs(path: Path, size: int) -> None:
    subprocess.run(
        ["mount", "-o", f"remount,size={size}", str(path)], capture_output=True, check=True
    )


def _umount(path: Path) -> None:
    if subprocess.run(["umount", str(path)], capture_output=True, check=False).returncode:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)


_OLD_AUDIT_LINE = (
    '{"time": "2026-01-01T00:00:00.000Z", "run": "20260101T000000Z", "bucket": "older", '
    '"key": "exports/2024/previous/f%07d.bin", "size": 10, "etag": "%032x", '
    '"version_id": null, "last_modified": "2026-01-01T00:00:00+00:00", "status": "downloaded", '
    '"deleted": true, "local_path": null, "verified": "md5", "detail": null}\n'
)


def _prefill_audit(local: Local, rng: random.Random, size: int) -> int:
    """An audit log earlier runs left, about `size` bytes, about keys long gone from S3."""
    local.state.mkdir(parents=True, exist_ok=True)
    written = number = 0
    with local.audit_log.open("w") as handle:
        while written < size:
            written += handle.write(_OLD_AUDIT_LINE % (number, rng.getrandbits(128)))
            number += 1
    return written


def _tmpfs_bytes(items: Sequence[Blob]) -> int:
    """What files take on a tmpfs: whole 4 KiB pages, and some room for their folders."""
    return sum(-(-item.size // 4096) * 4096 for item in items) + 64 * KiB


def _small_objects(rng: random.Random, count: int) -> Corpus:
    """Objects of at most 8 KiB, in a few folders."""
    blobs = []
    for number in range(count):
        folder = rng.choice(("", "d0/", "deep/a/"))
        data = rng.randbytes(rng.randint(0, 8 * KiB))
        blobs.append(blob(f"{PREFIX}{folder}s{number:04d}.bin", data))
    return Corpus(tuple(blobs))


def disk_variants(bench: Bench) -> tuple[str, ...]:
    return DISK_VARIANTS if bench.tmpfs_available() else DISK_VARIANTS[:3]


@contextlib.contextmanager
def _small_disk(variant: str, local: Local, size: int | None) -> Iterator[Path | None]:
    """Mount the variant's tmpfs (if any) for the duration; yields the mount point."""
    if size is None:
        yield None
        return
    point = local.raw if variant == "tmpfs: raw folder" else local.base
    point.mkdir(parents=True, exist_ok=True)
    if not _mount_tmpfs(point, size):
        raise AssertionError(f"could not mount a tmpfs at {point}, though a probe could")
    try:
        yield point
    finally:
        _umount(point)


def disk_trial(bench: Bench, seed: int, variant: str | None = None) -> TrialReport:
    started = time.monotonic()
    rng = random.Random(seed)
    variant = variant or disk_variants(bench)[seed % len(disk_variants(bench))]
    if variant == "fsize: ledger":
        corpus = _small_objects(rng, rng.randint(100, 150))
    else:
        corpus = ordinary(rng, small=(80, 160), large=(1, 3))
    workers = rng.choice((1, 4, 8))
    server = bench.pick_server(rng)
    lab = bench.lab_for(server)
    trial, local = _begin(bench, "disk", seed, corpus, lab=lab)
    fsize = tmpfs = None
    if variant == "fsize: object files":
        fsize = rng.randint(128 * KiB, 2 * MiB - 1)  # below every large object
    elif variant == "fsize: audit log":
        # Each file is limited on its own: objects fit, the audit log fills after a few lines.
        fsize = _prefill_audit(local, rng, 8 * MiB) + rng.randint(1 * KiB, 8 * KiB)
    elif variant == "fsize: ledger":
        # Above every object and the whole audit log (150 lines of well under 1 KiB): only the
        # ledger's write-ahead log, a few KiB per commit, outgrows it.
        fsize = rng.randint(160 * KiB, 224 * KiB)
    else:
        # Room for what the ETL already keeps there (whole base), then a little more.
        kept = _tmpfs_bytes(corpus.processed) if variant == "tmpfs: whole base" else 0
        tmpfs = kept + rng.randint(256 * KiB, 8 * MiB)
    # Odd seeds fill the disk under two lanes (not drawn from `rng`).
    lanes = ("--lanes", "2") if seed % 2 else ()
    label = (
        f"{variant}, limit {fsize or tmpfs} B, {server}, workers={workers}, "
        f"lanes={lanes[1] if lanes else 1}"
    )
    verdicts = _Verdicts()
    with _small_disk(variant, local, tmpfs) as point:
        if point == local.base:
            _place_processed(local, corpus)  # the mount hid them
        trial = _resnapshot(trial)
        spec = trial.spec(local, lab.url, workers=workers, fsize_limit=fsize, more_args=lanes)
        first = run(spec, "disk-full run", trial.sandbox)
        verdicts = verdicts.ran(first).add(*check(trial.observe([local], [first])))
        if point is not None:
            _resize_tmpfs(point, TMPFS_ROOMY)
        second = run(trial.spec(local, lab.url), "run with room", trial.sandbox)
        final = trial.observe([local], [first, second])
        verdicts = verdicts.ran(second).add(*check(final), *_crashes(first, second))
        verdicts = verdicts.add(*_drained(trial, second, corpus))
    notes = {
        f"disk {variant}": 1,
        "disk-full runs that exited 5": int(first.returncode == 5),
        f"server {server}": 1,
    }
    return _finish(
        bench,
        trial,
        _report("disk", seed, label, corpus, verdicts=verdicts, started=started, notes=notes),
    )


# -- 4. objects overwritten mid-run ---------------------------------------------------------------

BEFORE_GET = "after listing, before its GET"
MID_RANGES = "between two ranged GETs"
BEFORE_DELETE = "after download, before its delete"
PROCESSED_BEFORE_DELETE = "in processed/, before its delete"
MOMENTS = (BEFORE_GET, MID_RANGES, BEFORE_DELETE, PROCESSED_BEFORE_DELETE)


@dataclass(frozen=True)
class _Overwrite:
    key: str
    moment: str
    new: Blob


class _Overwriter:
    """The proxy's before_forward hook: writes a victim's new version at its chosen moment,
    before the request that marks the moment reaches the server. A DeleteObjects request
    names its keys in its body, which the proxy hands over."""

    def __init__(self, trial: Trial, plans: Sequence[_Overwrite]) -> None:
        self._trial = trial
        self._plans = {p.key: p for p in plans}
        self._gets: Counter[str] = Counter()
        self._lock = threading.Lock()
        self.done: dict[str, str] = {}  # key -> moment
        self.written: list[Version] = []

    def __call__(self, info: RequestInfo) -> None:
        if info.bucket != self._trial.bucket:
            return
        keys = _batch_keys(info.body) if info.op == "DeleteObjects" else [info.key]
        with self._lock:
            if info.op == "GetObject":
                self._gets[info.key] += 1
            for key in keys:
                plan = self._plans.get(key)
                if plan is None or plan.key in self.done or not self._due(plan, info):
                    continue
                self._trial.lab.put(self._trial.bucket, plan.new)
                self.written.append(plan.new.version)
                self.done[plan.key] = plan.moment

    def _due(self, plan: _Overwrite, info: RequestInfo) -> bool:
        if plan.moment == BEFORE_GET:
            return info.op == "GetObject"
        if plan.moment == MID_RANGES:
            return info.op == "GetObject" and self._gets[info.key] == 2
        return info.op in ("DeleteObject", "DeleteObjects")  # either before-delete moment


def _batch_keys(body: bytes | None) -> list[str]:
    """The keys a DeleteObjects body names (none if the proxy could not hand it over)."""
    if not body:
        return []
    root = ElementTree.fromstring(body)
    return [key.text or "" for key in root.iterfind("{*}Object/{*}Key")]


def _overwrites(rng: random.Random, corpus: Corpus, allowed: Sequence[str]) -> list[_Overwrite]:
    """About one object in ten, each at a moment its kind allows: a downloaded one before its
    GET, between two of its ranged GETs (if it is split), or after its download before its
    delete; a processed copy before its delete."""
    plans = []
    candidates = [b for b in corpus.drainable if b.size > 0]
    for victim in rng.sample(candidates, k=max(3, len(candidates) // 10)):
        fetched = victim not in corpus.processed
        moments = [BEFORE_GET, BEFORE_DELETE] if fetched else [PROCESSED_BEFORE_DELETE]
        if fetched and victim.size >= 2 * MiB:
            moments.append(MID_RANGES)
        moments = [m for m in moments if m in allowed]
        if moments:
            # Mostly the same size: then only the ETag can tell the versions apart.
            size = victim.size if rng.random() < 0.7 else rng.randint(1, 2 * victim.size)
            new = blob(victim.key, rng.randbytes(size))
            plans.append(_Overwrite(victim.key, rng.choice(moments), new))
    return plans


@dataclass(frozen=True)
class _Rewrites:
    written: tuple[Version, ...] = ()
    recreated: tuple[Version, ...] = ()  # the old version had already left S3


def _rewrite_between_runs(
    trial: Trial, local: Local, corpus: Corpus, rng: random.Random, touched: Iterable[str]
) -> _Rewrites:
    """A producer uploads new versions of keys whose delete a killed run left in flight (the
    ledger's `sending` rows), before the next run starts - the ones the server had already
    deleted first, since recovery must not take the new upload for the old version's fate
    (keys already overwritten during the run are left alone)."""
    sending = {key for key, _ in read_ledger(local).sending} - set(touched)
    current = {s.key: s.etag for s in trial.lab.stored(trial.bucket)}
    candidates = [b for b in corpus.drainable if b.key in sending and b.size > 0]
    gone = [b for b in candidates if current.get(b.key) != b.version.md5]
    there = [b for b in candidates if current.get(b.key) == b.version.md5]
    chosen = rng.sample(gone, k=min(2, len(gone)))
    chosen += rng.sample(there, k=min(3 - len(chosen), len(there)))
    rewrites = _Rewrites()
    for victim in chosen:
        new = blob(victim.key, rng.randbytes(victim.size))
        trial.lab.put(trial.bucket, new)
        rewrites = _Rewrites(
            written=(*rewrites.written, new.version),
            recreated=(*rewrites.recreated, victim.version)
            if victim in gone
            else rewrites.recreated,
        )
    return rewrites


def overwrite_trial(
    bench: Bench,
    seed: int,
    killed: bool = False,
    moments: Sequence[str] = MOMENTS,
    *,
    server: str = MOTO,
    fs: str = NATIVE,
) -> TrialReport:
    """Overwrites during a run, at `moments`; with `killed` the run is also killed right after
    a delete the server executed, and some of the keys whose delete the ledger left in flight
    are uploaded anew before the next run. On plain moto s3drain deletes one by one with
    If-Match, on the AWS-like one in batches with each key's ETag: either way, no new version
    may be deleted."""
    started = time.monotonic()
    rng = random.Random(seed)
    corpus = ordinary(rng, small=(60, 140), large=(2, 3))
    workers = rng.choice((1, 2, 4, 8))
    lab = bench.lab_for(server)
    plans = _overwrites(rng, corpus, moments)
    delete_op = _delete_op(server)
    plan = KillPlan(delay=rng.uniform(0.0, 0.02), op=delete_op, stall=True) if killed else None
    label = f"{len(corpus.blobs)} objects, {server}, {fs}, workers={workers}, "
    label += f"{len(plans)} overwrites" + (f", {plan}, then rewrites" if plan else "")
    trial, local = _begin(bench, "overwrite", seed, corpus, lab=lab, fs=fs)
    overwriter = _Overwriter(trial, plans)
    with FaultProxy(lab.url, record_log=True) as proxy:
        switch = KillSwitch(plan, proxy) if plan else None
        proxy.before_forward = chain(overwriter, switch.on_request) if switch else overwriter
        spec = trial.spec(local, proxy.url, workers=workers, verbose=True)
        running = Running(spec, "run with overwrites", trial.sandbox)
        if switch:
            switch.arm(running)
        first = running.wait()
        if switch:
            switch.disarm()
    written = list(overwriter.written)
    # That run listed only the old versions: every new version must still be in S3.
    during = trial.observe(
        [local], [first], written=written, newest_must_stay=True, settled=not first.killed
    )
    rewrites = (
        _rewrite_between_runs(trial, local, corpus, rng, overwriter.done) if plan else _Rewrites()
    )
    written += rewrites.written
    second = run(trial.spec(local, lab.url), "clean run", trial.sandbox)
    final = trial.observe([local], [first, second], written=written, recreated=rewrites.recreated)
    victims = frozenset(v.key for v in written)
    verdicts = (
        _Verdicts()
        .ran(first, second)
        .add(*check(during), *check(final), *_crashes(first, second))
        .add(*_drained(trial, second, corpus, may_stay=victims))
    )
    notes = Counter(f"overwritten {moment}" for moment in overwriter.done.values())
    notes[f"server {server}"] = 1
    if plan:
        notes["rewritten after a killed run's delete"] = len(rewrites.written)
        notes["of those, already deleted by it"] = len(rewrites.recreated)
    report = _report(
        "overwrite",
        seed,
        label,
        corpus,
        verdicts=verdicts,
        started=started,
        notes=notes,
        recreated=rewrites.recreated,
    )
    return _finish(bench, trial, report)


def stale_processed_trial(bench: Bench, seed: int, tagged: bool, fs: str = NATIVE) -> TrialReport:
    """The ETL processed some objects; then the producer uploaded corrected versions of the
    same size; then the drain runs. A processed copy must not vouch for the new bytes, whether
    or not it carries the ETag xattr an earlier s3drain left (`tagged`; on the xattr-less mount
    the tag sits on the backing file, hidden): only content, or the ledger, may."""
    started = time.monotonic()
    rng = random.Random(seed)
    corpus = ordinary(rng, small=(40, 80), large=(0, 1), processed_share=0.15)
    corpus = replace(
        corpus, tagged=frozenset(b.key for b in corpus.processed) if tagged else frozenset()
    )
    label = (
        f"{len(corpus.processed)} processed copies {'with' if tagged else 'without'} ETag "
        f"xattr, {fs}"
    )
    trial, local = _begin(bench, "stale", seed, corpus, fs=fs)
    newer = [blob(b.key, rng.randbytes(b.size)) for b in corpus.processed]
    trial.lab.fill(trial.bucket, newer)
    written = [b.version for b in newer]
    first = run(trial.spec(local, trial.lab.url, verbose=True), "drain", trial.sandbox)
    second = run(trial.spec(local, trial.lab.url), "second run", trial.sandbox)
    final = trial.observe([local], [first, second], written=written)
    verdicts = _Verdicts().ran(first, second).add(*check(final), *_crashes(first, second))
    notes = {
        "processed copies overtaken by a same-size upload": len(newer),
        "of those, carrying the ETag xattr": _tagged_copies(local, corpus),
    }
    return _finish(
        bench,
        trial,
        _report("overwrite", seed, label, corpus, verdicts=verdicts, started=started, notes=notes),
    )


# -- 5. two overlapping runs ----------------------------------------------------------------------


def _lock_messages(results: Sequence[RunResult]) -> list[Violation]:
    """A run that exits 3 must say why (README: another run holds the lock)."""
    return [
        Violation(Kind.CRASH, r.name, f"exit 3 without naming the lock: {_tail(r.stderr)}")
        for r in results
        if r.returncode == 3 and "another s3drain run" not in r.stderr
    ]


def overlap_trial(bench: Bench, seed: int, same_base: bool | None = None) -> TrialReport:
    started = time.monotonic()
    rng = random.Random(seed)
    same_base = seed % 2 == 0 if same_base is None else same_base
    corpus = ordinary(rng, small=(100, 200), large=(1, 2))
    server = bench.pick_server(rng)
    lab = bench.lab_for(server)
    trial, local_a = _begin(bench, "overlap", seed, corpus, lab=lab)
    local_b = local_a if same_base else trial.sandbox.local("other-base")
    offset = rng.uniform(0.0, 0.8 * bench.calibrate(lab))
    where = "same base path" if same_base else "two base paths"
    label = f"{len(corpus.blobs)} objects, {where}, {server}, B +{offset:.2f}s"
    with FaultProxy(lab.url, latency=rng.choice((0.0, 0.003, 0.01))) as proxy:
        spec_a = trial.spec(local_a, proxy.url, workers=rng.choice((2, 4)))
        spec_b = trial.spec(local_b, proxy.url, workers=rng.choice((2, 4)))
        run_a = Running(spec_a, "run A", trial.sandbox)
        time.sleep(offset)
        run_b = Running(spec_b, "run B", trial.sandbox)
        results = (run_a.wait(), run_b.wait())
    locals_ = [local_a] if same_base else [local_a, local_b]
    during = trial.observe(locals_, results)
    clean = run(trial.spec(local_a, lab.url), "clean run", trial.sandbox)
    final = trial.observe(locals_, [*results, clean])
    verdicts = (
        _Verdicts()
        .ran(*results, clean)
        .add(*check(during), *check(final), *_crashes(*results, clean))
        .add(*_lock_messages(results), *_drained(trial, clean, corpus))
    )
    notes = {
        f"overlap {where}": 1,
        "runs that found the lock held": sum(r.returncode == 3 for r in results),
        f"server {server}": 1,
    }
    return _finish(
        bench,
        trial,
        _report("overlap", seed, label, corpus, verdicts=verdicts, started=started, notes=notes),
    )


# -- 6. hostile keys ------------------------------------------------------------------------------

PAIR = ("pair", "pair/child.bin")


def _hostile_local(local: Local, sandbox: Sandbox) -> Local:
    """Local oddities a run must live with: names that are not UTF-8, a stale temp file in such
    a folder (to be swept), and a symlinked folder under raw/ that points outside."""
    odd = os.fsdecode(b"odd-\xff\xfe-name.bin")
    odd_dir = os.fsdecode(b"odd-\xe9-dir")
    local = local.place(f"raw/{odd}", b"a file whose name is not UTF-8")
    local = local.place(f"processed/{odd}", b"the ETL's own odd file")
    local = local.place(f"raw/{odd_dir}/.s3drain-00000000000000000000.part", b"stale, half")
    (local.raw / "link").symlink_to(sandbox.outside, target_is_directory=True)
    return local


def _case_sensitive(folder: Path) -> bool:
    """ext4 and tmpfs are; no case-insensitive file system is available here to test on."""
    probe = folder / "Case-Probe"
    probe.write_bytes(b"")
    try:
        return not (folder / "case-probe").exists()
    finally:
        probe.unlink()


def _hostile_expectations(
    trial: Trial, keys: Sequence[HostileKey], case_sensitive: bool
) -> list[Violation]:
    """The README's promises about odd keys: refused and skipped ones stay in S3, only one of
    'a' and 'a/b' can be drained, and legal names (case twins, NFC/NFD, long paths) drain."""
    left = {s.key for s in trial.lab.stored(trial.bucket)}
    found = [
        Violation(Kind.NOT_DRAINED, PREFIX + h.rel, f"should have stayed in S3: {h.why}")
        for h in keys
        if h.must_stay and PREFIX + h.rel not in left
    ]
    pair = [PREFIX + h.rel for h in keys if h.rel in PAIR]
    if len(pair) == 2 and not any(k in left for k in pair):
        found.append(Violation(Kind.NOT_DRAINED, "pair", "'a' and 'a/b' were both drained"))
    if case_sensitive:
        found += [
            Violation(Kind.NOT_DRAINED, PREFIX + h.rel, f"a legal name was not drained: {h.why}")
            for h in keys
            if not h.must_stay and h.rel not in PAIR and PREFIX + h.rel in left
        ]
    return found


def hostile_trial(bench: Bench, seed: int, server: str | None = None) -> TrialReport:
    """On plain moto s3drain deletes one key per request; on the AWS-like one in batches, where
    a key XML cannot carry must not sink the batch it would join."""
    started = time.monotonic()
    rng = random.Random(seed)
    marker = f"s3drain-chaos-abs-{rng.getrandbits(48):012x}"
    server = server or SERVERS[seed % 2 if bench.aws_lab else 0]
    lab = bench.lab_for(server)
    held = bench.holdable(lab)
    keys = [h for h in hostile_keys(marker) if h.rel.replace(marker, "s3drain-probe") in held]
    hostile = [blob(PREFIX + h.rel, rng.randbytes(h.size)) for h in keys]
    corpus = ordinary(rng, small=(40, 80), large=(0, 1)).with_more(*hostile)
    workers = rng.choice((1, 2, 4, 8))
    label = f"{len(corpus.blobs)} objects ({len(keys)} hostile), {server}, workers={workers}"
    trial, local = _begin(bench, "hostile", seed, corpus, watch=(f"/{marker}",), lab=lab)
    local = _hostile_local(local, trial.sandbox)
    trial = _resnapshot(trial)
    with FaultProxy(lab.url) as proxy:
        spec = trial.spec(local, proxy.url, workers=workers, verbose=True)
        first = run(spec, "hostile run", trial.sandbox)
    during = trial.observe([local], [first])
    second = run(trial.spec(local, lab.url), "second run", trial.sandbox)
    final = trial.observe([local], [first, second])
    hostile_keys_set = frozenset(b.key for b in hostile)
    verdicts = (
        _Verdicts()
        .ran(first, second)
        .add(*check(during), *check(final), *_crashes(first, second))
        .add(*_hostile_expectations(trial, keys, _case_sensitive(trial.sandbox.cwd)))
        .add(*_drained(trial, second, corpus, may_stay=hostile_keys_set))
    )
    # Not the invariant, but worth knowing: a key's ESC reached the terminal unescaped.
    notes = {
        "runs that echoed a key's raw ESC": sum("\x1b[31m" in r.stderr for r in (first, second))
    }
    return _finish(
        bench,
        trial,
        _report("hostile", seed, label, corpus, verdicts=verdicts, started=started, notes=notes),
    )


def overwrite_scenario(bench: Bench, seed: int, fs: str = NATIVE) -> TrialReport:
    """The overwrite trials in rotation: mid-run overwrites at every moment on plain moto
    (single If-Match deletes) and on the AWS-like one (ETag batches); the same with a kill
    after an executed delete and uploads before the next run (either server); and stale
    processed copies, with and without the ETag xattr."""
    variant = seed % 5
    if variant == 3:
        return stale_processed_trial(bench, seed, tagged=seed % 10 == 3, fs=fs)
    if variant == 4:
        return stale_processed_trial(bench, seed, tagged=seed % 10 == 9, fs=fs)
    aws_like = bench.aws_lab is not None and (variant == 1 or (variant == 2 and seed % 10 == 7))
    server = AWS_LIKE if aws_like else MOTO
    return overwrite_trial(bench, seed, killed=variant == 2, server=server, fs=fs)


def forced_batch_trial(bench: Bench, seed: int) -> TrialReport:
    """`--delete-mode batch` on plain moto, which ignores DeleteObjects' per-key ETag: s3drain
    must refuse it (exit 2) and change nothing - no object fetched, none deleted, no file in
    raw/, no audit line. Only the probe's deletes of random missing keys are sent."""
    started = time.monotonic()
    rng = random.Random(seed)
    corpus = ordinary(rng, small=(20, 40), large=(0, 1))
    trial, local = _begin(bench, "forced-batch", seed, corpus)
    real_deletes: list[str] = []

    def watch(info: RequestInfo) -> None:
        if info.op == "DeleteObject" and PROBE_NAME not in info.key:
            real_deletes.append(info.key)
        if info.op == "DeleteObjects" and any(PROBE_NAME not in k for k in _batch_keys(info.body)):
            real_deletes.append("a DeleteObjects batch")

    with FaultProxy(trial.lab.url, before_forward=watch) as proxy:
        spec = trial.spec(local, proxy.url, delete_mode="batch")
        result = run(spec, "forced batch", trial.sandbox)
        counts = proxy.counts()
    observed = trial.observe([local], [result])
    left = {s.key for s in trial.lab.stored(trial.bucket)}
    found = [*check(observed), *_crashes(result)]
    found += [
        Violation(Kind.NOT_DRAINED, key, "a refused run sent this delete") for key in real_deletes
    ]
    found += [
        Violation(Kind.LOST, b.key, "gone from S3 after a run that was refused")
        for b in corpus.blobs
        if b.key not in left
    ]
    verdicts = _Verdicts().ran(result).add(*found)
    notes = {
        "exit code": result.returncode,
        "refusal named --delete-mode batch": int("--delete-mode batch" in result.stderr),
        "GetObject requests": counts.get("GetObject", 0),
        "files in raw/": sum(1 for _ in local.raw.rglob("*")) if local.raw.exists() else 0,
        "audit lines": len(local.audit_log.read_bytes().splitlines())
        if local.audit_log.exists()
        else 0,
    }
    return _finish(
        bench,
        trial,
        _report(
            "forced-batch",
            seed,
            "--delete-mode batch on plain moto",
            corpus,
            verdicts=verdicts,
            started=started,
            notes=notes,
        ),
    )


SCENARIOS: dict[str, Callable[[Bench, int], TrialReport]] = {
    "kill": kill_trial,
    "kill-xattr-none": functools.partial(kill_trial, fs=XATTR_NONE),
    "faults": faults_trial,
    "disk": disk_trial,
    "overwrite": overwrite_scenario,
    "overwrite-xattr-none": functools.partial(overwrite_scenario, fs=XATTR_NONE),
    "overlap": overlap_trial,
    "hostile": hostile_trial,
}
# The scenarios whose base path is the xattr-less FUSE mount (they need FUSE).
ON_MOUNT = frozenset({"kill-xattr-none", "overwrite-xattr-none"})


def title(scenario: str) -> str:
    """How the figures name a scenario: `kill (xattr-none)` for `kill-xattr-none`."""
    base, _, fs = scenario.partition("-xattr-")
    return f"{base} (xattr-{fs})" if fs else scenario
