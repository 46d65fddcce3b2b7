"""`make bench`: every contender drains the same prefix on the same server; one table.

    python -m benchmarks.run [--scenarios small,large,huge,latency]
                             [--contenders s3drain,naive,aws,rclone,s5cmd]
                             [--endpoint-url URL] [--repeat N] [--smoke]

For each scenario the objects are made once; then for the server ceiling and for each
contender (each run): the server is emptied (moto: reset, or restarted for big objects), the
bucket is filled identically, the contender runs as a child process against the loopback
endpoint (through a 20 ms proxy in the latency scenario), and the result is verified: every
object on disk with its bytes, nothing else there, the prefix empty. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import os
import shlex
import shutil
import signal
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import moto

from benchmarks import contenders as tools
from benchmarks import dataset, report
from benchmarks.ceiling import CeilingError, measure
from benchmarks.child import ChildResult, LauncherError, run_child
from benchmarks.contenders import Contender, RunContext
from benchmarks.dataset import ObjectSpec
from benchmarks.results import (
    CEILING,
    CEILING_NAME,
    FAILED,
    NOT_INSTALLED,
    OK,
    SKIPPED,
    TIMEOUT,
    WRONG,
    Row,
    aggregate,
    request_counts,
)
from benchmarks.s3 import Target, ensure_bucket, fill, make_client, target_from_environment
from benchmarks.scenarios import FULL, GIB, MIB, SCENARIO_NAMES, SMOKE, Scenario
from benchmarks.servers import Backend, ExternalServer, OwnMoto, Route, routable
from benchmarks.verify import verify
from benchmarks.wan import CHECK_BYTES, check_link

REPO_ROOT = Path(__file__).resolve().parent.parent
WORKDIR = REPO_ROOT / "benchmarks" / "work"
RESULTS = REPO_ROOT / "benchmarks" / "RESULTS.md"
SMOKE_RESULTS = WORKDIR / "RESULTS-smoke.md"
README = REPO_ROOT / "README.md"
DEFAULT_BUCKET = "s3drain-bench"
# moto keeps big objects' memory after a reset: above this, each run gets a new server.
RESTART_BYTES = 256 * MIB
FULL_LEVELS = (4, 16, 64)
SMOKE_LEVELS = (4, 16)
FULL_TIMEOUT = 1800.0
SMOKE_TIMEOUT = 120.0
SMOKE_LINK_CHECK_BYTES = 4 * MIB
# Big objects' figures vary most between runs (page cache, writeback, two shared cores): by
# default they are the median of this many runs; the many-object scenarios average themselves.
BIG_REPEAT = 3
_STDERR_TAIL = 300
# Environment a contender must not inherit: other endpoints, credentials, profiles, proxies,
# s3drain's own settings (it reads BUCKET_NAME, PATH_TO_SEARCH, ... from the environment).
_FOREIGN_PREFIXES = ("AWS_", "RCLONE_", "S3DRAIN_", "S3_")
_FOREIGN_NAMES = frozenset(
    {"BUCKET_NAME", "PATH_TO_SEARCH", "LOCAL_BASE_PATH", "RAW_DIR", "PROCESSED_DIR"}
    | {"HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"}
)


@dataclass(frozen=True)
class BenchConfig:
    scenarios: tuple[Scenario, ...]
    contenders: tuple[Contender, ...]
    workdir: Path
    endpoint_url: str | None = None
    # The local moto: patched to honour DeleteObjects' per-key ETag as AWS documents (what
    # s3drain meets on AWS: batched exact deletes), or as released (one exact delete per
    # object). The contenders do not use conditions; only s3drain sees the difference.
    aws_like: bool = True
    bucket: str = DEFAULT_BUCKET
    region: str | None = None
    repeat: int = 1
    # Runs per contender in the scenarios of big objects, whose figures vary most from run to
    # run on two shared cores; None: ``repeat``.
    repeat_big: int | None = None
    timeout: float = FULL_TIMEOUT
    ceiling_levels: tuple[int, ...] = FULL_LEVELS
    with_ceiling: bool = True
    # Bytes per stream when the wan link is measured; the smoke run makes it small.
    link_check_bytes: int = CHECK_BYTES

    def runs(self, scenario: Scenario) -> int:
        if scenario.small_objects or self.repeat_big is None:
            return self.repeat
        return self.repeat_big


@dataclass(frozen=True)
class BenchResult:
    rows: tuple[Row, ...]
    info: report.RunInfo


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class _Bench:
    """One bench run: the server, the located tools, and the loop over scenarios."""

    def __init__(self, config: BenchConfig, backend: Backend) -> None:
        self.config = config
        self.backend = backend
        self.config_dir = config.workdir / "config"
        self.path = tools.search_path(_environ_path())
        self.located = {c.name: tools.locate(c, self.path) for c in config.contenders}

    def run(self) -> list[Row]:
        _write_tool_configs(self.config_dir, self.backend.target.region)
        rows: list[Row] = []
        for scenario in self.config.scenarios:
            rows += self.scenario(scenario)
        return rows

    def versions(self) -> dict[str, str]:
        env = self.base_env(self.backend.target)
        found = {
            c.name: tools.version(c, exe, env)
            for c in self.config.contenders
            if (exe := self.located[c.name]) is not None
        }
        missing = {c.name: "not installed" for c in self.config.contenders if c.name not in found}
        return found | missing | {"server": _server_version(self.backend)}

    def scenario(self, scenario: Scenario) -> list[Row]:
        prefix = f"bench/{scenario.name}/"
        if not routable(self.backend.target.endpoint_url, scenario.latency, scenario.link):
            note = "the latency proxy and the link relay need a plain HTTP endpoint"
            return [Row(scenario, c.name, SKIPPED, note=note) for c in self.config.contenders]
        data_dir = self.config.workdir / "data" / scenario.name
        log(f"[{scenario.name}] making {scenario.title}")
        objects = dataset.build(scenario, prefix, data_dir)
        try:
            rows = [self.ceiling(scenario, prefix, objects)] if self.config.with_ceiling else []
            rows += [self.contender(scenario, c, prefix, objects) for c in self.config.contenders]
        finally:
            shutil.rmtree(data_dir, ignore_errors=True)
        return rows

    def prepare(self, scenario: Scenario, prefix: str, objects: Sequence[ObjectSpec]) -> Target:
        """An emptied server holding exactly ``objects``."""
        self.backend.fresh(prefix, restart=scenario.total_bytes >= RESTART_BYTES)
        target = self.backend.target
        client = make_client(target)
        try:
            ensure_bucket(client, target.bucket)
            threads = 16 if scenario.small_objects else min(4, scenario.count)
            fill(client, target.bucket, objects, threads)
        finally:
            client.close()
        return target

    def ceiling(self, scenario: Scenario, prefix: str, objects: Sequence[ObjectSpec]) -> Row:
        log(f"[{scenario.name}] server ceiling")
        target = self.prepare(scenario, prefix, objects)
        with (
            tempfile.TemporaryDirectory(dir=self.config.workdir) as scratch,
            Route(self.backend, scenario.latency, Path(scratch), scenario.link) as route,
        ):
            client = make_client(target, route.url, pool=max(self.config.ceiling_levels))
            try:
                best = measure(client, target.bucket, objects, self.config.ceiling_levels)
            except CeilingError as exc:
                log(f"[{scenario.name}] server ceiling: {exc}")
                return Row(scenario, CEILING_NAME, FAILED, note=str(exc))
            finally:
                client.close()
            route.close()
        note = best.summary()
        if route.relay_stats is not None:
            # Over all probes, not just the best: the relay's busiest share of a core is what
            # says whether it could have held the ceiling down.
            note += f"; {route.relay_stats.note}"
        row = Row(scenario, CEILING_NAME, CEILING, seconds=best.best.seconds, note=note)
        log(f"[{scenario.name}] server ceiling: {best.best.rate()} ({best.best.probe.label})")
        return row

    def contender(
        self, scenario: Scenario, contender: Contender, prefix: str, objects: Sequence[ObjectSpec]
    ) -> Row:
        exe = self.located[contender.name]
        if exe is None:
            log(f"[{scenario.name}] {contender.name}: not installed")
            return Row(scenario, contender.name, NOT_INSTALLED, note="not found on PATH")
        trials = [
            self.trial(scenario, contender, exe, prefix, objects)
            for _ in range(self.config.runs(scenario))
        ]
        row = aggregate(trials)
        speed = (
            f"{row.objects_per_second:,.1f} obj/s, {row.mib_per_second:,.1f} MiB/s"
            if row.timed
            else row.note
        )
        log(f"[{scenario.name}] {contender.name}: {row.status} {speed}")
        return row

    def trial(
        self,
        scenario: Scenario,
        contender: Contender,
        exe: str,
        prefix: str,
        objects: Sequence[ObjectSpec],
    ) -> Row:
        target = self.prepare(scenario, prefix, objects)
        runs = self.config.workdir / "runs"
        runs.mkdir(parents=True, exist_ok=True)
        trial_dir = Path(tempfile.mkdtemp(prefix=f"{scenario.name}-{contender.name}-", dir=runs))
        ctx = RunContext("", target, prefix, trial_dir / "base", trial_dir / "base" / "raw")
        ctx.dest.mkdir(parents=True)
        status = FAILED
        try:
            with Route(self.backend, scenario.latency, trial_dir, scenario.link) as route:
                ctx = dataclasses.replace(ctx, url=route.url)
                result = run_child(
                    contender.command(exe, ctx),
                    env=contender.env(ctx, self.base_env(target)),
                    cwd=trial_dir,
                    stdout=trial_dir / "stdout.txt",
                    stderr=trial_dir / "stderr.txt",
                    timeout=self.config.timeout,
                )
                counts = route.close()
            status, note = self.judge(ctx, objects, result, trial_dir)
            return Row(
                scenario,
                contender.name,
                status,
                seconds=result.wall_seconds,
                cpu_seconds=result.cpu_seconds,
                peak_rss_bytes=result.peak_rss_bytes,
                requests=request_counts(counts),
                note=note,
                relay_cpu_seconds=route.relay_stats.cpu_seconds if route.relay_stats else None,
            )
        except LauncherError as exc:
            return Row(scenario, contender.name, FAILED, note=f"{exc} (logs in {trial_dir})")
        finally:
            _clean_trial(trial_dir, keep_logs=status != OK)

    def judge(
        self, ctx: RunContext, objects: Sequence[ObjectSpec], result: ChildResult, logs: Path
    ) -> tuple[str, str]:
        """The run's status and, when it is not ok, what went wrong."""
        if result.timed_out:
            return TIMEOUT, f"killed after {self.config.timeout:.0f} s (logs in {logs})"
        if result.exit_code != 0:
            return FAILED, f"exit {result.exit_code}: {_tail(logs / 'stderr.txt')} (logs in {logs})"
        client = make_client(ctx.target)
        try:
            verdict = verify(client, ctx.target.bucket, ctx.prefix, objects, ctx.dest)
        finally:
            client.close()
        if not verdict.ok:
            return WRONG, f"{verdict.summary} (logs in {logs})"
        return OK, ""

    def base_env(self, target: Target) -> dict[str, str]:
        """The environment every contender starts from: the same keys, region and config."""
        env = {k: v for k, v in os.environ.items() if not _foreign(k)}
        env.update(target.credential_env())
        env.update(
            PATH=self.path,
            AWS_CONFIG_FILE=str(self.config_dir / "aws-config"),
            AWS_SHARED_CREDENTIALS_FILE=str(self.config_dir / "aws-credentials"),
            RCLONE_CONFIG=str(self.config_dir / "rclone.conf"),
            NO_PROXY="127.0.0.1,localhost",
            no_proxy="127.0.0.1,localhost",
        )
        return env


