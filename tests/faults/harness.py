"""The moving parts of a trial: a moto server reached directly (to fill and inspect buckets), the
real CLI as a subprocess pointed at a FaultProxy, a sandbox folder whose every new path is
accounted for, a kill switch, and the gathering of an `Observation` for the invariant."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import signal
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.faults.corpus import PREFIX, Blob
from tests.faults.invariant import (
    AuditLine,
    FileSeen,
    Observation,
    Site,
    Stored,
    Text,
    Version,
)
from tests.support.proxy import FaultProxy, RequestInfo
from tests.support.server import s3_client

ROOT = Path(__file__).resolve().parents[2]
LAUNCHER = Path(__file__).with_name("launch.py")
RUN_TIMEOUT = 180.0  # a run that takes this long is stuck: that is a finding, not a wait
_FILL_THREADS = 8


# -- S3, directly ----------------------------------------------------------------------------


class Lab:
    """The moto server behind the proxy, reached without it: the test's own view of S3.
    `name` says which kind: `moto` (honours If-Match on DeleteObject only, so s3drain picks
    single `if-match` deletes) or `moto-aws-like` (also the per-key ETag of DeleteObjects, so
    s3drain picks `etag-batch`)."""

    def __init__(self, url: str, name: str = "moto") -> None:
        self.url = url
        self.name = name
        self.client: Any = s3_client(url, retries={"total_max_attempts": 3})
        self._buckets = 0
        self._lock = threading.Lock()

    def new_bucket(self, label: str) -> str:
        with self._lock:
            self._buckets += 1
            number = self._buckets
        name = f"chaos-{number}-{secrets.token_hex(3)}-{label}"[:63].rstrip("-")
        self.client.create_bucket(Bucket=name)
        return name

    def put(self, bucket: str, item: Blob) -> None:
        self.client.put_object(Bucket=bucket, Key=item.key, Body=item.data)

    def fill(self, bucket: str, items: Iterable[Blob]) -> None:
        with ThreadPoolExecutor(_FILL_THREADS) as pool:
            list(pool.map(lambda item: self.put(bucket, item), items))

    def holds(self, bucket: str, key: str) -> bool:
        """Whether the bucket lists exactly this key (moto cannot hold every key over HTTP)."""
        page = self.client.list_objects_v2(Bucket=bucket, Prefix=key)
        return any(entry["Key"] == key for entry in page.get("Contents", []))

    def stored(self, bucket: str) -> tuple[Stored, ...]:
        found: list[Stored] = []
        kwargs: dict[str, Any] = {"Bucket": bucket}
        while True:
            page = self.client.list_objects_v2(**kwargs)
            found += [
                Stored(e["Key"], str(e["ETag"]).strip('"'), int(e["Size"]))
                for e in page.get("Contents", [])
            ]
            token = page.get("NextContinuationToken")
            if not token:
                return tuple(found)
            kwargs["ContinuationToken"] = token

    def empty(self, bucket: str) -> None:
        """Free moto's memory once a trial is judged."""
        for stored in self.stored(bucket):
            self.client.delete_object(Bucket=bucket, Key=stored.key)
        self.client.delete_bucket(Bucket=bucket)


# -- the sandbox -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Local:
    """One local base path, and the files the test itself placed under it. `backing` is the
    same folder seen past a mount (the xattr-less FUSE mount), where there is one."""

    base: Path
    placed: frozenset[tuple[str, str]] = frozenset()  # (path, SHA-256)
    backing: Path | None = None

    @property
    def raw(self) -> Path:
        return self.base / "raw"

    @property
    def processed(self) -> Path:
        return self.base / "processed"

    @property
    def state(self) -> Path:
        return self.base / ".s3drain"

    @property
    def audit_log(self) -> Path:
        return self.state / "audit.jsonl"

    @property
    def ledger(self) -> Path:
        """s3drain's ledger, which is also its delete journal."""
        return self.state / "state.db"

    def allows(self, path: str) -> bool:
        """May a run create this path? Only the base and its three folders."""
        if path == str(self.base):
            return True
        return any(
            path == str(folder) or path.startswith(f"{folder}/")
            for folder in (self.raw, self.processed, self.state)
        )

    def place(self, rel_to_base: str, data: bytes) -> Local:
        path = self.base / rel_to_base
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        placed = self.placed | {(str(path), hashlib.sha256(data).hexdigest())}
        return Local(self.base, placed, self.backing)


