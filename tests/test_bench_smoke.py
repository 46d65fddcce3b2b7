"""The bench harness keeps working: a smoke run measures, counts and verifies every contender,
and a contender with a wrong result is caught. No timing is asserted: a benchmark is not a test.
The wan link is the exception, and only where physics decides: a relay that delays and caps
can be slower than asked for on a busy machine, but never faster.

Only s3drain and the naive loop take part, so CI needs neither rclone, s5cmd nor the AWS CLI.
The `watch` scenario runs on moto at its smoke size (its trickle is 5 s; about 16 s in all).
The wan scenarios need no privileges: their link is a relay process on loopback. SeaweedFS
takes part where `make bench-tools` installed it; its counting and the launcher's memory of a
process tree are checked without it.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import socket
import sys
import threading
import time
from pathlib import Path

import pytest

from benchmarks import report, report_watch
from benchmarks.child import run_child
from benchmarks.config import BenchConfig
from benchmarks.contenders import NAIVE, S3DRAIN, Contender, RunContext, naive_command, search_path
from benchmarks.linkcheck import ZeroSource, check_link
from benchmarks.results import CEILING, CEILING_NAME, FAILED, OK, WRONG, Row, best_peer
from benchmarks.run import BenchResult, run_bench
from benchmarks.scenarios import FULL, MIB, MOTO_SCENARIOS, SMOKE, TIMES
from benchmarks.seaweed import locate, parse_request_counts
from benchmarks.servers import count_log_lines, count_sqs_lines
from benchmarks.targets import on_disk_checks, watch_checks
from benchmarks.wan import Relay
from benchmarks.watch import EVENTS, TRICKLE, s3_event_body
from s3drain.events.messages import ObjectEvent, parse_message

WEED = locate(search_path(os.environ.get("PATH", "")))
# The scenarios every contender drains; `watch` runs s3drain's watcher and its plain drain.
DRAIN_SCENARIOS = tuple(name for name in MOTO_SCENARIOS if name != "watch")


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> BenchResult:
    config = BenchConfig(
        scenarios=tuple(SMOKE[name] for name in MOTO_SCENARIOS),
        contenders=(S3DRAIN, NAIVE),
        workdir=tmp_path_factory.mktemp("bench"),
        timeout=120.0,
        ceiling_levels=(4,),
    )
    return run_bench(config, command="pytest")


def _rows(result: BenchResult, scenario: str) -> dict[str, Row]:
    return {row.contender: row for row in result.rows if row.scenario.name == scenario}


@pytest.mark.parametrize("scenario", DRAIN_SCENARIOS)
def test_every_scenario_has_a_ceiling_and_verified_contenders(
    smoke: BenchResult, scenario: str
) -> None:
    rows = _rows(smoke, scenario)
    assert list(rows) == [CEILING_NAME, "s3drain", "naive"]
    ceiling = rows[CEILING_NAME]
    assert ceiling.status == CEILING
    assert (ceiling.objects_per_second or 0) > 0
    for name in ("s3drain", "naive"):
        row = rows[name]
        assert row.status == OK, row.note
        assert (row.objects_per_second or 0) > 0
        assert (row.mib_per_second or 0) > 0
        assert row.cpu_per_1000_objects is not None and row.cpu_per_1000_objects > 0
        # A bare interpreter is a few MiB; a drain of these sizes stays far below 1 GiB.
        assert row.peak_rss_mib is not None and 5 < row.peak_rss_mib < 1024
        assert row.peak_rss_sum_mib is not None and row.peak_rss_sum_mib >= row.peak_rss_mib
        # The server is ours: its CPU during the run is measured.
        assert row.server_cpu_seconds is not None and row.server_cpu_seconds >= 0
        assert (row.cpu_per_gib is None) == row.scenario.small_objects
        # The relay's own CPU is reported exactly where a relay was in the path.
        assert (row.relay_cpu_seconds is not None) == (row.scenario.link is not None)
        # Timed until its bytes were on disk too: the run, then the sync after it.
        assert row.sync_seconds is not None and row.sync_seconds >= 0
        assert row.on_disk_seconds == pytest.approx((row.seconds or 0) + row.sync_seconds)
        plain = row.objects_per_second if row.scenario.small_objects else row.mib_per_second
        assert plain is not None and row.on_disk_rate is not None
        assert 0 < row.on_disk_rate <= plain
    assert ceiling.sync_seconds is None and ceiling.on_disk_rate is None


@pytest.mark.parametrize("scenario", DRAIN_SCENARIOS)
def test_requests_are_counted_by_type(smoke: BenchResult, scenario: str) -> None:
    for name in ("s3drain", "naive"):
        row = _rows(smoke, scenario)[name]
        counts = dict(row.requests or ())
        objects = row.scenario.count
        assert counts.get("GetObject", 0) >= objects
        assert counts.get("DeleteObject", 0) + counts.get("DeleteObjects", 0) >= 1
        assert counts.get("ListObjectsV2", 0) >= 1
        assert (row.requests_per_object or 0) >= 1


def test_results_markdown_has_table_targets_and_versions(smoke: BenchResult) -> None:
    text = report.results_markdown(smoke.rows, smoke.info)
    assert "| small | moto-aws-like | s3drain | ok |" in text
    assert "| latency | moto-aws-like | naive | ok |" in text
    assert "Issue 19's targets for s3drain" in text
    assert "**s3drain**: s3drain" in text  # its --version output
    assert "**moto-aws-like**: moto server" in text
    assert "## The links" in text
    assert "| large-wan | moto-aws-like | s3drain | ok |" in text
    assert "## `s3drain watch` on S3 events" in text
    assert "## Issue 20's targets for `s3drain watch`" in text
    assert "| on disk: rate (sync after) |" in text
    # Only the fast server's rows have that section (this run has none of them).
    assert "## The same comparisons until the bytes are on disk" not in text


def test_the_watch_scenario_times_each_upload_and_both_drains(smoke: BenchResult) -> None:
    rows = _rows(smoke, "watch")
    assert list(rows) == [TRICKLE, EVENTS, "s3drain"]
    for row in rows.values():
        assert row.status == OK, row.note
    trickle = rows[TRICKLE].watch
    assert trickle is not None
    shape = SMOKE["watch"].trickle
    assert shape is not None
    # Every upload of the trickle was timed to its file; the warm-up object is not in them.
    assert len(trickle.latencies) == shape.count and trickle.missing == 0
    assert all(0 <= latency < 30 for latency in trickle.latencies)
    assert trickle.latency(0.5) is not None and trickle.own_p95 is not None
    # The watcher's requests only: the bench's uploads are not in the trickle's S3 counts,
    # nor its own SQS calls in the SQS counts.
    counts = dict(rows[TRICKLE].requests or ())
    assert "PutObject" not in counts and counts["GetObject"] >= shape.count + 1
    sqs = dict(trickle.sqs_requests or ())
    assert sqs.get("ReceiveMessage", 0) >= 1 and "SendMessage" not in sqs
    assert "PurgeQueue" not in sqs and "GetQueueAttributes" not in sqs
    events = rows[EVENTS]
    assert events.watch is not None and events.objects_per_second
    assert dict(events.requests or ())["GetObject"] >= events.scenario.count
    assert "ListObjectsV2" not in dict(events.requests or ())  # --reconcile 0: no listing
    sqs = dict(events.watch.sqs_requests or ())
    # At most 10 messages a receive, 10 a delete: 20 messages take at least 2 of each.
    assert sqs["ReceiveMessage"] >= 2 and sqs["DeleteMessageBatch"] >= 2
    assert events.watch.sqs_on_s3_server and events.server_ms_per_request is not None
    assert events.watch.last_file_seconds is not None
    assert 0 < events.watch.last_file_seconds < (events.seconds or 0)
    assert "ListObjectsV2" in dict(rows["s3drain"].requests or ())
    tables = report_watch.watch_tables(smoke.rows)
    assert tables is not None and "| moto-aws-like | 20 |" in tables
    checks = watch_checks(smoke.rows)
    assert len(checks) == 3 and all(check.verdict != "not measured" for check in checks)


def test_the_event_the_bench_sends_reads_as_s3s_own() -> None:
    body = s3_event_body(
        "lake",
        "in/a b+c/ü.csv",
        size=4096,
        etag='"0123abcd"',
        sequencer="000000000000002A",
        region="us-east-1",
        when=1_800_000_000.25,
    )
    parsed = parse_message(body)
    assert isinstance(parsed, tuple) and len(parsed) == 1
    event = parsed[0]
    assert isinstance(event, ObjectEvent)
    assert (event.bucket, event.key, event.action, event.route) == (
        "lake",
        "in/a b+c/ü.csv",
        "created",
        "s3",
    )
    assert (event.size, event.etag, event.sequencer) == (4096, "0123abcd", "000000000000002A")
    assert event.event_time is not None
    assert event.event_time.timestamp() == 1_800_000_000.25


def test_sqs_requests_are_counted_by_action_and_client() -> None:
    log = "\n".join(
        [
            "sqs-request ReceiveMessage s3drain",
            '127.0.0.1 - - [x] "POST / HTTP/1.1" 200 -',
            "sqs-request ReceiveMessage s3drain",
            "sqs-request DeleteMessageBatch s3drain",
            "sqs-request SendMessage other",
            '127.0.0.1 - - [x] "GET /b/p/c HTTP/1.1" 200 -',
        ]
    )
    assert count_sqs_lines(log) == {"ReceiveMessage": 2, "DeleteMessageBatch": 1}
    assert count_sqs_lines(log, None)["SendMessage"] == 1
    # SQS's POSTs to / are not S3 requests.
    assert count_log_lines(log) == {"GetObject": 1}


def test_the_wan_link_never_beats_its_delay_or_its_cap() -> None:
    delay, rate = 0.01, 8 * MIB
    check = check_link(delay, rate, stream_bytes=4 * MIB)
    assert check.open_connection >= 2 * delay
    # A handshake round trip, then the request's.
    assert check.new_connection >= 4 * delay
    assert [result.streams for result in check.streams] == [1, 4, 16, 32]
    for result in check.streams:
        assert len(result.per_stream) == result.streams
        # TCP pacing can let the first few packets out unpaced; not a quarter of 4 MiB.
        assert max(result.per_stream) <= 1.25 * rate


def _narrow(ctx: RunContext) -> RunContext:
    return dataclasses.replace(ctx, prefix=ctx.prefix + "d00/", dest=ctx.dest / "d00")


def _leaves_objects(exe: str, ctx: RunContext) -> list[str]:
    """Drains one folder of the prefix correctly and leaves the others in S3."""
    return naive_command(exe, _narrow(ctx))


def _corrupts_a_file(exe: str, ctx: RunContext) -> list[str]:
    """Drains everything, then appends a byte to one downloaded file."""
    victim = ctx.dest / "d00" / "obj-00000.bin"
    script = f"{shlex.join(naive_command(exe, ctx))} && printf x >> {shlex.quote(str(victim))}"
    return ["sh", "-c", script]


def _gives_up(exe: str, ctx: RunContext) -> list[str]:
    return [exe, "-c", "raise SystemExit(3)"]


def test_a_wrong_result_is_marked_wrong_and_not_timed(tmp_path: Path) -> None:
    wrong = (
        Contender("leaves-objects", None, "test", _leaves_objects),
        Contender("corrupts-a-file", None, "test", _corrupts_a_file),
        Contender("gives-up", None, "test", _gives_up),
    )
    config = BenchConfig(
        scenarios=(SMOKE["small"],),
        contenders=wrong,
        workdir=tmp_path,
        timeout=60.0,
        with_ceiling=False,
    )
    rows = {row.contender: row for row in run_bench(config, command="pytest").rows}
    assert rows["leaves-objects"].status == WRONG
    assert "left in the bucket" in rows["leaves-objects"].note
    assert "missing" in rows["leaves-objects"].note
    assert rows["corrupts-a-file"].status == WRONG
    assert "wrong bytes: d00/obj-00000.bin" in rows["corrupts-a-file"].note
    assert rows["gives-up"].status == FAILED
    assert "exit 3" in rows["gives-up"].note
    for row in rows.values():
        assert row.objects_per_second is None
        assert row.mib_per_second is None
        assert row.cpu_per_1000_objects is None
        assert row.on_disk_rate is None
    table = report.table(list(rows.values()))
    assert "| small | moto-aws-like | corrupts-a-file | wrong | — | — | — |" in table


def test_the_on_disk_comparison_takes_the_peer_first_on_disk() -> None:
    """s5cmd is first to exit, rclone first with its bytes on disk: the plain target compares
    with s5cmd, the on-disk one with rclone."""
    large = FULL["large"]

    def row(contender: str, seconds: float, sync: float) -> Row:
        return Row(large, contender, OK, server="seaweedfs", seconds=seconds, sync_seconds=sync)

    peers = [row("s5cmd", 1.0, 2.5), row("rclone", 2.0, 0.5)]
    assert best_peer(peers, "large", "seaweedfs") == peers[0]
    assert best_peer(peers, "large", "seaweedfs", on_disk=True) == peers[1]
    mib = large.total_bytes / MIB
    slower = on_disk_checks([row("s3drain", 3.0, 0.01), *peers])
    assert [check.target for check in slower] == [
        f"large on seaweedfs, until on disk: MiB/s ≥ 1{TIMES} the best peer"
    ]
    assert f"needs ≥ {mib / 2.5:,.0f}: 1{TIMES} rclone" in slower[0].measured
    assert slower[0].verdict.startswith("**missed**: 83 %")  # 2.5 s against 3.01
    assert on_disk_checks([row("s3drain", 2.0, 0.01), *peers])[0].verdict == "met"


def test_request_log_lines_are_counted_as_s3_operations() -> None:
    log = "\n".join(
        [
            '127.0.0.1 - - [23/Nov/2026 19:45:15] "GET /moto-api/ HTTP/1.1" 200 -',
            '127.0.0.1 - - [x] "GET /b?list-type=2&prefix=p/ HTTP/1.1" 200 -',
            '127.0.0.1 - - [x] "\x1b[35m\x1b[1mGET /b/p/a%20b HTTP/1.1\x1b[0m" 206 -',
            '127.0.0.1 - - [x] "GET /b/p/c HTTP/1.1" 200 -',
            '127.0.0.1 - - [x] "POST /b?delete HTTP/1.1" 200 -',
            '127.0.0.1 - - [x] "\x1b[33mHEAD /b/p HTTP/1.1\x1b[0m" 404 -',
            " * Running on http://127.0.0.1:5000",
        ]
    )
    assert count_log_lines(log) == {
        "ListObjectsV2": 1,
        "GetObject": 2,
        "DeleteObjects": 1,
        "HeadObject": 1,
    }


def test_readme_block_is_replaced_between_its_markers(smoke: BenchResult, tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n{report.README_BEGIN}\nold\n{report.README_END}\n\n## After\n")
    assert report.replace_readme_block(readme, report.readme_block(smoke.rows, smoke.info))
    text = readme.read_text()
    assert "old" not in text
    assert "| small | moto-aws-like | **s3drain** |" in text
    assert text.endswith(f"{report.README_END}\n\n## After\n")
    readme.write_text("no markers\n")
    assert not report.replace_readme_block(readme, "block")


def test_the_wan_relay_lets_go_of_a_client_that_leaves_mid_body() -> None:
    source = ZeroSource()
    relay = Relay(("127.0.0.1", source.port), delay=0.01, rate=16 * MIB)
    threading.Thread(target=relay.serve_forever, daemon=True).start()
    try:
        for _ in range(3):
            with socket.create_connection(("127.0.0.1", relay.port)) as client:
                client.sendall(b"%d\n" % (256 * MIB))
                assert client.recv(65536)
        deadline = time.monotonic() + 10
        while relay.stats.open_connections and time.monotonic() < deadline:
            time.sleep(0.05)
        assert relay.stats.connections == 3
        assert relay.stats.open_connections == 0
    finally:
        relay.close()
        source.close()


def test_seaweedfs_metrics_are_counted_by_class() -> None:
    # SeaweedFS 4.48's metrics after one PUT, two GETs, a HEAD (all "GET"), a listing, a
    # DeleteObjects and a refused DeleteObject with If-Match (both "DELETE").
    text = "\n".join(
        [
            "# HELP SeaweedFS_s3_request_total Counter of s3 requests.",
            "# TYPE SeaweedFS_s3_request_total counter",
            'SeaweedFS_s3_request_total{bucket="b",code="200",type="GET"} 2',
            'SeaweedFS_s3_request_total{bucket="b",code="206",type="GET"} 1',
            'SeaweedFS_s3_request_total{bucket="b",code="200",type="LIST"} 1',
            'SeaweedFS_s3_request_total{bucket="b",code="200",type="PUT"} 1',
            'SeaweedFS_s3_request_total{bucket="b",code="200",type="DELETE"} 1',
            'SeaweedFS_s3_request_total{bucket="b",code="412",type="DELETE"} 1',
            'SeaweedFS_s3_request_total{bucket="",code="403",type="GET"} 1',
            'SeaweedFS_s3_request_seconds_count{bucket="b",type="GET"} 3',
            'SeaweedFS_s3_deleted_objects{bucket="b"} 1000',
        ]
    )
    assert parse_request_counts(text) == {"GET": 4, "LIST": 1, "PUT": 1, "DELETE": 2}


# A parent and the child it forks each touch memory of their own (after the fork, so nothing
# is shared): wait4 would report the larger of the two, the tree's sum is both.
_FORKER = """
import os, time
pid = os.fork()
mine = bytearray((60 if pid == 0 else 40) << 20)
for i in range(0, len(mine), 4096):
    mine[i] = 1
