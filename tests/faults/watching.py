"""The watch scenario: `s3drain watch` killed -9 at a random moment while objects still arrive.

A trial's bucket notifies an SQS queue on the same moto server (`s3:ObjectCreated:*`; the
queue's visibility timeout, and the watcher's, 10 s, so messages a dead watcher held come
back soon). A producer thread uploads objects - mostly small, a few of 2-6 MiB, some keys
again (same size or not), two decoys outside the prefix - some before the watcher starts
and the rest while `s3drain watch --sqs-wait-seconds 1 --reconcile 0` runs, its S3 requests
through the fault proxy. An ETL thread takes every file that appears under a real name in
raw/ (a rename, out of the base path), as the consumer of a watcher does; what it took counts
as delivered and must have been complete (`Site.taken`). The watcher is killed -9 by the
clock, a few ms after its n-th GET or delete, or right after S3 executed a delete whose answer
the proxy withholds (`KillSwitch` with the first GET as its gate: --reconcile 0 lists
nothing); the producer goes on uploading after the kill.

Then, once every message the dead watcher held is visible again, `s3drain watch --once
--reconcile 0` finishes the job from the events alone. After it the queue must be empty and
every object still under the prefix must have an audit line saying why it was left
(`conflict`: its key's earlier version was still in raw/ when its event came); anything else
means a message left the queue unsettled (`dropped-event`). Then the ETL's last sweep and, if
anything is left, `s3drain watch --once` with its reconcile pass: the prefix and the queue
must end empty. The invariant of `invariant.py` is checked right after the kill and after
each finishing run: every version uploaded that left S3 is delivered (a file in raw/ or taken
by the ETL, with its bytes, and its audit line) or was overwritten before it was drained."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import stat
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from tests.faults.corpus import DECOY_KEYS, PREFIX, Blob, Corpus, KiB, MiB, blob
from tests.faults.harness import (
    KillPlan,
    KillSwitch,
    Lab,
    Local,
    Running,
    RunResult,
    RunSpec,
    Trial,
    read_ledger,
    run,
)
from tests.faults.invariant import (
    FileSeen,
    Kind,
    Observation,
    Version,
    Violation,
    check,
    is_temp_name,
    temp_files,
)
from tests.faults.scenarios import (
    Bench,
    TrialReport,
    _begin,
    _crashes,
    _delete_op,
    _end,
    _kill_phase,
    _report,
    _Verdicts,
)
from tests.support.eventkit import make_queue, sqs_client
from tests.support.proxy import FaultProxy, RequestInfo

VISIBILITY = 10  # seconds: the queue's and the watcher's (the least s3drain accepts)
WAIT_SECONDS = 1  # the watcher's long poll
STARTUP = 1.0  # about how long a watcher takes from exec to its first receive, here
# A receive the dead watcher had in its long poll still takes messages for up to WAIT_SECONDS.
AFTER_KILL = WAIT_SECONDS + 1.5
MAX_MESSAGES = 10  # what one ReceiveMessage takes at most
SLOW_STARTS = 0.3  # trials whose first finishing run starts slowly (see `_finish`)
SLOW_START_SECONDS = 3.0  # > --once's quiet period: WAIT_SECONDS + 1
SQS_LATENCY = 0.4
FINISHING_RUNS = 3  # while one leaves messages to come back (a failed object), run another
LEFT_IN_S3_WITH_REASON = frozenset({"conflict", "refused", "skipped"})


# -- what the producer uploads -----------------------------------------------------------------


@dataclass(frozen=True)
class Upload:
    item: Blob
    pause: float  # seconds after the previous upload


@dataclass(frozen=True)
class Plan:
    early: tuple[Blob, ...]  # uploaded before the watcher starts: their events wait
    later: tuple[Upload, ...]  # uploaded while it runs (and on, after the kill)

    @property
    def blobs(self) -> tuple[Blob, ...]:
        return (*self.early, *(u.item for u in self.later))

    @property
    def overwrites(self) -> int:
        return len(self.blobs) - len({b.key for b in self.blobs})


def _small(rng: random.Random) -> int:
    roll = rng.random()
    if roll < 0.04:
        return 0
    if roll < 0.3:
        return rng.randint(1, 200)
    if roll < 0.92:
        return rng.randint(200, 48 * KiB)
    return rng.randint(48 * KiB, 512 * KiB)


def uploads(rng: random.Random) -> Plan:
    """Small objects, 1-3 of 2-6 MiB, two decoys outside the prefix; about one key in six
    uploaded again (mostly at the same size, so only the ETag tells the versions apart),
    some right after the first version, some long after; a few keys a third time."""
    firsts = [
        blob(
            f"{PREFIX}{rng.choice(('', 'd0/', 'd1/', 'deep/a/'))}w{i:03d}.bin",
            rng.randbytes(_small(rng)),
        )
        for i in range(rng.randint(40, 80))
    ]
    firsts += [
        blob(f"{PREFIX}big/L{i}.dat", rng.randbytes(rng.randint(2 * MiB, 6 * MiB) | 1))
        for i in range(rng.randint(1, 3))
    ]
    # Beside the prefix (its events are acknowledged as out of scope): they must stay.
    firsts += [blob(key, rng.randbytes(rng.randint(1, 2000))) for key in DECOY_KEYS[1:]]
    rng.shuffle(firsts)
    order: list[Blob] = list(firsts)
    candidates = [b for b in firsts if b.key.startswith(PREFIX)]
    for victim in rng.sample(candidates, k=max(3, len(candidates) // 6)):
        latest = victim
        for _ in range(1 if rng.random() < 0.85 else 2):
            size = latest.size if rng.random() < 0.7 else _small(rng)
            newer = blob(victim.key, rng.randbytes(size))
            if newer.version.md5 == latest.version.md5:
                continue  # two empty versions: one object
            at = order.index(latest) + 1
            # Right after (before it is drained, often), or anywhere later.
            order.insert(at if rng.random() < 0.3 else rng.randint(at, len(order)), newer)
            latest = newer
    early = rng.randint(0, len(order) // 4)
    window = rng.uniform(1.5, 4.0)  # seconds of arrivals while the watcher runs
    rate = max(1, len(order) - early) / window
    later = tuple(Upload(item, rng.expovariate(rate)) for item in order[early:])
    return Plan(tuple(order[:early]), later)


class Producer:
    """Uploads a plan, each upload under the `world` lock (so an observation never sees one
    half done), and records each version: a key's first as `before`, later ones as `written`;
    an earlier version already gone from S3 when its key is uploaded again is `recreated` (a
    watcher drained it: it must be accounted for, not excused as overwritten)."""

    def __init__(self, lab: Lab, bucket: str, world: threading.Lock) -> None:
        self._lab = lab
        self._bucket = bucket
        self._world = world
        self.latest: dict[str, Blob] = {}
        self.before: list[Version] = []
        self.written: list[Version] = []
        self.recreated: list[Version] = []
        self.stop = threading.Event()

    def upload(self, item: Blob) -> None:
        with self._world:
            previous = self.latest.get(item.key)
            if previous is not None and _etag(self._lab, self._bucket, item.key) != (
                previous.version.md5
            ):
                self.recreated.append(previous.version)
            self._lab.put(self._bucket, item)
            (self.written if previous is not None else self.before).append(item.version)
            self.latest[item.key] = item

    def play(self, later: Sequence[Upload]) -> None:
        for upload in later:
            if self.stop.wait(upload.pause):
                return
            self.upload(upload.item)


def _etag(lab: Lab, bucket: str, key: str) -> str | None:
    page = lab.client.list_objects_v2(Bucket=bucket, Prefix=key)
    for entry in page.get("Contents", []):
        if entry["Key"] == key:
            return str(entry["ETag"]).strip('"')
    return None


# -- the ETL -----------------------------------------------------------------------------------


class Etl:
    """Takes every file under a real name in raw/ (never a `.s3drain-*.part`), by a rename out
    of the base path, every `every` seconds; records each under the path it had in raw/."""

    def __init__(self, local: Local, shelf: Path, world: threading.Lock, every: float) -> None:
        self._raw = local.raw
        self._shelf = shelf
        self._world = world
        self._every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="etl", daemon=True)
        self.taken: list[FileSeen] = []
        shelf.mkdir(parents=True, exist_ok=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.ident is not None:
            self._thread.join()

    def _loop(self) -> None:
        while not self._stop.wait(self._every):
            self.sweep()

    def sweep(self) -> int:
        took = 0
        with self._world:
            for folder, _, names in os.walk(self._raw):
                for name in names:
                    path = os.path.join(folder, name)
                    if is_temp_name(name) or not _regular(path):
                        continue
                    target = self._shelf / f"{len(self.taken):05d}"
                    try:
                        os.rename(path, target)
                    except FileNotFoundError:
                        continue
                    data = target.read_bytes()
                    self.taken.append(FileSeen(path, hashlib.sha256(data).hexdigest(), len(data)))
                    took += 1
        return took


def _regular(path: str) -> bool:
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except FileNotFoundError:
        return False


# -- the queue ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Queue:
    client: Any
    url: str

    @classmethod
    @contextlib.contextmanager
    def notifying(cls, lab: Lab, bucket: str) -> Iterator[Queue]:
        """A queue the bucket's `s3:ObjectCreated:*` notifications go to; deleted afterwards."""
        client = sqs_client(lab.url)
        url, arn = make_queue(client, bucket, VisibilityTimeout=str(VISIBILITY))
        try:
            lab.client.put_bucket_notification_configuration(
                Bucket=bucket,
                NotificationConfiguration={
                    "QueueConfigurations": [{"QueueArn": arn, "Events": ["s3:ObjectCreated:*"]}]
                },
            )
            yield cls(client, url)
        finally:
            with contextlib.suppress(Exception):
                client.delete_queue(QueueUrl=url)
            client.close()

    def counts(self) -> tuple[int, int]:
        """(visible, in flight) messages."""
        names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        found = self.client.get_queue_attributes(QueueUrl=self.url, AttributeNames=names)
        values = found["Attributes"]
        return int(values.get(names[0], 0)), int(values.get(names[1], 0))

    def peek(self) -> list[str]:
        """What the messages left in the queue name: key, how often received before (this
        look is one more), seconds since sent and since first received (made visible again
        at once)."""
        named = []
        answer = self.client.receive_message(
            QueueUrl=self.url,
            MaxNumberOfMessages=10,
            VisibilityTimeout=0,
            AttributeNames=["All"],
        )
        now = time.time()
        for message in answer.get("Messages", []):
            attributes = message.get("Attributes", {})
            with contextlib.suppress(ValueError, KeyError, TypeError):
                count = int(attributes["ApproximateReceiveCount"]) - 1
                sent = now - int(attributes["SentTimestamp"]) / 1000
                first = now - int(attributes["ApproximateFirstReceiveTimestamp"]) / 1000
                for record in json.loads(message["Body"])["Records"]:
                    named.append(
                        f"{record['s3']['object']['key']} (received {count}x, sent {sent:.1f} s "
                        f"ago, first received {first:.1f} s ago)"
                    )
        return named

    @contextlib.contextmanager
    def timeline(self) -> Iterator[list[tuple[float, int, int]]]:
        """(seconds since start, visible, in flight), at every change, sampled every 0.1 s."""
        changes: list[tuple[float, int, int]] = []
        stop = threading.Event()
        started = time.monotonic()

        def sample() -> None:
            last = None
            while not stop.wait(0.1):
                with contextlib.suppress(Exception):
                    counts = self.counts()
                    if counts != last:
                        changes.append((time.monotonic() - started, *counts))
                        last = counts

        thread = threading.Thread(target=sample, name="queue-timeline", daemon=True)
        thread.start()
        try:
            yield changes
        finally:
            stop.set()
            thread.join()

    def wait_all_visible(self, timeout: float) -> bool:
        """Until no message is in flight (those a dead watcher held came back)."""
        deadline = time.monotonic() + timeout
        while self.counts()[1]:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.2)
        return True


