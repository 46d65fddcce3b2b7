"""Issue 19's targets for s3drain, each met or missed: a report, never an assertion.

| scenario | target |
|---|---|
| small, fast server | ≥ 1.5x the best peer (rclone tuned, s5cmd default), ≤ 1.01 requests/object |
| small, `cloud` link on the fast server | ≥ 1.5x the best peer |
| client CPU per small object | ≤ 1.0x the best peer's |
| scaling 1 → 2 cores (server pinned apart) | ≥ 1.6x |
| small on moto (server-limited) | no loss against today |
| large and huge, fast server and `cloud` | ≥ 1.0x the best peer; `large-wan` ≥ 1.0x s5cmd |
| CPU-s per GiB | ≤ 1.25x s5cmd's |
| peak RSS, any scenario | ≤ 128 MiB per process, ≤ 256 MiB in all |
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from benchmarks.results import OK, PEERS, Row, best_peer, find
from benchmarks.scenarios import TIMES

FAST = "seaweedfs"
# The fast servers the small-object targets are judged on: SeaweedFS (a production server, which
# on two cores spends more per object than the contenders) and the bench's in-memory endpoint
# (which spends a fraction: the contenders' own costs decide). Big objects: SeaweedFS.
SMALL_FAST = ("seaweedfs", "memory")
MOTO_SERVERS = ("moto-aws-like", "moto")
# s3drain on moto-aws-like, small, in the RESULTS.md of 2026-11-29: "no loss against today".
TODAY_SMALL_ON_MOTO = 329.0
SCALING_CPUS = ("1", "0-1")
_DASH = "—"


@dataclass(frozen=True)
class Check:
    target: str
    measured: str
    verdict: str


def _rate(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def value_check(
    target: str,
    *,
    mine: float | None,
    needed: float | None,
    unit: str,
    basis: str,
    higher_is_better: bool = True,
) -> Check:
    if mine is None or needed is None:
        return Check(target, _DASH, "not measured")
    sign = "≥" if higher_is_better else "≤"
    measured = f"{_rate(mine)} {unit} (needs {sign} {_rate(needed)}: {basis})"
    met = mine >= needed if higher_is_better else mine <= needed
    if met:
        return Check(target, measured, "met")
    share = mine / needed if higher_is_better else needed / mine
    return Check(target, measured, f"**missed**: {100 * share:.0f} % of the target")


def _speed(
    rows: Sequence[Row],
    scenario: str,
    server: str,
    factor: float,
    small: bool,
    *,
    on_disk: bool = False,
) -> Check:
    """s3drain's speed against the best peer's; ``on_disk``: each until its bytes were on disk
    (s3drain fsyncs; its peers do not), which is not one of issue 19's targets."""
    unit = "obj/s" if small else "MiB/s"
    where = f"{scenario} on {server}" + (", until on disk" if on_disk else "")
    target = f"{where}: {unit} ≥ {factor:g}{TIMES} the best peer"
    mine = find(rows, scenario, "s3drain", server)
    peer = best_peer(rows, scenario, server, on_disk=on_disk)

    def speed(row: Row | None) -> float | None:
        if row is None:
            return None
        if on_disk:
            return row.on_disk_rate
        return row.objects_per_second if small else row.mib_per_second

    peer_speed = speed(peer)
    return value_check(
        target,
        mine=speed(mine),
        needed=factor * peer_speed if peer_speed else None,
        unit=unit,
        basis=f"{factor:g}{TIMES} {peer.contender}" if peer else "no peer",
    )


def _moto(rows: Sequence[Row]) -> str:
    servers = {row.server for row in rows}
    return next((name for name in MOTO_SERVERS if name in servers), MOTO_SERVERS[0])


def _requests(rows: Sequence[Row], server: str) -> Check:
    mine = find(rows, "small", "s3drain", server)
    return value_check(
        f"small on {server}: ≤ 1.01 S3 requests per object",
        mine=mine.requests_per_object if mine and mine.status == OK else None,
        needed=1.01,
        unit="req/obj",
        basis="the budget",
        higher_is_better=False,
    )


