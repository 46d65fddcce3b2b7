"""The bench harness keeps working: a smoke run measures, counts and verifies every contender,
and a contender with a wrong result is caught. No timing is asserted: a benchmark is not a test.
The wan link is the exception, and only where physics decides: a relay that delays and caps
can be slower than asked for on a busy machine, but never faster.

Only s3drain and the naive loop take part, so CI needs neither rclone, s5cmd nor the AWS CLI.
The wan scenarios need no privileges: their link is a relay process on loopback.
"""

from __future__ import annotations

import dataclasses
import shlex
import socket
import threading
import time
from pathlib import Path

import pytest

from benchmarks import report
from benchmarks.contenders import NAIVE, S3DRAIN, Contender, RunContext, naive_command
from benchmarks.results import CEILING, CEILING_NAME, FAILED, OK, WRONG, Row
from benchmarks.run import BenchConfig, BenchResult, run_bench
from benchmarks.scenarios import MIB, SMOKE
from benchmarks.servers import count_log_lines
from benchmarks.wan import Relay, ZeroSource, check_link


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> BenchResult:
    config = BenchConfig(
        scenarios=tuple(SMOKE.values()),
        contenders=(S3DRAIN, NAIVE),
        workdir=tmp_path_factory.mktemp("bench"),
        timeout=120.0,
        ceiling_levels=(4,),
    )
    return run_bench(config, command="pytest")


def _rows(result: BenchResult, scenario: str) -> dict[str, Row]:
    return {row.contender: row for row in result.rows if row.scenario.name == scenario}


@pytest.mark.parametrize("scenario", list(SMOKE))
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
        assert (row.cpu_per_gib is None) == row.scenario.small_objects
        # The relay's own CPU is reported exactly where a relay was in the path.
        assert (row.relay_cpu_seconds is not None) == (row.scenario.link is not None)


@pytest.mark.parametrize("scenario", list(SMOKE))
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
    assert "| small | s3drain | ok |" in text
    assert "| latency | naive | ok |" in text
    assert "The issue's targets for s3drain" in text
    assert "**s3drain**: s3drain" in text  # its --version output
    assert "**server**: moto" in text
    assert "## The wan link" in text
    assert "| large-wan | s3drain | ok |" in text


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
    table = report.table(list(rows.values()))
    assert "| small | corrupts-a-file | wrong | — | — |" in table


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
    assert "| small | **s3drain** |" in text
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