# -- the trial ---------------------------------------------------------------------------------


def _watch_spec(
    trial: Trial,
    local: Local,
    endpoint: str,
    queue: Queue,
    *,
    workers: int,
    verbose: bool = False,
    once: bool = False,
    reconcile: bool = False,
    sqs_url: str | None = None,
) -> RunSpec:
    """The watcher's command line; SQS at `sqs_url` (default: the moto server itself)."""
    more = [
        "--queue-url",
        queue.url,
        "--sqs-wait-seconds",
        str(WAIT_SECONDS),
        "--visibility-timeout",
        str(VISIBILITY),
    ]
    if not reconcile:
        more += ["--reconcile", "0"]
    if once:
        more += ["--once", "--json"]
    return trial.spec(
        local,
        endpoint,
        workers=workers,
        verbose=verbose,
        subcommand="watch",
        more_args=tuple(more),
        more_env=(("AWS_ENDPOINT_URL_SQS", sqs_url or trial.lab.url),),
    )


def _kill_plan(rng: random.Random, server: str, plan: Plan) -> KillPlan:
    """By the clock, anywhere from exec to a little past the last arrival; a few ms after the
    n-th GET or delete; or right after S3 executed a delete whose answer never came."""
    delete_op = _delete_op(server)
    window = sum(u.pause for u in plan.later)
    objects = sum(1 for b in plan.blobs if b.key.startswith(PREFIX) and b.size > 0)
    roll = rng.random()
    if roll < 0.45:
        return KillPlan(delay=rng.uniform(0.2, STARTUP + window + 1.0))
    if roll < 0.6:
        return KillPlan(delay=rng.uniform(0.0, 0.02), op=delete_op, stall=True)
    if roll < 0.85:
        return KillPlan(delay=rng.uniform(0.0, 0.04), op="GetObject", nth=rng.randint(1, objects))
    # Batches go out every few ms while objects trickle in: a handful per trial.
    deletes = objects if delete_op == "DeleteObject" else 4
    return KillPlan(delay=rng.uniform(0.0, 0.04), op=delete_op, nth=rng.randint(1, deletes))