@dataclass(frozen=True)
class Sandbox:
    """Everything a run may touch lives under `root`, which is scanned before and after; the
    test's own files (run output) live in `logs`, beside it."""

    root: Path
    logs: Path

    @classmethod
    def create(cls, parent: Path) -> Sandbox:
        sandbox = cls(parent / "sandbox", parent / "logs")
        for folder in (sandbox.cwd, sandbox.outside, sandbox.logs):
            folder.mkdir(parents=True, exist_ok=True)
        return sandbox

    @property
    def cwd(self) -> Path:
        """The runs' working directory: empty, so no config/.env is picked up by accident."""
        return self.root / "cwd"

    @property
    def outside(self) -> Path:
        """A folder outside every base path (a hostile symlink points here)."""
        return self.root / "outside"

    def local(self, name: str = "base", backing: Path | None = None) -> Local:
        return Local(self.root / name, backing=backing)

    def snapshot(self) -> frozenset[str]:
        return frozenset(_walk_all(self.root))


def _walk_all(root: Path) -> Iterator[str]:
    for folder, dirs, files in os.walk(root):
        for name in (*dirs, *files):
            yield os.path.join(folder, name)


def created_outside(
    before: frozenset[str], after: frozenset[str], locals_: Sequence[Local], watch: Iterable[str]
) -> tuple[str, ...]:
    """New paths in the sandbox that no base path allows, and watched paths outside it (where
    a hostile key would land if joined naively) that now exist."""
    new = sorted(p for p in after - before if not any(lo.allows(p) for lo in locals_))
    return (*new, *(p for p in watch if os.path.lexists(p)))


# -- running the CLI -------------------------------------------------------------------------


@dataclass(frozen=True)
class Credentials:
    """Fresh per trial, so a leak is found by a plain substring search."""

    key_id: str
    secret: str
    token: str

    @classmethod
    def fresh(cls) -> Credentials:
        return cls(
            key_id="AKIACHAOS" + secrets.token_hex(6).upper(),
            secret="chaos-secret-" + secrets.token_urlsafe(24),
            token="chaos-token-" + secrets.token_urlsafe(32),
        )

    def secrets(self) -> tuple[str, ...]:
        """What must never be printed: all three, the key ID included (strictest reading)."""
        return (self.key_id, self.secret, self.token)


@dataclass(frozen=True)
class RunSpec:
    bucket: str
    local: Local
    endpoint: str
    credentials: Credentials
    workers: int = 4
    delete_mode: str | None = None  # None: s3drain's default (auto: what the probe found)
    verbose: bool = False
    read_timeout: float | None = None
    max_attempts: int | None = None
    fsize_limit: int | None = None  # RLIMIT_FSIZE in bytes: writes past it fail with EFBIG
    prefix: str = PREFIX
    # `watch` for the watcher: it takes every drain option, and its own in `more_args`.
    subcommand: str = "drain"
    more_args: tuple[str, ...] = ()
    more_env: tuple[tuple[str, str], ...] = ()  # AWS_ENDPOINT_URL_SQS for the watcher

    def argv(self) -> list[str]:
        args = [
            self.subcommand,
            "--bucket",
            self.bucket,
            "--prefix",
            self.prefix,
            "--local-base-path",
            str(self.local.base),
            "--workers",
            str(self.workers),
            "--multipart-threshold",
            "1MiB",
            "--part-size",
            "1MiB",
        ]
        if self.delete_mode is not None:
            args += ["--delete-mode", self.delete_mode]
        if self.verbose:
            args.append("-v")
        if self.read_timeout is not None:
            args += ["--read-timeout", str(self.read_timeout)]
        if self.max_attempts is not None:
            args += ["--max-attempts", str(self.max_attempts)]
        return [*args, *self.more_args]

    def command(self) -> list[str]:
        if self.fsize_limit is None:
            return [sys.executable, "-m", "s3drain", *self.argv()]
        return [sys.executable, str(LAUNCHER), "--fsize", str(self.fsize_limit), "--", *self.argv()]

    def env(self) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("AWS_", "S3_", "S3DRAIN_")) and k != "PYTHONPATH"
        }
        env.update(
            AWS_ACCESS_KEY_ID=self.credentials.key_id,
            AWS_SECRET_ACCESS_KEY=self.credentials.secret,
            AWS_SESSION_TOKEN=self.credentials.token,
            AWS_REGION="us-east-1",
            S3_ENDPOINT_URL=self.endpoint,
            S3_ADDRESSING_STYLE="path",
            NO_PROXY="*",
        )
        env.update(self.more_env)
        return env