def _client_cpu(rows: Sequence[Row], server: str) -> Check:
    target = f"small on {server}: client CPU per object ≤ 1.0{TIMES} the best peer's"
    mine = find(rows, "small", "s3drain", server)
    peers = [
        row
        for name in PEERS
        if (row := find(rows, "small", name, server)) and row.cpu_per_1000_objects is not None
    ]
    if mine is None or mine.cpu_per_1000_objects is None or not peers:
        return Check(target, _DASH, "not measured")
    lowest = min(peers, key=lambda row: row.cpu_per_1000_objects or 0.0)
    return value_check(
        target,
        mine=mine.cpu_per_1000_objects,
        needed=lowest.cpu_per_1000_objects,
        unit="ms/obj",
        basis=f"{lowest.contender}, the lowest of the peers",
        higher_is_better=False,
    )


def scaling_ratio(rows: Sequence[Row], contender: str, server: str = FAST) -> float | None:
    one, two = (find(rows, "scaling", contender, server, cpus) for cpus in SCALING_CPUS)
    if not (one and two and one.objects_per_second and two.objects_per_second):
        return None
    return two.objects_per_second / one.objects_per_second


def _scaling(rows: Sequence[Row], server: str) -> Check:
    return value_check(
        f"scaling on {server} (server on core 0): cores 0-1 ≥ 1.6{TIMES} core 1",
        mine=scaling_ratio(rows, "s3drain", server),
        needed=1.6,
        unit=TIMES,
        basis="the target",
    )


def _moto_small(rows: Sequence[Row]) -> Check:
    moto = _moto(rows)
    mine = find(rows, "small", "s3drain", moto)
    return value_check(
        f"small on {moto}: no loss against today",
        mine=mine.objects_per_second if mine else None,
        needed=TODAY_SMALL_ON_MOTO,
        unit="obj/s",
        basis="2026-11-29's RESULTS.md",
    )


def _cpu_per_gib(rows: Sequence[Row], scenario: str, server: str) -> Check:
    mine, s5cmd = (find(rows, scenario, name, server) for name in ("s3drain", "s5cmd"))
    return value_check(
        f"{scenario} on {server}: CPU-s per GiB ≤ 1.25{TIMES} s5cmd's",
        mine=mine.cpu_per_gib if mine else None,
        needed=1.25 * s5cmd.cpu_per_gib if s5cmd and s5cmd.cpu_per_gib else None,
        unit="CPU-s/GiB",
        basis=f"1.25{TIMES} s5cmd",
        higher_is_better=False,
    )


def _memory(rows: Sequence[Row]) -> list[Check]:
    mine = [row for row in rows if row.contender == "s3drain" and row.status == OK]
    checks = []
    for what, budget, attribute in (
        ("per process", 128.0, "peak_rss_mib"),
        ("in all (the process tree's sum)", 256.0, "peak_rss_sum_mib"),
    ):
        measured = [(getattr(row, attribute), row) for row in mine]
        present = [(value, row) for value, row in measured if value is not None]
        worst = max(present, key=lambda item: item[0], default=None)
        checks.append(
            value_check(
                f"peak RSS {what}, any scenario ≤ {budget:.0f} MiB",
                mine=worst[0] if worst else None,
                needed=budget,
                unit="MiB",
                basis=f"the budget; worst: {worst[1].scenario.name} on {worst[1].server}"
                if worst
                else "the budget",
                higher_is_better=False,
            )
        )
    return checks


def _small_servers(rows: Sequence[Row]) -> list[str]:
    """The fast servers this run has rows of (SeaweedFS alone when it has none: its targets
    then read "not measured")."""
    present = {row.server for row in rows}
    return [name for name in SMALL_FAST if name in present] or [FAST]


def target_checks(rows: Sequence[Row]) -> list[Check]:
    """Every target of issue 19 that this run's rows can answer."""
    moto = _moto(rows)
    checks = []
    for server in _small_servers(rows):
        checks += [
            _speed(rows, "small", server, 1.5, small=True),
            _requests(rows, server),
            _speed(rows, "small-cloud", server, 1.5, small=True),
            _client_cpu(rows, server),
            _scaling(rows, server),
        ]
    checks.append(_moto_small(rows))
    for scenario in ("large", "huge", "large-cloud", "huge-cloud"):
        checks.append(_speed(rows, scenario, FAST, 1.0, small=False))
    wan = find(rows, "large-wan", "s3drain", moto)
    s5cmd = find(rows, "large-wan", "s5cmd", moto)
    checks.append(
        value_check(
            f"large-wan on {moto}: MiB/s ≥ 1.0{TIMES} s5cmd",
            mine=wan.mib_per_second if wan else None,
            needed=s5cmd.mib_per_second if s5cmd else None,
            unit="MiB/s",
            basis="s5cmd",
        )
    )
    big = ("large", "huge", "large-cloud", "huge-cloud", "large-wan", "huge-wan")
    servers = sorted({row.server for row in rows}, key=lambda name: name != FAST)
    checks += [
        _cpu_per_gib(rows, scenario, server)
        for server in servers
        for scenario in big
        if find(rows, scenario, "s3drain", server)
    ]
    return checks + _memory(rows)