@dataclass(frozen=True)
class _World:
    """What one observation needs beside the trial: the producer's and the ETL's records."""

    trial: Trial
    local: Local
    producer: Producer
    etl: Etl
    lock: threading.Lock

    def observe(self, runs: Sequence[RunResult], *, settled: bool = True) -> Observation:
        with self.lock:
            trial = replace(self.trial, before=tuple(self.producer.before))
            return trial.observe(
                [self.local],
                runs,
                written=list(self.producer.written),
                recreated=list(self.producer.recreated),
                settled=settled,
                taken=list(self.etl.taken),
            )


def _queue_empty(queue: Queue, after: RunResult) -> list[Violation]:
    visible, in_flight = queue.counts()
    if not (visible or in_flight):
        return []
    detail = f"the queue still holds {visible} visible and {in_flight} in-flight message(s)"
    queue.wait_all_visible(VISIBILITY + 5)
    return [Violation(Kind.NOT_DRAINED, after.name, f"{detail}: {queue.peek()}")]


def _left_unsettled(observed: Observation, queue: Queue, after: RunResult) -> list[Violation]:
    """After a finishing run: the queue is empty, and each object still under the prefix has
    an audit line saying why it was left (else its message was deleted unsettled)."""
    statuses: dict[tuple[str, str], list[str]] = {}
    for site in observed.sites:
        for line in site.audit:
            statuses.setdefault((line.key, line.etag), []).append(line.status)
    found = _queue_empty(queue, after)
    for item in observed.bucket:
        lines = statuses.get((item.key, item.etag), [])
        if item.key.startswith(PREFIX) and not LEFT_IN_S3_WITH_REASON.intersection(lines):
            found.append(
                Violation(
                    Kind.DROPPED,
                    item.key,
                    f"ETag {item.etag} is still in S3 after {after.name} emptied the queue, and "
                    f"no audit line says why it was left (its lines: {lines or 'none'})",
                )
            )
    return found