def _environ_path() -> str:
    return os.environ.get("PATH", "")


def _foreign(name: str) -> bool:
    return name.startswith(_FOREIGN_PREFIXES) or name.upper() in _FOREIGN_NAMES


def _write_tool_configs(config_dir: Path, region: str) -> None:
    """Config files that only the bench's settings are in (not the user's ~/.aws, rclone.conf)."""
    config_dir.mkdir(parents=True, exist_ok=True)
    (config_dir / "aws-config").write_text(
        f"[default]\nregion = {region}\ns3 =\n    max_concurrent_requests = {tools.CONCURRENCY}\n"
    )
    (config_dir / "aws-credentials").write_text("")
    (config_dir / "rclone.conf").write_text("")


def _tail(path: Path) -> str:
    try:
        text = path.read_text(errors="replace").strip()
    except OSError:
        return "no stderr"
    return " ".join(text[-_STDERR_TAIL:].split()) or "no stderr"


def _clean_trial(trial_dir: Path, keep_logs: bool) -> None:
    """Remove the downloaded data; keep a failed run's stdout/stderr to look at."""
    if keep_logs:
        shutil.rmtree(trial_dir / "base", ignore_errors=True)
    else:
        shutil.rmtree(trial_dir, ignore_errors=True)


def _server_version(backend: Backend) -> str:
    if isinstance(backend, OwnMoto):
        return f"moto {moto.__version__} ({backend.description}, werkzeug, threaded)"
    return backend.description


