"""Lanes in one process: when a run drains in lanes, how the run counts and shows what they
did, and the audit log they share. The lanes themselves, as processes, are in
`test_lanes_e2e.py`."""

from __future__ import annotations

import io
import json
import multiprocessing
import os
import threading
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from s3drain.config.sources import Sources
from s3drain.drain.lanes import AUTO_FROM_CORES, LANES_FROM, MAX_LANES, FirstPage, lane_count
from s3drain.drain.progress import Progress
from s3drain.drain.reporter import Reporter
from s3drain.drain.settings import DrainSettings, load_drain_settings
from s3drain.drain.source import listing
from s3drain.drain.summary import Totals
from s3drain.errors import ConfigError
from s3drain.local.audit import AuditLog
from s3drain.records import ObjectRecord, Outcome, Status
from s3drain.s3.retry import RetryPolicy
from tests.support.drainkit import BUCKET, PREFIX, drain_settings, mock_aws, new_client

KiB = 1024
WHEN = datetime(2026, 1, 1, tzinfo=UTC)


def _page(count: int, size: int) -> list[ObjectRecord]:
    return [ObjectRecord(f"p/{n:05d}", size, f"{n:032x}", WHEN) for n in range(count)]


class _Pages:
    def __init__(self, page: list[ObjectRecord]) -> None:
        self.page = page
        self.asked = 0

    def __call__(self) -> list[ObjectRecord]:
        self.asked += 1
        return self.page


def _count(
    settings: DrainSettings,
    page: list[ObjectRecord],
    *,
    cores: int = 4,
    own_process: bool = True,
    feed: bool = False,
) -> tuple[int, int]:
    pages = _Pages(page)
    lanes = lane_count(
        settings,
        own_process=own_process,
        feed=listing("b", "p/") if feed else None,
        first_page=pages,
        cores=lambda: cores,
    )
    return lanes, pages.asked


def test_a_full_page_of_small_objects_gets_a_lane_per_core(tmp_path: Path) -> None:
    settings = drain_settings(tmp_path)
    assert _count(settings, _page(LANES_FROM, 4 * KiB), cores=AUTO_FROM_CORES) == (
        AUTO_FROM_CORES,
        1,
    )
    assert _count(settings, _page(LANES_FROM, 4 * KiB), cores=6) == (6, 1)
    assert _count(settings, _page(LANES_FROM, 4 * KiB), cores=64) == (MAX_LANES, 1)


@pytest.mark.parametrize("cores", [1, 2, AUTO_FROM_CORES - 1])
def test_by_default_no_lanes_below_four_cores(tmp_path: Path, cores: int) -> None:
    """Measured on two cores shared with the server: lanes lost below about 10,000 objects
    (their start), so they are not the default there; the listing is not even looked at."""
    assert _count(drain_settings(tmp_path), _page(LANES_FROM, 4 * KiB), cores=cores) == (1, 0)


@pytest.mark.parametrize(
    ("page", "why"),
    [
        (_page(LANES_FROM - 1, 4 * KiB), "too few objects to pay for the processes"),
        (_page(LANES_FROM, 256 * KiB), "large objects: the fan-out, not Python, is the limit"),
        ([], "an empty prefix"),
    ],
)
def test_one_lane_where_lanes_do_not_pay(
    tmp_path: Path, page: list[ObjectRecord], why: str
) -> None:
    assert _count(drain_settings(tmp_path), page) == (1, 1), why


@pytest.mark.parametrize(
    "change",
    [
        {"max_objects": 10},
        {"max_bytes": 10},
        {"max_delete": 10},
        {"processes": 2},
        {"dry_run": True},
    ],
)
def test_one_lane_with_a_limit_a_dry_run_or_fetch_processes_asked_for(
    tmp_path: Path, change: dict[str, object]
) -> None:
    settings = replace(drain_settings(tmp_path), **change)  # type: ignore[arg-type]
    assert _count(settings, _page(LANES_FROM, 4 * KiB)) == (1, 0)


def test_one_lane_through_the_api_and_for_watch(tmp_path: Path) -> None:
    settings = drain_settings(tmp_path)
    page = _page(LANES_FROM, 4 * KiB)
    assert _count(settings, page, own_process=False) == (1, 0)
    assert _count(settings, page, feed=True) == (1, 0)