def _not_drained(observed: Observation, queue: Queue, after: RunResult) -> list[Violation]:
    """At the end: the prefix and the queue are empty."""
    return _queue_empty(queue, after) + [
        Violation(Kind.NOT_DRAINED, item.key, f"still in S3 after {after.name}")
        for item in observed.bucket
        if item.key.startswith(PREFIX)
    ]


def _summary(result: RunResult) -> dict[str, Any]:
    with contextlib.suppress(ValueError):
        document = json.loads(result.stdout)
        if isinstance(document, dict):
            return document
    return {}


def _messages(result: RunResult) -> dict[str, int]:
    """A --once run's message figures from its --json summary."""
    found = _summary(result).get("watch", {}).get("messages", {})
    names = ("received", "left", "released", "delete_failed", "visibility_lost")
    return {f"finishing run: messages {n}": int(found.get(n) or 0) for n in names}


def watch_trial(
    bench: Bench, seed: int, *, server: str | None = None, slow_start: bool | None = None
) -> TrialReport:
    """One trial; the server (plain or AWS-like moto) and whether the first finishing run
    starts slowly are drawn from the seed unless given (the seed's other draws stay)."""
    started = time.monotonic()
    rng = random.Random(seed)
    plan = uploads(rng)
    workers = rng.choice((1, 2, 4, 8))
    picked = bench.pick_server(rng)
    server = server or picked
    lab = bench.lab_for(server)
    kill = _kill_plan(rng, server, plan)
    every = rng.choice((0.05, 0.2, 0.5, 1.0))
    verbose = rng.random() < 0.3
    drawn = rng.random() < SLOW_STARTS
    slow_start = drawn if slow_start is None else slow_start
    label = (
        f"{len(plan.blobs)} uploads ({len(plan.early)} early, {plan.overwrites} overwrites), "
        f"{server}, workers={workers}, ETL every {every} s, {kill}"
        + (", slow start" if slow_start else "")
    )
    trial, local = _begin(bench, "watch", seed, Corpus(()), lab=lab)
    world_lock = threading.Lock()
    producer = Producer(lab, trial.bucket, world_lock)
    etl = Etl(local, trial.sandbox.root.parent / "etl", world_lock, every)
    world = _World(trial, local, producer, etl, world_lock)
    verdicts = _Verdicts()
    try:
        with Queue.notifying(lab, trial.bucket) as queue:
            for item in plan.early:
                producer.upload(item)
            etl.start()
            killed = _killed_watcher(world, queue, plan, kill, workers=workers, verbose=verbose)
            first = killed.result
            mid = world.observe([first], settled=not first.killed)
            ledger = read_ledger(local)
            verdicts = verdicts.ran(first).add(*check(mid))
            # The producer goes on, and uploads anew keys the dead watcher had drained (some
            # with their delete left in flight); then every message it held comes back.
            rewritten = _rewrite_drained(world, rng, ledger.sending)
            killed.producer.join()
            time.sleep(max(0.0, AFTER_KILL - (time.monotonic() - killed.at)))
            finished = _finish(world, queue, workers, slow_start=slow_start)
            finishes = finished.runs
            finish = finishes[-1]
            after = world.observe([first, *finishes])
            verdicts = verdicts.ran(*finishes).add(*finished.found, *_crashes(first, *finishes))
            verdicts = verdicts.add(*check(after), *_left_unsettled(after, queue, finish))
            etl.stop()
            etl.sweep()
            runs = [first, *finishes]
            left = [s for s in after.bucket if s.key.startswith(PREFIX)]
            if left:
                spec = _watch_spec(
                    trial, local, lab.url, queue, workers=workers, once=True, reconcile=True
                )
                runs.append(run(spec, "reconciling run", trial.sandbox))
                verdicts = verdicts.ran(runs[-1]).add(*_crashes(runs[-1]))
                etl.sweep()
            final = world.observe(runs)
            verdicts = verdicts.add(*check(final), *_not_drained(final, queue, runs[-1]))
    finally:
        producer.stop.set()
        etl.stop()
    notes = {
        f"server {server}": 1,
        _kill_phase(killed.switch, first.killed, temp_files(mid), bool(ledger.sending)): 1,
        "kills by the fallback clock": int(killed.fallback),
        "temp files left by kills": temp_files(mid),
        "staged rows left by kills": ledger.staged,
        "deletes left in flight (ledger)": len(ledger.sending),
        "audit lines owed (ledger)": len(ledger.unaudited),
        "uploads": len(plan.blobs),
        "uploads after the kill": len(plan.blobs) - killed.uploaded + rewritten,
        "drained keys uploaded anew after the kill": rewritten,
        "overwrites": len(producer.written),
        "of those, after the older version was drained": len(producer.recreated),
        "finishing runs": len(finishes),
        "finishing runs with a slow start": int(slow_start),
        "SQS answers 5xx to finishing runs (moto's receive race)": finished.server_errors,
        "messages a failed receive took out of a finishing run's sight": finished.out_of_sight,
        **_messages(finishes[0]),
        "objects left for the reconciling run (conflicts)": len(left),
        "files the ETL took": len(etl.taken),
        # At least once, not exactly once: a download the kill left staged (its delete batch
        # not yet flushed) whose file the ETL had taken is fetched again by the next run.
        "versions the ETL took more than once": len(etl.taken) - len(set(etl.taken)),
    }
    report = _report(
        "watch",
        seed,
        label,
        Corpus(plan.blobs),
        verdicts=verdicts,
        started=started,
        notes=notes,
        recreated=producer.recreated,
    )
    _end(bench, trial, passed=not report.violations)
    return report


