"""The `watch` scenario (issue 20): `s3drain watch` draining the objects S3's events name.

On one server, three runs one after the other, each on an emptied prefix and a new queue:

1. **trickle** (latency): one `s3drain watch` runs with its defaults (only the bucket, prefix,
   endpoints and queue are given) while the bench uploads ``Trickle.rate`` objects a second
   for ``Trickle.seconds``. For each object: the seconds from the end of its PUT to its file in
   place under raw/, which the bench looks for every 20 ms (only the files uploaded and not
   yet seen). One warm-up object has to arrive before the trickle starts, so the watcher's
   start-up is in no figure. Then SIGTERM stops the watcher, which exits 130 once its objects
   in flight are finished.
2. **events** (throughput): the scenario's objects are uploaded with their events queued, then
   `s3drain watch --once --reconcile 0` drains them and exits once the queue stays empty.
3. **listing**: the same objects drained by `s3drain drain`, the bench's s3drain contender, on
   the same server.

Where the events come from: on moto, S3 itself sends them to moto's SQS (a notification
configuration on the bucket, S3's s3:TestEvent purged). On SeaweedFS, which sends none, the
bench sends the body S3 would have sent (``s3_event_body``, with the ETag and size of the PUT's
answer) to a moto of its own that serves SQS only, right after each PUT; the end of the PUT is
taken before that send, so the send is in the latency as S3's own delay would be.

Counting: S3 requests as for any run (moto's log, SeaweedFS's metrics); SQS requests from the
moto log (benchmarks/moto_server.py writes each SQS request's action and whether the client was
s3drain's), the watcher's only. Each run is checked as every run is (every file with its bytes,
nothing else, the prefix empty), and the queue must be empty after it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import itertools
import json
import os
import shutil
import signal
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote_plus

import botocore.session
from botocore.config import Config

from benchmarks import dataset
from benchmarks.child import ChildResult, LauncherError, run_child
from benchmarks.contenders import S3DRAIN, RunContext
from benchmarks.dataset import ObjectSpec
from benchmarks.results import (
    FAILED,
    OK,
    SKIPPED,
    TIMEOUT,
    WRONG,
    Row,
    WatchFigures,
    request_counts,
)
from benchmarks.s3 import S3Client, Target, ensure_bucket, make_client
from benchmarks.scenarios import Scenario, Trickle
from benchmarks.servers import OwnMoto

if TYPE_CHECKING:
    from benchmarks.bench import ServerBench

TRICKLE = "s3drain watch (trickle)"
EVENTS = "s3drain watch --once"
POLL_SECONDS = 0.02  # how often the trickle looks for the files it is waiting for
WARMUP_TIMEOUT = 60.0
ARRIVAL_TIMEOUT = 30.0  # after the last upload, for the files still missing
STOP_TIMEOUT = 60.0  # from SIGTERM to the watcher's exit (it promises 30 s)
STOPPED = 130  # the watcher's exit code after SIGTERM, its objects in flight finished
FILL_THREADS = 16
# What the bench's uploads are in the counts of a trickle (the watcher never PUTs): left out.
_UPLOADS = ("PutObject", "PUT")
_EVENT_NAME = "ObjectCreated:Put"


# --- the event S3 would send --------------------------------------------------------------


def s3_event_body(
    bucket: str, key: str, *, size: int, etag: str, sequencer: str, region: str, when: float
) -> str:
    """The body of S3's own notification to SQS for a PUT of ``key``: the same fields, the key
    form-encoded as S3 encodes it (a space is ``+``)."""
    time_text = datetime.datetime.fromtimestamp(when, datetime.UTC).isoformat(
        timespec="milliseconds"
    )
    record = {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": region,
        "eventTime": time_text.replace("+00:00", "Z"),
        "eventName": _EVENT_NAME,
        "userIdentity": {"principalId": "AWS:S3DRAINBENCH"},
        "requestParameters": {"sourceIPAddress": "127.0.0.1"},
        "responseElements": {"x-amz-request-id": sequencer, "x-amz-id-2": sequencer},
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": "s3drain-bench",
            "bucket": {
                "name": bucket,
                "ownerIdentity": {"principalId": "S3DRAINBENCH"},
                "arn": f"arn:aws:s3:::{bucket}",
            },
            "object": {
                "key": quote_plus(key),
                "size": size,
                "eTag": etag.strip('"'),
                "sequencer": sequencer,
            },
        },
    }
    return json.dumps({"Records": [record]})


# --- SQS ------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SqsSide:
    """Where the watcher's queue is, who sends its events, and who counts its requests."""

    server: OwnMoto
    notifies: bool  # S3 on the same server sends the events; otherwise the bench does
    separate: bool  # a server of its own, whose CPU is apart from the S3 server's

    @property
    def url(self) -> str:
        return self.server.target.endpoint_url