def test_lanes_asked_for_are_used_without_a_look_at_the_listing(tmp_path: Path) -> None:
    settings = replace(drain_settings(tmp_path), lanes=3)
    assert _count(settings, [], cores=1) == (3, 0)
    assert _count(replace(settings, lanes=1), _page(LANES_FROM, 1)) == (1, 0)


@pytest.mark.parametrize("flag", ["--max-objects", "--max-bytes", "--max-delete", "--shard"])
def test_lanes_with_a_limit_or_a_shard_is_a_setting_error(tmp_path: Path, flag: str) -> None:
    value = "0/2" if flag == "--shard" else "5"
    flags = {
        "bucket": "lake",
        "prefix": "p/",
        "local_base_path": str(tmp_path),
        "lanes": "2",
        flag.lstrip("-").replace("-", "_"): value,
    }
    with pytest.raises(ConfigError) as raised:
        load_drain_settings(Sources(flags, {}, tmp_path / "none.env"))
    assert f"--lanes 2 cannot be combined with {flag}" in raised.value.message


@pytest.mark.parametrize(("text", "lanes"), [("auto", None), ("AUTO", None), ("1", 1), ("8", 8)])
def test_lanes_setting(tmp_path: Path, text: str, lanes: int | None) -> None:
    flags = {"bucket": "lake", "prefix": "p/", "local_base_path": str(tmp_path), "lanes": text}
    assert load_drain_settings(Sources(flags, {}, tmp_path / "none.env")).lanes == lanes


@pytest.mark.parametrize("text", ["0", "65", "two"])
def test_a_wrong_lanes_setting_says_what_is_allowed(tmp_path: Path, text: str) -> None:
    flags = {"bucket": "lake", "prefix": "p/", "local_base_path": str(tmp_path), "lanes": text}
    with pytest.raises(ConfigError) as raised:
        load_drain_settings(Sources(flags, {}, tmp_path / "none.env"))
    assert "lanes" in raised.value.message and "auto" in raised.value.message


# -- the run that started the lanes counts and shows what they did -------------------------------


def _totals(**counts: int) -> Totals:
    return Totals(
        counts=counts,
        filtered=1,
        listed=sum(counts.values()) + 1,
        deleted=counts.get("downloaded", 0),
        bytes_downloaded=100 * counts.get("downloaded", 0),
        bytes_deleted=100 * counts.get("downloaded", 0),
        retries=2,
        seconds=1.0,
        bytes_by_status={k: 100 * v for k, v in counts.items()},
    )


def _figures(done: int, *, listing_done: bool) -> Progress:
    return Progress(
        done=done,
        downloaded=10 * done,
        left_in_s3=1,
        elapsed=1.0,
        listed=done + 5,
        listing_done=listing_done,
        expected=None,
    )


def test_the_lanes_totals_become_the_runs(tmp_path: Path) -> None:
    reporter = Reporter(audit=None, out=io.StringIO(), err=io.StringIO())
    reporter.absorb(0, _totals(downloaded=7, failed=1))
    reporter.absorb(1, _totals(downloaded=5, conflict=2))
    totals = reporter.totals()
    assert totals.counts == {"downloaded": 12, "failed": 1, "conflict": 2}
    assert (totals.listed, totals.filtered, totals.deleted, totals.retries) == (17, 2, 12, 4)
    assert totals.bytes_downloaded == 1200 and totals.bytes_by_status["conflict"] == 200
    assert totals.left_in_s3 == 3


def test_the_progress_line_counts_the_lanes_until_their_totals_come() -> None:
    reporter = Reporter(audit=None, out=io.StringIO(), err=io.StringIO())
    reporter.expect_lanes(2)
    assert not reporter._progress_figures().listing_done, "no lane has said anything yet"
    reporter.lane_progress(0, _figures(40, listing_done=True))
    assert not reporter._progress_figures().listing_done, "lane 1 has not said anything yet"
    reporter.lane_progress(1, _figures(30, listing_done=False))
    figures = reporter._progress_figures()
    assert (figures.done, figures.downloaded, figures.left_in_s3) == (70, 700, 2)
    assert figures.listed == 80 and not figures.listing_done
    reporter.lane_progress(1, _figures(35, listing_done=True))
    reporter.absorb(0, _totals(downloaded=50))
    figures = reporter._progress_figures()
    # lane 0's figures gave way to its totals (50 objects, 1 filtered); lane 1's still count
    assert figures.done == 51 + 35 and figures.listing_done