def _rewrite_drained(world: _World, rng: random.Random, sending: frozenset[tuple[str, str]]) -> int:
    """Up to three keys whose latest version had left S3 by the kill get a new version: first
    those whose delete the ledger left in flight, then any the watcher had drained."""
    producer = world.producer
    with world.lock:
        stored = {s.key for s in world.trial.lab.stored(world.trial.bucket)}
        gone = [b for k, b in producer.latest.items() if k.startswith(PREFIX) and k not in stored]
    in_flight = {key for key, _ in sending}
    gone.sort(key=lambda b: (b.key not in in_flight, b.key))
    chosen = gone[:2] + rng.sample(gone[2:], k=min(1, len(gone[2:])))
    for victim in chosen:
        producer.upload(blob(victim.key, rng.randbytes(victim.size or 1)))
    return len(chosen)


class _SlowStart:
    """A proxy hook that holds the first request for SLOW_START_SECONDS."""

    def __init__(self) -> None:
        self._first = threading.Event()

    def __call__(self, info: RequestInfo) -> None:
        if not self._first.is_set():
            self._first.set()
            time.sleep(SLOW_START_SECONDS)


@dataclass(frozen=True)
class _Finished:
    runs: tuple[RunResult, ...]
    found: tuple[Violation, ...]
    out_of_sight: int  # messages a receive the server failed had taken (see `_finish`)
    server_errors: int  # SQS requests of the finishing runs that moto answered 5xx