@dataclass(frozen=True)
class RunResult:
    name: str
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def killed(self) -> bool:
        return self.returncode == -signal.SIGKILL

    def texts(self) -> tuple[Text, ...]:
        return (Text(f"{self.name} stdout", self.stdout), Text(f"{self.name} stderr", self.stderr))

    @property
    def crashed(self) -> bool:
        """s3drain hit a bug (a traceback), as opposed to ending with an exit code it chose."""
        both = self.stdout + self.stderr
        return not self.killed and ("Traceback" in both or "this is a bug in s3drain" in both)


class Running:
    """A started run; output goes to files (a pipe nobody reads would block the child)."""

    def __init__(self, spec: RunSpec, name: str, sandbox: Sandbox) -> None:
        self.name = name
        self._out = sandbox.logs / f"{name}.out"
        self._err = sandbox.logs / f"{name}.err"
        self._started = time.monotonic()
        with self._out.open("wb") as out, self._err.open("wb") as err:
            self.process = subprocess.Popen(
                spec.command(),
                env=spec.env(),
                cwd=sandbox.cwd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
            )
        self._kill_lock = threading.Lock()
        self._kill_sent = False

    def kill(self) -> bool:
        """SIGKILL, once, if still running; True if this call sent it."""
        with self._kill_lock:
            if self._kill_sent or self.process.poll() is not None:
                return False
            self._kill_sent = True
            self.process.send_signal(signal.SIGKILL)
            return True

    def wait(self, timeout: float = RUN_TIMEOUT) -> RunResult:
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            self.process.wait()
            raise AssertionError(f"{self.name} did not finish within {timeout:.0f} s") from None
        return RunResult(
            name=self.name,
            returncode=code,
            stdout=self._out.read_text(errors="replace"),
            stderr=self._err.read_text(errors="replace"),
            seconds=time.monotonic() - self._started,
        )


def run(spec: RunSpec, name: str, sandbox: Sandbox) -> RunResult:
    return Running(spec, name, sandbox).wait()


# -- the kill switch -------------------------------------------------------------------------


@dataclass(frozen=True)
class KillPlan:
    """When to SIGKILL: `delay` seconds after start; or - with `op` - `delay` seconds after the
    proxy receives the `nth` request of that operation (so it lands mid-request or mid-body);
    or - with `stall` - `delay` seconds after the server has executed the first `op` request,
    whose answer the proxy withholds (the client never learns the delete happened).

    Delete requests are counted, and stalled, only once the listing has begun (for a watcher,
    which lists nothing with --reconcile 0, once its first GetObject is sent: the switch's
    `gate`): the deletes before it are the server probe's, of random missing keys (a kill by
    the clock still lands among them now and then)."""

    delay: float
    op: str | None = None
    nth: int = 1
    stall: bool = False

    def __str__(self) -> str:
        if self.op is None:
            return f"kill at {self.delay * 1000:.0f} ms"
        if self.stall:
            return f"kill {self.delay * 1000:.0f} ms after {self.op} executed, answer withheld"
        return f"kill {self.delay * 1000:.0f} ms after {self.op} #{self.nth}"


STALL_FOREVER = 600.0  # the proxy withholds the answer until the kill (or its own stop)
LISTING = "ListObjectsV2"