@contextlib.contextmanager
def sqs_side(bench: ServerBench) -> Iterator[SqsSide]:
    """moto's own SQS where the S3 server is moto, else a moto that serves SQS only."""
    backend = bench.backend
    if isinstance(backend, OwnMoto):
        yield SqsSide(backend, notifies=True, separate=False)
        return
    moto = OwnMoto(
        bench.config.workdir, bench.config.bucket, aws_like=False, log_name="moto-sqs.log"
    ).start()
    try:
        yield SqsSide(moto, notifies=False, separate=True)
    finally:
        moto.close()


def sqs_client(url: str, target: Target) -> Any:
    config = Config(
        max_pool_connections=FILL_THREADS,
        retries={"mode": "standard", "max_attempts": 5},
        proxies={},
    )
    return botocore.session.get_session().create_client(
        "sqs",
        endpoint_url=url,
        region_name=target.region,
        aws_access_key_id=target.access_key_id,
        aws_secret_access_key=target.secret_access_key,
        config=config,
    )


def depth(client: Any, queue_url: str) -> int:
    """Messages in the queue, visible or not."""
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    found = client.get_queue_attributes(QueueUrl=queue_url, AttributeNames=names)["Attributes"]
    return sum(int(found.get(name, 0)) for name in names)


# --- the watcher as a child process -----------------------------------------------------------


def watch_command(exe: str, ctx: RunContext, queue_url: str, sqs_url: str, *more: str) -> list[str]:
    return [
        exe, "-m", "s3drain", "watch",
        "--bucket", ctx.target.bucket,
        "--prefix", ctx.prefix,
        "--local-base-path", str(ctx.base),
        "--endpoint-url", ctx.url,
        "--addressing-style", "path",
        "--region", ctx.target.region,
        "--queue-url", queue_url,
        "--sqs-endpoint-url", sqs_url,
        "-q", "--json",
        *more,
    ]  # fmt: skip


class _Running:
    """A watcher under the launcher, in a thread of its own, until SIGTERM stops it."""

    def __init__(self, argv: list[str], env: dict[str, str], logs: Path, timeout: float) -> None:
        self._launcher: int | None = None
        self.result: ChildResult | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._run, args=(argv, env, logs, timeout), name="bench-watcher", daemon=True
        )
        self._thread.start()

    def _run(self, argv: list[str], env: dict[str, str], logs: Path, timeout: float) -> None:
        try:
            self.result = run_child(
                argv,
                env=env,
                cwd=logs,
                stdout=logs / "stdout.txt",
                stderr=logs / "stderr.txt",
                timeout=timeout,
                on_start=self._started,
            )
        except BaseException as exc:  # handed to the thread that stops it
            self.error = exc

    def _started(self, pid: int) -> None:
        self._launcher = pid

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self) -> ChildResult:
        """SIGTERM to the watcher itself: the launcher waits for it and writes its figures."""
        watcher = _child_of(self._launcher) if self._launcher is not None else None
        if watcher is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(watcher, signal.SIGTERM)
        self._thread.join(STOP_TIMEOUT)
        if self._thread.is_alive():
            self.kill()
            self._thread.join()
            raise LauncherError(f"the watcher did not stop within {STOP_TIMEOUT:.0f} s of SIGTERM")
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result

    def kill(self) -> None:
        """The launcher's whole process group (run_child starts it in a session of its own)."""
        if self._launcher is not None and self._thread.is_alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._launcher, signal.SIGKILL)


def _child_of(pid: int, wait: float = 5.0) -> int | None:
    """The launcher's one child (it forks at once; give it a moment)."""
    deadline = time.monotonic() + wait
    while True:
        try:
            text = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            return None
        if text:
            return int(text[0])
        if time.monotonic() > deadline:
            return None
        time.sleep(0.01)