def _check_space(workdir: Path, scenarios: Sequence[Scenario]) -> None:
    """Source files, the server's copy and the download of the biggest scenario, and slack."""
    needed = 3 * max((s.total_bytes for s in scenarios), default=0) + 1 * GIB
    free = shutil.disk_usage(workdir).free
    if free < needed:
        raise SystemExit(
            f"{workdir} has {free / GIB:.1f} GiB free; this bench needs {needed / GIB:.1f} GiB"
        )


@contextlib.contextmanager
def _backend(config: BenchConfig) -> Iterator[Backend]:
    if config.endpoint_url:
        target = target_from_environment(config.endpoint_url, config.bucket, config.region)
        yield ExternalServer(target)
        return
    server = OwnMoto(config.workdir, config.bucket, aws_like=config.aws_like).start()
    try:
        yield server
    finally:
        server.close()


def run_bench(config: BenchConfig, command: str = "python -m benchmarks.run") -> BenchResult:
    config.workdir.mkdir(parents=True, exist_ok=True)
    _check_space(config.workdir, config.scenarios)
    with _backend(config) as backend:
        machine = report.machine_info(config.workdir)  # before the load we add ourselves
        bench = _Bench(config, backend)
        versions = bench.versions()
        link_check = _check_links(config.scenarios, config.link_check_bytes)
        rows = bench.run()
        info = report.RunInfo(
            date=datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            command=command,
            server=backend.description,
            counting=_counting(backend),
            versions=versions,
            settings=_settings(config),
            machine=machine | {"load average when it ended": report.load_average()},
            scenarios=config.scenarios,
            link_check=link_check,
        )
    return BenchResult(tuple(rows), info)


