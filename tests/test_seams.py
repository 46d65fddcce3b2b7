"""Chaos at s3drain's own seams, in one process: a few hundred seeded trials, each a drain with
one seam raising at a random call (a full or failing disk, a broken stream, a failing ledger or
listing, a bug), then an undisturbed drain. Each trial asserts that the run ended, lost
nothing, gave every object its one true outcome line (or left it in S3 untouched, or left its
line owed in the ledger for the next run, which must write it), and ended with an exit code
that tells the truth; and that the next run finished the job. See tests/support/seamtrial.py (the
trials) and seamkit.py (the seams).

A failing trial names its seed: `pytest tests/test_seams.py -k 1234` runs it alone.
`S3DRAIN_SEAM_TRIALS=N` changes how many run here; `make chaos` runs more.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.seamkit import SEAMS
from tests.support.seamtrial import (
    Bench,
    TrialReport,
    bench_in,
    default_work,
    run_trial,
    seam_for,
)

TRIALS = int(os.environ.get("S3DRAIN_SEAM_TRIALS", "240"))
FIRST_SEED = 7000
REPORTS: list[TrialReport] = []


@pytest.fixture(scope="module")
def bench() -> Iterator[Bench]:
    work = Path(tempfile.mkdtemp(prefix="s3drain-seams-", dir=default_work()))
    try:
        with bench_in(work) as shared:
            yield shared
    finally:
        shutil.rmtree(work, ignore_errors=True)


def test_every_seam_is_reached_by_an_undisturbed_run(bench: Bench) -> None:
    """A seam no run reaches would make its trials pass without testing anything."""
    unreached = [seam for seam in SEAMS if bench.reached[seam] == 0]
    assert not unreached, f"not called in the calibration run: {unreached}"


@pytest.mark.parametrize(
    "seed", range(FIRST_SEED, FIRST_SEED + TRIALS), ids=lambda s: f"{seam_for(s)}-{s}"
)
def test_a_fault_at_a_seam(bench: Bench, seed: int) -> None:
    report = run_trial(bench, seed, seam_for(seed))
    REPORTS.append(report)
    assert not report.hung, report.describe()
    assert not report.violations, report.describe()


def test_the_faults_fired(bench: Bench) -> None:
    """Most trials must have had their fault fire (a k past the run's last call leaves a
    clean run), and every seam must have fired in some trial."""
    if len(REPORTS) < min(TRIALS, 2 * len(SEAMS)):
        worker = os.environ.get("PYTEST_XDIST_WORKER", "no xdist worker")
        pytest.skip(
            "runs after the trials of this file (run the whole file): "
            f"{len(REPORTS)} trial reports in this process ({worker})"
        )
    fired = [r for r in REPORTS if r.fired]
    assert len(fired) >= 0.75 * len(REPORTS), f"{len(fired)} of {len(REPORTS)} fired"
    silent = set(SEAMS) - {r.setup.seam for r in fired}
    assert not silent, f"never fired: {sorted(silent)}"