def _finish(world: _World, queue: Queue, workers: int, *, slow_start: bool) -> _Finished:
    """`watch --once --reconcile 0` once every message is visible, again while the last one
    left messages in flight. That is by design when it let them go (an object failed: its
    message comes back after its visibility timeout), and when a ReceiveMessage failed on the
    server after it had taken messages: moto's receive is not thread-safe ("Set changed size
    during iteration", a 500, now and then when two receivers poll messages that come back),
    and on AWS a receive whose answer is lost does the same; those messages come back after
    their visibility timeout, out of any --once's sight. Messages in flight beyond both, or any
    left visible, are a violation. SQS is reached through a proxy that counts the 5xx.

    With `slow_start`, the first finishing run starts as on a loaded host after a kill: its
    first S3 request (checks, probe) takes SLOW_START_SECONDS, more than --once's quiet period,
    and SQS answers in SQS_LATENCY (a --once that counted its quiet period from before its
    start ended at its first look, having received nothing)."""
    trial, local = world.trial, world.local
    runs: list[RunResult] = []
    found: list[Violation] = []
    out_of_sight = errors = 0
    for number in range(1, FINISHING_RUNS + 1):
        if not queue.wait_all_visible(VISIBILITY + 10):
            raise AssertionError("messages stayed in flight long after their watcher ended")
        name = "finishing run" if number == 1 else f"finishing run {number}"
        slow = slow_start and number == 1
        with (
            FaultProxy(trial.lab.url, before_forward=_SlowStart() if slow else None) as s3,
            FaultProxy(trial.lab.url, record_log=True, latency=SQS_LATENCY if slow else 0.0) as sqs,
            queue.timeline() as changes,
        ):
            spec = _watch_spec(
                trial,
                local,
                s3.url,
                queue,
                workers=workers,
                once=True,
                verbose=True,
                sqs_url=sqs.url,
            )
            runs.append(run(spec, name, trial.sandbox))
            failed = sum(1 for entry in sqs.log() if entry.status >= 500)
        errors += failed
        found += check(world.observe([runs[-1]]))
        visible, in_flight = queue.counts()
        left = _messages(runs[-1])["finishing run: messages left"]
        unexplained = in_flight - left
        if 0 < unexplained <= MAX_MESSAGES * failed and not visible:
            out_of_sight += unexplained
        elif visible or unexplained > 0:
            queue.wait_all_visible(VISIBILITY + 5)
            found.append(
                Violation(
                    Kind.NOT_DRAINED,
                    name,
                    f"--once ended with {visible} visible and {in_flight} in-flight "
                    f"message(s) (it let {left} go to come back; SQS answers 5xx: {failed}): "
                    f"{queue.peek()}; the queue while it ran (s, visible, in flight): "
                    + ", ".join(f"{t:.1f} {v} {f}" for t, v, f in changes),
                )
            )
        if not (visible or in_flight):
            break
    return _Finished(tuple(runs), tuple(found), out_of_sight, errors)