def _check_links(scenarios: Sequence[Scenario], stream_bytes: int) -> str | None:
    """Measure each distinct link the scenarios use before trusting figures taken over it."""
    links = list(dict.fromkeys(s.link for s in scenarios if s.link is not None))
    texts = []
    for link in links:
        log(f"checking the link: {link.title}")
        summary = check_link(link.delay, link.rate, stream_bytes).summary()
        log(summary)
        texts.append(summary)
    return "\n\n".join(texts) if texts else None


def _counting(backend: Backend) -> str:
    if isinstance(backend, OwnMoto):
        return (
            "from moto's request log (no proxy in the path), and by the latency proxy in the "
            "latency scenario"
        )
    return "by a counting proxy (latency 0) in front of the endpoint, where it is plain HTTP"


def _settings(config: BenchConfig) -> dict[str, str]:
    settings = {c.name: c.settings for c in config.contenders}
    levels = ", ".join(str(level) for level in config.ceiling_levels)
    settings[CEILING_NAME] = (
        f"fastest of probes at {levels} threads (`http.client`, presigned GET URLs, one kept "
        "connection per thread, bytes discarded); where a scenario has fewer objects than "
        "threads also equal ranges per object, and for objects over 8 MiB 16 threads of 8 MiB "
        "ranges"
    )
    settings["every contender"] = (
        "the same access keys and region in the environment, its own empty config files "
        "(AWS_CONFIG_FILE, AWS_SHARED_CREDENTIALS_FILE, RCLONE_CONFIG), no proxies, a fresh "
        f"empty destination; {_runs_text(config)}; timeout "
        f"{config.timeout:.0f} s"
    )
    return settings