time.sleep(0.6)
if pid == 0:
    os._exit(0)
os.waitpid(pid, 0)
"""


def test_the_launcher_reports_a_process_tree_per_process_and_in_all(tmp_path: Path) -> None:
    result = run_child(
        [sys.executable, "-I", "-S", "-c", _FORKER],
        env={},
        cwd=tmp_path,
        stdout=tmp_path / "stdout.txt",
        stderr=tmp_path / "stderr.txt",
        timeout=60.0,
        cpus="0",
    )
    assert result.exit_code == 0
    assert result.processes == 2
    one, total = result.peak_rss_bytes / MIB, result.peak_rss_sum_bytes / MIB
    # The child: 60 MiB and an interpreter's few; the tree: 100 MiB and two interpreters.
    assert 60 <= one < 90
    assert 100 <= total < 130


@pytest.mark.skipif(WEED is None, reason="SeaweedFS's weed is not installed (make bench-tools)")
def test_a_smoke_run_on_seaweedfs_counts_requests_and_server_cpu(tmp_path: Path) -> None:
    config = BenchConfig(
        scenarios=(SMOKE["small"], SMOKE["scaling"]),
        contenders=(S3DRAIN, NAIVE),
        workdir=tmp_path,
        servers=("seaweedfs",),
        timeout=120.0,
        ceiling_levels=(4,),
    )
    result = run_bench(config, command="pytest")
    rows = {(row.scenario.name, row.label): row for row in result.rows}
    assert rows[("small", CEILING_NAME)].status == CEILING
    for row in (rows[("small", "s3drain")], rows[("small", "naive")]):
        assert row.status == OK, row.note
        counts = dict(row.requests or ())
        assert counts["GET"] >= row.scenario.count
        assert counts["DELETE"] >= 1 and counts["LIST"] >= 1
        assert row.server_cpu_seconds is not None and row.server_cpu_seconds > 0
    # s3drain's deletes are batched: SeaweedFS honours DeleteObjects' per-key ETag.
    assert dict(rows[("small", "s3drain")].requests or ())["DELETE"] < 5
    # The scaling runs: s3drain on core 1, then on cores 0-1 (naive is not one of them).
    assert rows[("scaling", "s3drain (core 1)")].status == OK
    assert rows[("scaling", "s3drain (cores 0-1)")].status == OK
    assert ("scaling", "naive (core 1)") not in rows
    text = report.results_markdown(result.rows, result.info)
    assert "## The same comparisons until the bytes are on disk" in text
    assert f"| small on seaweedfs, until on disk: obj/s ≥ 1{TIMES} the best peer | — |" in text


def test_a_smoke_run_on_the_memory_server_counts_by_operation_and_scales(tmp_path: Path) -> None:
    config = BenchConfig(
        scenarios=(SMOKE["small"], SMOKE["small-cloud"], SMOKE["scaling"]),
        contenders=(S3DRAIN, NAIVE),
        workdir=tmp_path,
        servers=("memory",),
        timeout=120.0,
        ceiling_levels=(4,),
    )
    result = run_bench(config, command="pytest")
    rows = {(row.scenario.name, row.label): row for row in result.rows}
    assert {row.server for row in result.rows} == {"memory"}
    for scenario in ("small", "small-cloud"):
        assert rows[(scenario, CEILING_NAME)].status == CEILING
        for name in ("s3drain", "naive"):
            row = rows[(scenario, name)]
            assert row.status == OK, row.note
            counts = dict(row.requests or ())
            assert counts["GetObject"] == row.scenario.count
            # Measured (50 objects can take less than one clock tick of this server's CPU).
            assert row.server_cpu_seconds is not None and row.server_cpu_seconds >= 0
        # s3drain's deletes are batched (the server honours DeleteObjects' per-key ETag); the
        # naive loop deletes each object.
        assert dict(rows[(scenario, "s3drain")].requests or ())["DeleteObjects"] < 5
        assert dict(rows[(scenario, "naive")].requests or ())["DeleteObject"] >= 50
    # The scaling runs: the server pinned apart, s3drain on core 1 and then on cores 0-1.
    assert rows[("scaling", "s3drain (core 1)")].status == OK
    assert rows[("scaling", "s3drain (cores 0-1)")].status == OK
    text = report.results_markdown(result.rows, result.info)
    assert "**memory**: the bench's in-memory S3 endpoint" in text
    assert "| memory | s3drain | " in text  # the scaling table, by server
    assert "| small on memory: obj/s ≥ 1.5" in text
    assert "| scaling on memory (server on core 0): cores 0-1 ≥ 1.6" in text