def test_a_lanes_lines_are_written_where_the_runs_are() -> None:
    out, err = io.StringIO(), io.StringIO()
    reporter = Reporter(audit=None, out=out, err=err)
    reporter.relay("err", "downloaded p/a -> /x/a (1 B, md5) deleted from S3")
    reporter.relay("out", "a summary line")
    assert err.getvalue() == "downloaded p/a -> /x/a (1 B, md5) deleted from S3\n"
    assert out.getvalue() == "a summary line\n"


# -- the audit log the lanes share -------------------------------------------------------------


def _outcome(key: str) -> Outcome:
    record = ObjectRecord(key, 3, "0" * 32, WHEN)
    return Outcome(record=record, status=Status.DOWNLOADED, deleted=True, local_path="/x")


def _append_lines(path: str, lane: int, count: int) -> None:
    log = AuditLog(Path(path), "run", "lake", shared=True)
    for n in range(count):
        log.write(_outcome(f"lane{lane}/{n:05d}" + "x" * (n % 700)))
    log.close()


def test_lanes_appending_at_once_leave_whole_lines(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    starter = AuditLog(path, "run", "lake")
    starter.open_now()
    starter.close()
    context = multiprocessing.get_context("fork")
    writers = [
        context.Process(target=_append_lines, args=(str(path), lane, 2000)) for lane in range(3)
    ]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(60)
        assert writer.exitcode == 0
    keys = [json.loads(line)["key"] for line in path.read_text().splitlines()]
    assert len(keys) == 6000 and len(set(keys)) == 6000


def test_the_torn_tail_is_cut_by_the_run_never_by_a_lane(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    whole = '{"key": "a"}\n'
    path.write_text(whole + '{"key": "half')
    lane = AuditLog(path, "run", "lake", shared=True)
    lane.write(_outcome("from a lane"))
    lane.close()
    assert path.read_text().startswith(whole + '{"key": "half{')  # left alone
    path.write_text(whole + '{"key": "half')
    run = AuditLog(path, "run", "lake")
    run.open_now()
    run.close()
    assert path.read_text() == whole
    assert os.path.getsize(path) == len(whole)


def test_the_look_at_the_first_page_costs_a_run_in_one_process_no_request() -> None:
    with mock_aws():
        client = new_client()
        for n in range(LANES_FROM + 5):
            client.put_object(Bucket=BUCKET, Key=f"{PREFIX}{n:05d}", Body=b"x")
        sent: list[str] = []
        client.meta.events.register("before-call.s3.ListObjectsV2", lambda **_: sent.append("list"))
        settings = drain_settings(Path("/nonexistent"))
        look = FirstPage(client, settings, RetryPolicy(max_attempts=1))
        assert len(look()) == LANES_FROM and len(look()) == LANES_FROM
        assert sent == ["list"], "looked at once"
        feed = look.feed(settings.bucket, settings.prefix)
        assert feed is not None
        keys = [
            r.key
            for page in feed.pages(client, RetryPolicy(), threading.Event(), None)
            for r in page
        ]
        assert len(keys) == LANES_FROM + 5 and len(set(keys)) == LANES_FROM + 5
        assert sent == ["list", "list"], "the run lists on from the page looked at"


def test_the_pages_after_the_first_go_as_the_run_sends_them() -> None:
    with mock_aws():
        client = new_client()
        for n in range(2 * LANES_FROM + 5):
            client.put_object(Bucket=BUCKET, Key=f"{PREFIX}{n:05d}", Body=b"x")
        settings = drain_settings(Path("/nonexistent"))
        look = FirstPage(client, settings, RetryPolicy(max_attempts=1))
        assert len(look()) == LANES_FROM
        tokens: list[str] = []

        def direct(**params: Any) -> Any:  # the run's direct listing, standing in
            tokens.append(params["ContinuationToken"])
            return client.list_objects_v2(**params)

        feed = look.feed(settings.bucket, settings.prefix)
        assert feed is not None
        pages = list(feed.pages(client, RetryPolicy(), threading.Event(), direct))
        assert [len(page) for page in pages] == [LANES_FROM, LANES_FROM, 5]
        assert len(tokens) == 2, "every page after the first, and only those"