def _runs_text(config: BenchConfig) -> str:
    big = config.repeat if config.repeat_big is None else config.repeat_big
    if big == config.repeat:
        return f"{config.repeat} run(s) each, the median reported"
    return (
        f"{config.repeat} run(s) each in the scenarios of small objects, {big} in those of big "
        "objects, the median reported"
    )


# --- command line ----------------------------------------------------------------------------


def _names(text: str, known: Sequence[str], what: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in known]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"{what}: choose from {', '.join(known)}")
    return names


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0] if __doc__ else ""
    )
    parser.add_argument("--scenarios", default=",".join(SCENARIO_NAMES))
    parser.add_argument("--contenders", default=",".join(tools.ALL))
    parser.add_argument("--endpoint-url", default=None, help="default: a local moto server")
    parser.add_argument(
        "--server",
        choices=("moto-aws-like", "moto"),
        default="moto-aws-like",
        help="the local server: moto honouring DeleteObjects' per-key ETag as AWS documents "
        "(default), or moto as released",
    )
    parser.add_argument("--bucket", default=DEFAULT_BUCKET)
    parser.add_argument("--region", default=None)
    parser.add_argument(
        "--repeat",
        type=int,
        default=None,
        help=f"runs per contender, the median reported (default: 1, and {BIG_REPEAT} in the "
        "scenarios of big objects; 1 with --smoke)",
    )
    parser.add_argument("--smoke", action="store_true", help="tiny sizes; writes to work/")
    parser.add_argument("--timeout", type=float, default=None, help="seconds per run")
    parser.add_argument("--output", type=Path, default=None, help="where the markdown goes")
    parser.add_argument("--no-readme", action="store_true", help="leave README.md alone")
    args = parser.parse_args(argv)
    try:
        args.scenario_names = _names(args.scenarios, SCENARIO_NAMES, "--scenarios")
        args.contender_names = _names(args.contenders, list(tools.ALL), "--contenders")
    except argparse.ArgumentTypeError as exc:
        parser.error(str(exc))
    if args.repeat is not None and args.repeat < 1:
        parser.error("--repeat must be at least 1")
    return args


def config_from_args(args: argparse.Namespace) -> BenchConfig:
    sizes = SMOKE if args.smoke else FULL
    return BenchConfig(
        scenarios=tuple(sizes[name] for name in args.scenario_names),
        contenders=tuple(tools.ALL[name] for name in args.contender_names),
        workdir=WORKDIR,
        endpoint_url=args.endpoint_url,
        aws_like=args.server == "moto-aws-like",
        bucket=args.bucket,
        region=args.region,
        repeat=args.repeat or 1,
        repeat_big=args.repeat or (1 if args.smoke else BIG_REPEAT),
        timeout=args.timeout or (SMOKE_TIMEOUT if args.smoke else FULL_TIMEOUT),
        ceiling_levels=SMOKE_LEVELS if args.smoke else FULL_LEVELS,
        link_check_bytes=SMOKE_LINK_CHECK_BYTES if args.smoke else CHECK_BYTES,
    )


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    # SystemExit unwinds the with-blocks: the contender, the proxy and moto are stopped too.
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> None:
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    args = _parse_args(argv)
    config = config_from_args(args)
    command = "python -m benchmarks.run " + shlex.join(sys.argv[1:] if argv is None else argv)
    result = run_bench(config, command.strip())
    output = args.output or (SMOKE_RESULTS if args.smoke else RESULTS)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(report.results_markdown(result.rows, result.info))
    complete = len(config.scenarios) == len(SCENARIO_NAMES)
    if not (args.smoke or args.no_readme or args.output) and complete:
        block = report.readme_block(result.rows, result.info)
        if not report.replace_readme_block(README, block):
            log("README.md has no bench block markers; left alone")
    print(report.table(result.rows))
    print()
    print(report.checks_table(report.target_checks(result.rows)))
    log(f"written to {output}")


if __name__ == "__main__":
    main()
