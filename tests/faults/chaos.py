"""Run every fault scenario at a size of your choosing and print the figures.

    python -m tests.faults.chaos --trials 300 [--seed S] [--only kill,disk] [--flat]

`--trials N` is the number of kill -9 trials; the other scenarios run a share of N (faults,
disk, overwrite and overlap N/5 each, kill -9 on the xattr-less mount 3N/10, overwrites there
N/10, kill -9 of a watcher N/10, hostile keys N/20, at least 2 each), because a kill trial is the cheapest way to hit a
random instant and the others repeat fewer distinct situations. `--flat` runs N of each. The
`(xattr-none)` rows run the same trials with the base path on a FUSE mount without user xattrs
(bindfs --xattr-none); where FUSE is missing they are left out, and the figures say so. Seeds are consecutive from `--seed` (random unless given,
and printed), so any trial can be run again alone: `--only kill --seed 1234 --trials 1`.

It starts its own moto servers (plain, and AWS-like for batched deletes), prints one line per trial on stderr, and ends with one line per
scenario on stdout: trials run, objects at stake, objects lost, partial files seen, invariant
violations of any kind, and wall time. Exit status 1 if any trial broke the invariant.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from tests.faults.scenarios import (
    ON_MOUNT,
    Bench,
    TrialReport,
    bench_on,
    title,
)
from tests.faults.scenarios import SCENARIOS as DRAIN_SCENARIOS
from tests.faults.watching import watch_trial
from tests.support.mounts import FUSE_MISSING, fuse_available
from tests.support.seamtrial import chaos_seams
from tests.support.server import MotoServer

SHARE = {
    "kill": 1.0,
    "kill-xattr-none": 0.3,
    "faults": 0.2,
    "disk": 0.2,
    "overwrite": 0.2,
    "overwrite-xattr-none": 0.1,
    "overlap": 0.2,
    "hostile": 0.05,
    "watch": 0.1,
}
MIN_TRIALS = 2
# The watcher's scenario lives in watching.py, which builds on scenarios.py.
SCENARIOS = {**DRAIN_SCENARIOS, "watch": watch_trial}


@dataclass(frozen=True)
class Row:
    scenario: str
    trials: int
    at_stake: int
    lost: int
    partial: int
    violations: int
    seconds: float

    @classmethod
    def of(cls, scenario: str, reports: Sequence[TrialReport], seconds: float) -> Row:
        return cls(
            scenario=scenario,
            trials=len(reports),
            at_stake=sum(r.at_stake for r in reports),
            lost=sum(r.lost for r in reports),
            partial=sum(r.partial_files for r in reports),
            violations=sum(len(r.violations) for r in reports),
            seconds=seconds,
        )


def trial_counts(trials: int, only: Sequence[str], flat: bool) -> dict[str, int]:
    names = only or list(SCENARIOS)
    if flat:
        return dict.fromkeys(names, trials)
    return {n: max(MIN_TRIALS if trials > 1 else 1, round(trials * SHARE[n])) for n in names}


def _minutes(seconds: float) -> str:
    return f"{int(seconds // 60)}m{seconds % 60:04.1f}s"


HEADER = (
    f"{'scenario':<22} {'trials':>6} {'objects at stake':>16} {'objects lost':>12} "
    f"{'partial files seen':>18} {'violations':>10} {'wall time':>10}"
)


def table(rows: Sequence[Row]) -> str:
    lines = [HEADER, "-" * len(HEADER)]
    for row in rows:
        lines.append(
            f"{title(row.scenario):<22} {row.trials:>6} {row.at_stake:>16,} {row.lost:>12} "
            f"{row.partial:>18} {row.violations:>10} {_minutes(row.seconds):>10}"
        )
    return "\n".join(lines)


def notes(bench: Bench, reports: dict[str, list[TrialReport]]) -> list[str]:
    """What the figures do not say: where kills landed, which faults were injected, what this
    machine could not test."""
    lines = []
    for scenario, found in reports.items():
        merged: Counter[str] = Counter()
        for report in found:
            merged.update(report.notes)
        kinds = Counter(v.kind.value for r in found for v in r.violations)
        if kinds:
            merged.update({f"violation: {k}": n for k, n in kinds.items()})
        if merged:
            figures = ", ".join(f"{k} {v}" for k, v in sorted(merged.items()))
            lines.append(f"{title(scenario)}: {figures}")
    if "hostile" in reports:
        missing = ", ".join(repr(h.rel) for h in bench.untestable_keys()) or "none"
        lines.append(f"hostile: keys moto's HTTP server cannot hold (not tested): {missing}")
        lines.append(
            "hostile: a case-insensitive file system is not available here; names differing "
            "only in case were tested on a case-sensitive one"
        )
    if "disk" in reports and not bench.tmpfs_available():
        lines.append(
            "disk: cannot mount a tmpfs here (needs root); ENOSPC came from RLIMIT_FSIZE only"
        )
    return lines


@dataclass(frozen=True)
class Ran:
    reports: tuple[TrialReport, ...]
    harness_errors: int  # trials the test machinery itself failed to carry out
    seconds: float


def run_scenario(bench: Bench, name: str, count: int, seed: int, log: TextIO) -> Ran:
    started = time.monotonic()
    reports = []
    errors = 0
    for number in range(count):
        try:
            report = SCENARIOS[name](bench, seed + number)
        except Exception:
            # A broken trial says nothing about s3drain; it is counted, shown, and skipped.
            errors += 1
            log.write(f"{name:<10} {number + 1:>4}/{count} seed={seed + number} HARNESS ERROR\n")
            log.write(traceback.format_exc())
            continue
        reports.append(report)
        verdict = "ok" if not report.violations else f"{len(report.violations)} VIOLATION(S)"
        log.write(
            f"{name:<10} {number + 1:>4}/{count} seed={report.seed} {report.seconds:5.1f}s "
            f"{verdict}  [{report.label}]\n"
        )
        if report.violations:
            log.write(report.describe() + "\n")
        log.flush()
    return Ran(tuple(reports), errors, time.monotonic() - started)


@contextlib.contextmanager
def _work_folder(parent: Path | None, *, keep: bool) -> Iterator[Path]:
    """A temp folder for the trials; kept (and named) when failed trials are to be kept."""
    if keep:
        path = Path(tempfile.mkdtemp(prefix="s3drain-chaos-", dir=parent))
        sys.stderr.write(f"chaos: failed trials are kept under {path}\n")
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="s3drain-chaos-", dir=parent) as work:
        yield Path(work)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--trials", type=int, default=300)
    parser.add_argument("--seed", type=int, default=None, help="default: random, printed")
    parser.add_argument("--only", default="", help="comma-separated scenarios")
    parser.add_argument("--flat", action="store_true", help="N trials of every scenario")
    parser.add_argument("--keep-failed", action="store_true", help="keep failed trials' files")
    parser.add_argument("--work", type=Path, default=None, help="default: a temp folder")
    args = parser.parse_args(argv)
    only = [n for n in args.only.split(",") if n]
    unknown = set(only) - set(SCENARIOS) - {"seams"}
    if unknown:
        parser.error(f"unknown scenario(s) {sorted(unknown)}; choose from {list(SCENARIOS)}")
    seed = args.seed if args.seed is not None else random.randrange(1, 10**6)
    # `seams` runs in this process, at s3drain's own seams (tests/support/seamtrial.py).
    seams_failed = False
    if not only or "seams" in only:
        seams_failed = chaos_seams(args.trials, seed, flat=args.flat, keep_failed=args.keep_failed)
        only = [n for n in only if n != "seams"]
        if not only and args.only:
            return 1 if seams_failed else 0
    counts = trial_counts(args.trials, only, args.flat)
    left_out = []
    if not fuse_available():
        left_out = [name for name in counts if name in ON_MOUNT]
        counts = {name: n for name, n in counts.items() if name not in ON_MOUNT}
    sys.stderr.write(f"chaos: seed {seed}, trials {counts}\n")
    rows: list[Row] = []
    reports: dict[str, list[TrialReport]] = {}
    errors = 0
    with (
        _work_folder(args.work, keep=args.keep_failed) as work,
        MotoServer() as server,
        MotoServer(aws_like=True) as aws_like,
        bench_on(server.url, work, aws_url=aws_like.url, keep_failed=args.keep_failed) as bench,
    ):
        for name, count in counts.items():
            ran = run_scenario(bench, name, count, seed, sys.stderr)
            reports[name] = list(ran.reports)
            rows.append(Row.of(name, ran.reports, ran.seconds))
            errors += ran.harness_errors
        print(f"\ns3drain chaos, seed {seed}:")
        print(table(rows))
        for line in notes(bench, reports):
            print(f"  {line}")
        for name in left_out:
            print(f"  {title(name)}: NOT RUN: {FUSE_MISSING}")
    failed = any(r.violations for found in reports.values() for r in found)
    lost = sum(row.lost for row in rows)
    partial = sum(row.partial for row in rows)
    print(f"objects lost: {lost}; partial files seen: {partial}; harness errors: {errors}")
    return 1 if failed or errors or seams_failed else 0


if __name__ == "__main__":
    sys.exit(main())