class KillSwitch:
    """Arms a KillPlan against one run; `on_request` is the proxy's before_forward hook.
    `gate` is the operation whose first request says the run is past its checks, probe and
    recovery: a drain's listing, a watcher's first GET."""

    def __init__(self, plan: KillPlan, proxy: FaultProxy, gate: str = LISTING) -> None:
        self.plan = plan
        self._proxy = proxy
        self._gate = gate
        self._seen = 0
        self._listed = False
        self._lock = threading.Lock()
        self._timers: list[threading.Timer] = []
        self._target: Running | None = None
        self._done = threading.Event()
        self.fired_in_flight: dict[str, int] | None = None  # requests open when it fired

    def arm(self, target: Running) -> None:
        self._target = target
        if self.plan.op is None:
            self._later(self.plan.delay)
        elif self.plan.stall:
            watcher = threading.Thread(target=self._watch_stall, daemon=True)
            watcher.start()

    @property
    def listed(self) -> bool:
        """Whether the run had passed its gate: begun its listing (a watcher: its first GET),
        so past its checks, probe and recovery."""
        with self._lock:
            return self._listed

    def on_request(self, info: RequestInfo) -> None:
        with self._lock:
            first_page = info.op == self._gate and not self._listed
            self._listed = self._listed or info.op == self._gate
            if self.plan.op is None:
                return
            if self.plan.stall:
                if first_page:
                    # From the next request on: this hook runs after the proxy has decided
                    # whether to fault the listing request itself.
                    self._proxy.configure(
                        fault_rate=1.0,
                        fault_kinds=("stall",),
                        fault_ops=frozenset({self.plan.op}),
                        max_faults=1,
                        stall_seconds=STALL_FOREVER,
                    )
                return
            if info.op != self.plan.op or (info.op.startswith("Delete") and not self._listed):
                return
            self._seen += 1
            hit = self._seen == self.plan.nth
        if hit:
            self._later(self.plan.delay)

    def _watch_stall(self) -> None:
        """The proxy logs a request once the server has answered it, before it stalls."""
        while not self._done.wait(0.005):
            if any(entry.fault == "stall" for entry in self._proxy.log()):
                self._later(self.plan.delay)
                return

    def _later(self, delay: float) -> None:
        timer = threading.Timer(delay, self._fire)
        timer.daemon = True
        self._timers.append(timer)
        timer.start()

    def _fire(self) -> None:
        if self._target is None:
            return
        in_flight = _in_flight(self._proxy)
        if self._target.kill():
            self.fired_in_flight = in_flight

    def disarm(self) -> None:
        self._done.set()
        for timer in self._timers:
            timer.cancel()


def _in_flight(proxy: FaultProxy) -> dict[str, int]:
    """Requests received but not yet answered, by operation (the proxy logs on answering)."""
    answered: dict[str, int] = {}
    for entry in proxy.log():
        answered[entry.op] = answered.get(entry.op, 0) + 1
    return {
        op: n - answered.get(op, 0) for op, n in proxy.counts().items() if n > answered.get(op, 0)
    }


def chain(*hooks: Callable[[RequestInfo], None]) -> Callable[[RequestInfo], None]:
    def hook(info: RequestInfo) -> None:
        for each in hooks:
            each(info)

    return hook


# -- observing -------------------------------------------------------------------------------


def _sha256(path: str) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(1024 * 1024):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def files_under(*roots: Path) -> tuple[FileSeen, ...]:
    """Every regular file under the roots (symlinks are not followed, nor counted)."""
    found: list[FileSeen] = []
    for root in roots:
        for folder, _, names in os.walk(root):
            for name in names:
                path = os.path.join(folder, name)
                with contextlib.suppress(FileNotFoundError):
                    if stat.S_ISREG(os.lstat(path).st_mode):
                        digest, size = _sha256(path)
                        found.append(FileSeen(path, digest, size))
    return tuple(found)


def read_audit(path: Path) -> tuple[tuple[AuditLine, ...], int]:
    """The audit lines, and how many lines could not be read (torn by a kill or a full disk)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return (), 0
    lines: list[AuditLine] = []
    torn = 0
    pieces = data.split(b"\n")
    if pieces[-1]:
        torn += 1  # no newline at the end: a write was cut short
    for piece in pieces[:-1]:
        try:
            entry = json.loads(piece.decode("utf-8", "surrogateescape"))
            lines.append(
                AuditLine(
                    key=entry["key"],
                    etag=entry["etag"],
                    status=entry["status"],
                    deleted=bool(entry["deleted"]),
                    local_path=entry.get("local_path"),
                    left_s3=entry["status"] == "changed"
                    and "left S3 while its delete was in flight" in str(entry.get("detail")),
                )
            )
        except (ValueError, KeyError, TypeError):
            torn += 1
    return tuple(lines), torn


@dataclass(frozen=True)
class LedgerView:
    """What s3drain's ledger (`.s3drain/state.db`, its delete journal) holds unfinished, read
    with Python's sqlite3 in read-only mode: the checker does not import s3drain."""

    sending: frozenset[tuple[str, str]] = frozenset()  # (key, ETag): a delete maybe in flight
    unaudited: frozenset[tuple[str, str]] = frozenset()  # (key, ETag): its audit line is owed
    staged: int = 0  # downloads recorded before their file had its real name

    @property
    def owed(self) -> frozenset[tuple[str, str]]:
        """Versions a next run must settle: deletes in flight, and outcomes to be audited."""
        return self.sending | self.unaudited

    @property
    def unfinished(self) -> bool:
        return bool(self.sending or self.unaudited or self.staged)