# The scenarios of issue 19's speed comparisons on the fast server: are objects the work?
_COMPARED = (
    ("small", True),
    ("small-cloud", True),
    ("large", False),
    ("huge", False),
    ("large-cloud", False),
    ("huge-cloud", False),
)


def on_disk_checks(rows: Sequence[Row]) -> list[Check]:
    """The same speed comparisons at the same promise for all: 1x the best peer on disk."""
    return [
        _speed(rows, scenario, server, 1.0, small, on_disk=True)
        for server in _small_servers(rows)
        for scenario, small in _COMPARED
        if find(rows, scenario, "s3drain", server)
    ]


def checks_table(checks: Sequence[Check]) -> str:
    lines = ["| target | s3drain measured | verdict |", "|---|---|---|"]
    lines += [f"| {_cell(c.target)} | {_cell(c.measured)} | {c.verdict} |" for c in checks]
    return "\n".join(lines)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


# --- issue 20: `s3drain watch` (the `watch` scenario, benchmarks/watch.py) ---------------------

WATCH = "watch"
WATCH_TRICKLE = "s3drain watch (trickle)"
WATCH_EVENTS = "s3drain watch --once"
WATCH_LISTING = "s3drain"
WATCH_P95_SECONDS = 2.0
WATCH_RATIO = 0.90
WATCH_S3_REQUESTS = 1.1


def watch_servers(rows: Sequence[Row]) -> list[str]:
    """The servers the watch scenario ran on, in the order of the rows."""
    names = (WATCH_TRICKLE, WATCH_EVENTS, WATCH_LISTING)
    return list(
        dict.fromkeys(
            row.server for row in rows if row.scenario.name == WATCH and row.contender in names
        )
    )


def watch_ratio(rows: Sequence[Row], server: str) -> float | None:
    """objects/s of `watch --once` on the burst of events over the plain drain's."""
    events, listing = (find(rows, WATCH, name, server) for name in (WATCH_EVENTS, WATCH_LISTING))
    if not (events and listing and events.objects_per_second and listing.objects_per_second):
        return None
    return events.objects_per_second / listing.objects_per_second


def watch_checks(rows: Sequence[Row]) -> list[Check]:
    """Issue 20's targets, server by server."""
    checks = []
    for server in watch_servers(rows):
        trickle = find(rows, WATCH, WATCH_TRICKLE, server)
        p95 = (
            trickle.watch.latency(0.95)
            if trickle and trickle.status == OK and trickle.watch
            else None
        )
        checks.append(
            value_check(
                f"watch on {server}: upload to file p95 ≤ {WATCH_P95_SECONDS:g} s",
                mine=p95,
                needed=WATCH_P95_SECONDS,
                unit="s",
                basis="the target",
                higher_is_better=False,
            )
        )
        listing = find(rows, WATCH, WATCH_LISTING, server)
        checks.append(
            value_check(
                f"watch on {server}: `watch --once` on a burst of events ≥ {WATCH_RATIO:g}"
                f"{TIMES} a plain drain's obj/s",
                mine=watch_ratio(rows, server),
                needed=WATCH_RATIO if listing and listing.objects_per_second else None,
                unit=TIMES,
                basis=f"the plain drain's {_rate(listing.objects_per_second)} obj/s"
                if listing and listing.objects_per_second
                else "the target",
            )
        )
        events = find(rows, WATCH, WATCH_EVENTS, server)
        checks.append(
            value_check(
                f"watch on {server}: `watch --once` ≤ {WATCH_S3_REQUESTS:g} S3 requests per object",
                mine=events.requests_per_object if events and events.status == OK else None,
                needed=WATCH_S3_REQUESTS,
                unit="req/obj",
                basis="the target",
                higher_is_better=False,
            )
        )
    return checks