# --- the scenario ---------------------------------------------------------------------------


def watch_rows(bench: ServerBench, scenario: Scenario) -> list[Row]:
    """The three runs of the scenario on ``bench``'s server (benchmarks/README.md)."""
    if scenario.trickle is None:
        raise ValueError(f"{scenario.name} is not a watch scenario")
    if bench.located.get(S3DRAIN.name) is None:
        note = "runs s3drain only, and --contenders leaves it out"
        return [bench.row(scenario, name, SKIPPED, note=note) for name in (TRICKLE, EVENTS)]
    with sqs_side(bench) as sqs:
        runs = WatchRuns(bench, scenario, scenario.trickle, sqs)
        try:
            return runs.all()
        finally:
            runs.close()


class WatchRuns:
    def __init__(self, bench: ServerBench, scenario: Scenario, trickle: Trickle, sqs: SqsSide):
        self.bench = bench
        self.scenario = scenario
        self.trickle_shape = trickle
        self.sqs = sqs
        self.prefix = f"bench/{scenario.name}/"
        self.target = bench.backend.target
        self.sqs_client = sqs_client(sqs.url, self.target)
        self.exe = bench.located[S3DRAIN.name] or ""
        self.timeout = bench.config.timeout
        self._queues = itertools.count(1)
        self._sequencer = itertools.count(1)

    def close(self) -> None:
        self.sqs_client.close()

    def log(self, message: str) -> None:
        self.bench.log(self.scenario, message)

    def all(self) -> list[Row]:
        data_dir = self.bench.config.workdir / "data" / self.scenario.name
        self.log(f"making {self.scenario.title}")
        objects = dataset.build(self.scenario, self.prefix, data_dir)
        rows = [self.trickle(data_dir), self.events(objects)]
        self.log(f"{S3DRAIN.name}: the same objects, listed")
        listing = self.bench.trial(self.scenario, S3DRAIN, self.exe, self.prefix, objects)
        self.log(f"{S3DRAIN.name}: {listing.status} {_speed(listing)}")
        shutil.rmtree(data_dir, ignore_errors=True)
        return [*rows, listing]

    # --- each run's set-up

    def fresh_queue(self, run: str) -> str:
        """An emptied prefix, and a new empty queue for its events (on moto, where S3 sends
        them itself, the bucket's notification configuration names it)."""
        self.bench.backend.fresh(self.prefix, restart=False)  # moto: a reset, queues and all
        s3 = make_client(self.target)
        try:
            ensure_bucket(s3, self.target.bucket)
            name = f"s3drain-bench-{run}-{next(self._queues)}"
            url: str = self.sqs_client.create_queue(QueueName=name)["QueueUrl"]
            if self.sqs.notifies:
                arn = self.sqs_client.get_queue_attributes(
                    QueueUrl=url, AttributeNames=["QueueArn"]
                )["Attributes"]["QueueArn"]
                rule = {"Name": "prefix", "Value": self.prefix}
                configuration = {
                    "QueueArn": arn,
                    "Events": ["s3:ObjectCreated:*"],
                    "Filter": {"Key": {"FilterRules": [rule]}},
                }
                s3.put_bucket_notification_configuration(
                    Bucket=self.target.bucket,
                    NotificationConfiguration={"QueueConfigurations": [configuration]},
                )
                # S3's s3:TestEvent for the new configuration: not one of the run's messages.
                self.sqs_client.purge_queue(QueueUrl=url)
        finally:
            s3.close()
        return url

    def upload(self, s3: S3Client, spec: ObjectSpec, queue_url: str) -> float:
        """PUT ``spec``, then (where S3 does not) send its event: when the PUT was answered,
        by ``time.perf_counter``."""
        with spec.open_body() as body:
            answer = s3.put_object(Bucket=self.target.bucket, Key=spec.key, Body=body)
        done, when = time.perf_counter(), time.time()
        if not self.sqs.notifies:
            body_text = s3_event_body(
                self.target.bucket,
                spec.key,
                size=spec.size,
                etag=str(answer["ETag"]),
                sequencer=f"{next(self._sequencer):016X}",
                region=self.target.region,
                when=when,
            )
            self.sqs_client.send_message(QueueUrl=queue_url, MessageBody=body_text)
        return done

    def trial_dir(self, run: str) -> tuple[Path, RunContext]:
        runs = self.bench.dest_root / "runs"
        runs.mkdir(parents=True, exist_ok=True)
        trial_dir = Path(tempfile.mkdtemp(prefix=f"{self.scenario.name}-{run}-", dir=runs))
        base = trial_dir / "base"
        ctx = RunContext(self.target.endpoint_url, self.target, self.prefix, base, base / "raw")
        ctx.dest.mkdir(parents=True)
        return trial_dir, ctx

    def marks(self) -> tuple[object | None, object | None, float | None, float | None]:
        sqs_cpu = self.sqs.server.cpu_seconds() if self.sqs.separate else None
        return (
            self.bench.backend.count_mark(),
            self.sqs.server.count_mark(),
            self.bench.backend.cpu_seconds(),
            sqs_cpu,
        )

    def counts(
        self, marks: tuple[object | None, object | None, float | None, float | None]
    ) -> tuple[Counter[str] | None, Counter[str], float | None, float | None]:
        s3_mark, sqs_mark, cpu, sqs_cpu = marks
        s3 = self.bench.backend.counts_since(s3_mark) if s3_mark is not None else None
        sqs = self.sqs.server.sqs_counts_since(sqs_mark)
        after = self.bench.backend.cpu_seconds()
        sqs_after = self.sqs.server.cpu_seconds() if self.sqs.separate else None
        return (
            s3,
            sqs,
            None if cpu is None or after is None else after - cpu,
            None if sqs_cpu is None or sqs_after is None else sqs_after - sqs_cpu,
        )

    def judge(
        self,
        ctx: RunContext,
        objects: Sequence[ObjectSpec],
        result: ChildResult,
        logs: Path,
        queue_url: str,
    ) -> tuple[str, str]:
        status, note = self.bench.judge(ctx, objects, result, logs)
        if status == OK and (left := depth(self.sqs_client, queue_url)):
            return WRONG, f"{left} message(s) left in the queue (logs in {logs})"
        return status, note

    # --- 1. the trickle

    def trickle(self, data_dir: Path) -> Row:
        shape = self.trickle_shape
        # One more object than the trickle: the warm-up, which proves the watcher is up.
        scenario = dataclasses.replace(self.scenario, count=shape.count + 1)
        objects = dataset.build(scenario, self.prefix, data_dir / "trickle")
        self.log(f"{TRICKLE}: {shape.count} uploads at {shape.rate:g}/s")
        queue_url = self.fresh_queue("trickle")
        trial_dir, ctx = self.trial_dir("trickle")
        row = self.bench.row(scenario, TRICKLE, FAILED)
        try:
            row = self.run_trickle(scenario, objects, queue_url, trial_dir, ctx)
        except LauncherError as exc:
            row = self.bench.row(scenario, TRICKLE, FAILED, note=f"{exc} (logs in {trial_dir})")
        finally:
            _clean(trial_dir, keep_logs=row.status != OK)
        latency = _latency_text(row.watch) if row.watch else row.note
        self.log(f"{TRICKLE}: {row.status} {latency}")
        return row

    def run_trickle(
        self,
        scenario: Scenario,
        objects: Sequence[ObjectSpec],
        queue_url: str,
        trial_dir: Path,
        ctx: RunContext,
    ) -> Row:
        shape = self.trickle_shape
        warmup, uploads = objects[0], objects[1:]
        argv = watch_command(self.exe, ctx, queue_url, self.sqs.url)
        marks = self.marks()
        running = _Running(argv, self.bench.base_env(self.target), trial_dir, self.timeout)
        try:
            s3 = make_client(self.target, pool=4)
            try:
                self.upload(s3, warmup, queue_url)
                if not _arrives(ctx.dest / warmup.rel, WARMUP_TIMEOUT, running):
                    raise LauncherError(
                        f"the warm-up object was not drained within {WARMUP_TIMEOUT:.0f} s"
                    )
                latencies, missing = self.uploads(s3, uploads, queue_url, ctx.dest, running)
            finally:
                s3.close()
            result = running.stop()
        finally:
            running.kill()
        s3_counts, sqs_counts, _, _ = self.counts(marks)
        if result.exit_code == STOPPED:
            result = dataclasses.replace(result, exit_code=0)
        # The files and the prefix as for any run. The queue is not held to be empty: what a
        # stop does with the messages of objects in flight is the watcher's to say, and the
        # table shows what it left.
        status, note = self.bench.judge(ctx, objects, result, trial_dir)
        if status == OK and missing:
            status = WRONG
            note = f"{missing} file(s) not in place {ARRIVAL_TIMEOUT:.0f} s after the last upload"
        left = depth(self.sqs_client, queue_url)
        summary = _summary(trial_dir / "stdout.txt")
        notes = [
            note,
            f"{shape.count} uploads at {shape.rate:g}/s",
            f"the watcher ran {result.wall_seconds:.1f} s",
            f"{left} message(s) left in the queue after its stop" if left else "",
        ]
        return self.bench.row(
            scenario,
            TRICKLE,
            status,
            cpu_seconds=result.cpu_seconds,
            peak_rss_bytes=result.peak_rss_bytes,
            peak_rss_sum_bytes=result.peak_rss_sum_bytes,
            processes=result.processes,
            requests=request_counts(_without_uploads(s3_counts)),
            note="; ".join(filter(None, notes)),
            watch=WatchFigures(
                sqs_requests=request_counts(sqs_counts),
                sqs_on_s3_server=not self.sqs.separate,
                latencies=tuple(latencies),
                missing=missing,
                own_p50=summary.get("p50"),
                own_p95=summary.get("p95"),
                messages=summary.get("messages"),
                left_in_queue=left,
            ),
        )

    def uploads(
        self,
        s3: S3Client,
        uploads: Sequence[ObjectSpec],
        queue_url: str,
        dest: Path,
        running: _Running,
    ) -> tuple[list[float], int]:
        """Upload at the trickle's rate while looking for each uploaded file every 20 ms:
        (seconds from each PUT's end to its file, how many never arrived)."""
        rate = self.trickle_shape.rate
        lock = threading.Lock()
        pending: dict[int, float] = {}  # uploaded, not yet seen: index -> end of its PUT
        failed: list[BaseException] = []

        def upload_all() -> None:
            start = time.perf_counter()
            for index, spec in enumerate(uploads):
                wait = start + index / rate - time.perf_counter()
                if wait > 0:
                    time.sleep(wait)
                try:
                    done = self.upload(s3, spec, queue_url)
                except Exception as exc:  # the run fails with it, below
                    failed.append(exc)
                    return
                with lock:
                    pending[index] = done

        uploader = threading.Thread(target=upload_all, name="bench-trickle", daemon=True)
        uploader.start()
        latencies: list[float] = []
        deadline: float | None = None
        while True:
            with lock:
                waiting = list(pending.items())
            for index, done in waiting:
                if (dest / uploads[index].rel).exists():
                    latencies.append(time.perf_counter() - done)
                    with lock:
                        del pending[index]
            if not uploader.is_alive():
                if failed:
                    raise LauncherError(f"an upload of the trickle failed: {failed[0]}")
                deadline = deadline or time.perf_counter() + ARRIVAL_TIMEOUT
                if not pending or time.perf_counter() > deadline:
                    break
            if not running.alive:
                break  # the watcher is gone: what did not arrive is missing
            time.sleep(POLL_SECONDS)
        uploader.join()
        return latencies, len(uploads) - len(latencies)

    # --- 2. the burst of events

    def events(self, objects: Sequence[ObjectSpec]) -> Row:
        self.log(f"{EVENTS}: {len(objects):,} objects and their events")
        queue_url = self.fresh_queue("events")
        s3 = make_client(self.target)
        try:
            with ThreadPoolExecutor(FILL_THREADS, thread_name_prefix="bench-fill") as pool:
                list(pool.map(lambda spec: self.upload(s3, spec, queue_url), objects))
        finally:
            s3.close()
        queued = depth(self.sqs_client, queue_url)
        if queued != len(objects):
            note = f"the queue holds {queued} messages for {len(objects)} objects uploaded"
            return self.bench.row(self.scenario, EVENTS, FAILED, note=note)
        trial_dir, ctx = self.trial_dir("events")
        row = self.bench.row(self.scenario, EVENTS, FAILED)
        try:
            row = self.run_events(objects, queue_url, trial_dir, ctx)
        except LauncherError as exc:
            row = self.bench.row(self.scenario, EVENTS, FAILED, note=f"{exc} (logs in {trial_dir})")
        finally:
            _clean(trial_dir, keep_logs=row.status != OK)
        self.log(f"{EVENTS}: {row.status} {_speed(row)}")
        return row

    def run_events(
        self, objects: Sequence[ObjectSpec], queue_url: str, trial_dir: Path, ctx: RunContext
    ) -> Row:
        argv = watch_command(self.exe, ctx, queue_url, self.sqs.url, "--once", "--reconcile", "0")
        marks = self.marks()
        started = time.time()
        result = run_child(
            argv,
            env=self.bench.base_env(self.target),
            cwd=trial_dir,
            stdout=trial_dir / "stdout.txt",
            stderr=trial_dir / "stderr.txt",
            timeout=self.timeout,
        )
        s3_counts, sqs_counts, server_cpu, sqs_cpu = self.counts(marks)
        last_file = _last_mtime(ctx.dest)
        if result.timed_out:
            status, note = TIMEOUT, f"killed after {self.timeout:.0f} s (logs in {trial_dir})"
        else:
            status, note = self.judge(ctx, objects, result, trial_dir, queue_url)
        summary = _summary(trial_dir / "stdout.txt")
        notes = [note]
        if sqs_cpu is not None and result.wall_seconds:
            share = 100 * sqs_cpu / result.wall_seconds
            notes.append(f"SQS's moto {sqs_cpu:.2f} CPU-s ({share:.0f} % of a core)")
        return self.bench.row(
            self.scenario,
            EVENTS,
            status,
            seconds=result.wall_seconds,
            cpu_seconds=result.cpu_seconds,
            peak_rss_bytes=result.peak_rss_bytes,
            peak_rss_sum_bytes=result.peak_rss_sum_bytes,
            processes=result.processes,
            requests=request_counts(s3_counts),
            note="; ".join(filter(None, notes)),
            server_cpu_seconds=server_cpu,
            watch=WatchFigures(
                sqs_requests=request_counts(sqs_counts),
                sqs_on_s3_server=not self.sqs.separate,
                sqs_server_cpu_seconds=sqs_cpu,
                last_file_seconds=None if last_file is None else last_file - started,
                own_p50=summary.get("p50"),
                own_p95=summary.get("p95"),
                messages=summary.get("messages"),
            ),
        )