@dataclass(frozen=True)
class _Killed:
    result: RunResult
    switch: KillSwitch
    fallback: bool  # the plan's moment never came: killed by the clock after the arrivals
    at: float  # monotonic, when it was found dead
    uploaded: int  # versions uploaded by then
    producer: threading.Thread  # still uploading, maybe


def _killed_watcher(
    world: _World, queue: Queue, plan: Plan, kill: KillPlan, *, workers: int, verbose: bool
) -> _Killed:
    """The watcher through the proxy while the producer uploads, killed by the plan (or, if the
    plan's moment never comes, by the clock once the arrivals are over)."""
    trial, local, producer = world.trial, world.local, world.producer
    with FaultProxy(trial.lab.url, record_log=True) as proxy:
        switch = KillSwitch(kill, proxy, gate="GetObject")
        proxy.before_forward = switch.on_request
        spec = _watch_spec(trial, local, proxy.url, queue, workers=workers, verbose=verbose)
        running = Running(spec, "killed watcher", trial.sandbox)
        switch.arm(running)
        thread = threading.Thread(target=producer.play, args=(plan.later,), daemon=True)
        thread.start()
        deadline = time.monotonic() + STARTUP + sum(u.pause for u in plan.later) + 3.0
        fallback = False
        while running.process.poll() is None:
            if time.monotonic() > deadline and not thread.is_alive():
                fallback = running.kill()
                break
            time.sleep(0.02)
        result = running.wait()
        at = time.monotonic()
        with world.lock:
            uploaded = len(producer.before) + len(producer.written)
        switch.disarm()
    return _Killed(result, switch, fallback, at, uploaded, thread)