_UNFINISHED_ROWS = (
    "SELECT key, etag, state, delete_state, audited FROM deliveries "
    "WHERE state = 'staged' OR delete_state = 'sending' OR audited = 0"
)


def read_ledger(local: Local) -> LedgerView:
    """The ledger's unfinished rows; an empty view where there is no ledger (yet), or where
    a run was killed before it had created its tables."""
    if not local.ledger.exists():
        return LedgerView()
    conn = sqlite3.connect(f"{local.ledger.resolve().as_uri()}?mode=ro", uri=True, timeout=10)
    try:
        rows = conn.execute(_UNFINISHED_ROWS).fetchall()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return LedgerView()
        raise
    finally:
        conn.close()
    sending = {(str(k), str(e).strip('"')) for k, e, _, d, _ in rows if d == "sending"}
    unaudited = {(str(k), str(e).strip('"')) for k, e, _, _, a in rows if not a}
    return LedgerView(
        sending=frozenset(sending),
        unaudited=frozenset(unaudited),
        staged=sum(1 for row in rows if row[2] == "staged"),
    )


def site_of(local: Local, prefix: str = PREFIX, taken: Sequence[FileSeen] = ()) -> Site:
    """`taken`: files an ETL took away from raw/ (each under the path it had there); those
    under this base path's raw/ are the site's."""
    audit, torn = read_audit(local.audit_log)
    return Site(
        raw=str(local.raw),
        processed=str(local.processed),
        prefix=prefix,
        files=files_under(local.raw, local.processed),
        audit=audit,
        torn_audit_lines=torn,
        placed=dict(local.placed),
        taken=tuple(f for f in taken if f.path.startswith(f"{local.raw}/")),
    )


def state_texts(local: Local) -> tuple[Text, ...]:
    """Every file s3drain keeps in its state folder (audit log, ledger and its WAL, lock,
    crash logs), as text: a credential must be in none of them."""
    texts: list[Text] = []
    for path in sorted(local.state.glob("*")) if local.state.is_dir() else ():
        if path.is_file():
            texts.append(Text(str(path), path.read_text(errors="replace")))
    return tuple(texts)


@dataclass(frozen=True)
class Trial:
    """A trial's fixed facts: its bucket, what was in it, its sandbox and credentials."""

    lab: Lab
    bucket: str
    before: tuple[Version, ...]
    sandbox: Sandbox
    credentials: Credentials
    snapshot: frozenset[str]
    watch: tuple[str, ...] = ()
    # What the trial mounted (the xattr-less base path), closed when the trial ends.
    mounts: contextlib.ExitStack = field(default_factory=contextlib.ExitStack, compare=False)

    def observe(
        self,
        locals_: Sequence[Local],
        runs: Sequence[RunResult],
        *,
        written: Sequence[Version] = (),
        recreated: Sequence[Version] = (),
        settled: bool = True,
        newest_must_stay: bool = False,
        taken: Sequence[FileSeen] = (),
    ) -> Observation:
        texts = [t for r in runs for t in r.texts()]
        texts += [t for lo in locals_ for t in state_texts(lo)]
        # Right after a kill, what the ledger says is in flight is excused until the next run;
        # once settled, nothing is.
        in_flight = (
            frozenset().union(*(read_ledger(lo).owed for lo in locals_))
            if not settled
            else frozenset()
        )
        return Observation(
            before=self.before,
            bucket=self.lab.stored(self.bucket),
            sites=tuple(site_of(lo, taken=taken) for lo in locals_),
            written=tuple(written),
            recreated=tuple(recreated),
            created_outside=created_outside(
                self.snapshot, self.sandbox.snapshot(), locals_, self.watch
            ),
            texts=tuple(texts),
            secrets=self.credentials.secrets(),
            settled=settled,
            in_flight=in_flight,
            newest_must_stay=newest_must_stay,
        )

    def spec(self, local: Local, endpoint: str, **options: Any) -> RunSpec:
        return RunSpec(self.bucket, local, endpoint, self.credentials, **options)