# --- helpers --------------------------------------------------------------------------------


def _arrives(path: Path, timeout: float, running: _Running) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and running.alive:
        if path.exists():
            return True
        time.sleep(POLL_SECONDS)
    return path.exists()


def _last_mtime(root: Path) -> float | None:
    """When the newest file under ``root`` was last written (epoch seconds)."""
    newest = None
    for folder, _, names in os.walk(root):
        for name in names:
            mtime = (Path(folder) / name).stat().st_mtime
            newest = mtime if newest is None else max(newest, mtime)
    return newest


def _summary(stdout: Path) -> dict[str, Any]:
    """The watcher's own figures from its --json summary; {} when it wrote none."""
    try:
        document = json.loads(stdout.read_text())
        watch = document["watch"]
        return {
            "p50": watch["latency_seconds"]["p50"],
            "p95": watch["latency_seconds"]["p95"],
            "messages": watch["messages"]["received"],
        }
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def _without_uploads(counts: Counter[str] | None) -> Counter[str] | None:
    if counts is None:
        return None
    return Counter({op: n for op, n in counts.items() if op not in _UPLOADS})


def _speed(row: Row) -> str:
    return f"{row.objects_per_second:,.1f} obj/s" if row.objects_per_second else row.note


def _latency_text(figures: WatchFigures) -> str:
    values = [figures.latency(q) for q in (0.5, 0.95, 1.0)]
    if any(value is None for value in values):
        return "no latency measured"
    p50, p95, worst = (f"{value:.2f}" for value in values if value is not None)
    return f"upload to file p50 {p50} s, p95 {p95} s, max {worst} s"


def _clean(trial_dir: Path, keep_logs: bool) -> None:
    if keep_logs:
        shutil.rmtree(trial_dir / "base", ignore_errors=True)
    else:
        shutil.rmtree(trial_dir, ignore_errors=True)
