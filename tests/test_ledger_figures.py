"""The ledger's cost, held to bounds: its size per row (`python -m tests.support.ledger_figures`
prints the figure for a million rows) and the commits a drain of small objects makes."""

from __future__ import annotations

from pathlib import Path

from tests.support.ledger_figures import fill_ledger, small_objects_run

# Measured: 378 B/row at 1,000,000 rows (361 MiB; table 267, key index 76, settled index 19)
# and 393 B/row at 20,000; the bound leaves room for SQLite's page slack.
MAX_BYTES_PER_ROW = 450


def test_the_ledger_stays_small_and_commits_per_batch(tmp_path: Path) -> None:
    figures = fill_ledger(tmp_path, 20_000)

    print(figures)
    assert figures.size / figures.rows < MAX_BYTES_PER_ROW, figures
    # deliver + settle + mark_audited per batch of 1000, and the run's own two.
    assert figures.commits == 3 * 20 + 2, figures


def test_commits_of_a_small_objects_drain(tmp_path: Path, s3_url: str) -> None:
    """Small objects with the CLI's defaults: downloads are staged by group commit (downloads
    that finish together share one), deliveries, deletes and audit marks go per delete batch;
    fewer commits than objects. (`--small-objects 2000` for the figure in the docs.)"""
    figures = small_objects_run(s3_url, tmp_path, 300)

    print(figures)
    assert figures.commits < figures.objects, figures
