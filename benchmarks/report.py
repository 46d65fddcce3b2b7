"""The results table (scenario, server, contender), RESULTS.md and the README block."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from benchmarks.report_cells import DASH, line, rate, requests, server_cpu
from benchmarks.report_text import COLUMN_NOTES, ON_DISK_INTRO
from benchmarks.report_watch import watch_tables
from benchmarks.results import CEILING, CEILING_NAME, NOT_INSTALLED, OK, Row, find
from benchmarks.scenarios import TIMES, Scenario
from benchmarks.targets import (
    SCALING_CPUS,
    checks_table,
    on_disk_checks,
    scaling_ratio,
    target_checks,
    watch_checks,
)

README_BEGIN = "<!-- bench:begin (written by `make bench`) -->"
README_END = "<!-- bench:end -->"

_COLUMNS = (
    "scenario",
    "server",
    "contender",
    "result",
    "objects/s",
    "MiB/s",
    "on disk: rate (sync after)",
    "% of ceiling",
    "S3 requests/object (by type)",
    "peak RSS MiB: 1 process / all",
    "CPU s/1,000 obj",
    "CPU s/GiB",
    "server CPU ms/request (/object)",
    "notes",
)


@dataclass(frozen=True)
class RunInfo:
    """What RESULTS.md says about the run besides the rows."""

    date: str
    command: str
    # Short name -> what it is; and how each counts requests.
    servers: Mapping[str, str]
    counting: Mapping[str, str]
    versions: Mapping[str, str]
    settings: Mapping[str, str]
    machine: Mapping[str, str]
    scenarios: Sequence[Scenario]
    # How each link was measured before its scenarios ran; None when none ran.
    link_check: str | None = None
    # The file system the contenders wrote to, and why.
    destination: str = ""


# --- numbers -------------------------------------------------------------------------------


def _on_disk(row: Row, *, sync: bool = True) -> str:
    """Objects/s or MiB/s until the bytes are on disk, and the sync that got them there."""
    speed = row.on_disk_rate
    if speed is None or row.sync_seconds is None:
        return DASH
    unit = "obj/s" if row.scenario.small_objects else "MiB/s"
    return f"{rate(speed)} {unit}" + (f" (+{row.sync_seconds:.2f} s)" if sync else "")


def _percent_of_ceiling(row: Row, rows: Sequence[Row]) -> str:
    ceiling = find(rows, row.scenario.name, CEILING_NAME, row.server)
    if row.status == CEILING or ceiling is None or not ceiling.timed or not row.timed:
        return DASH
    assert row.seconds is not None and ceiling.seconds is not None
    return f"{100 * ceiling.seconds / row.seconds:.0f} %"


def _result(row: Row) -> str:
    return f"{row.status} (median of {row.runs})" if row.runs > 1 else row.status


def _memory(row: Row) -> str:
    one, total = row.peak_rss_mib, row.peak_rss_sum_mib
    if one is None:
        return DASH
    processes = f" ({row.processes} processes)" if row.processes > 1 else ""
    return f"{rate(one)} / {rate(total)}{processes}"


def _notes(row: Row) -> str:
    notes = [row.note] if row.note else []
    if row.relay_cpu_seconds is not None and row.seconds:
        share = 100 * row.relay_cpu_seconds / row.seconds
        notes.append(f"link relay {row.relay_cpu_seconds:.2f} CPU-s ({share:.0f} % of a core)")
    if row.server_cpu_seconds is not None and row.seconds and row.status != CEILING:
        share = 100 * row.server_cpu_seconds / row.seconds
        notes.append(f"server {row.server_cpu_seconds:.2f} CPU-s ({share:.0f} % of a core)")
    return "; ".join(notes)


# --- the tables ------------------------------------------------------------------------------


def table(rows: Sequence[Row]) -> str:
    lines = ["| " + " | ".join(_COLUMNS) + " |", "|" + "---|" * len(_COLUMNS)]
    for row in rows:
        cells = (
            row.scenario.name,
            row.server,
            row.label,
            _result(row),
            rate(row.objects_per_second),
            rate(row.mib_per_second),
            _on_disk(row),
            _percent_of_ceiling(row, rows),
            requests(row),
            _memory(row),
            rate(row.cpu_per_1000_objects),
            rate(row.cpu_per_gib),
            server_cpu(row),
            _notes(row),
        )
        lines.append(line(cells))
    return "\n".join(lines)


_COMPACT_COLUMNS = (
    "scenario",
    "server",
    "contender",
    "objects/s",
    "MiB/s",
    "on disk",
    "% of ceiling",
    "requests/object",
    "peak RSS MiB",
    "CPU s/1,000 obj",
    "CPU s/GiB",
)


def _status_or_dash(row: Row) -> str:
    return DASH if row.status == OK else row.status


def compact_table(rows: Sequence[Row]) -> str:
    """The README's table: figures only; a row that is not ok shows its status instead."""
    lines = ["| " + " | ".join(_COMPACT_COLUMNS) + " |", "|" + "---|" * len(_COMPACT_COLUMNS)]
    for row in rows:
        # The watch scenario's trickle is ok with no speed of its own (the uploads set it).
        speed = rate(row.objects_per_second) if row.timed else _status_or_dash(row)
        total = row.requests_per_object
        cells = (
            row.scenario.name,
            row.server,
            f"**{row.label}**" if row.contender == "s3drain" else row.label,
            speed,
            rate(row.mib_per_second),
            _on_disk(row, sync=False),
            _percent_of_ceiling(row, rows),
            f"{total:.3f}" if total is not None and row.status != CEILING else DASH,
            rate(row.peak_rss_mib),
            rate(row.cpu_per_1000_objects),
            rate(row.cpu_per_gib),
        )
        lines.append(line(cells))
    return "\n".join(lines)


def scaling_table(rows: Sequence[Row]) -> str | None:
    """objects/s of each contender on core 1 and on cores 0-1, and the ratio, server by server."""
    scaling = [r for r in rows if r.scenario.name == "scaling" and r.contender != CEILING_NAME]
    pairs = list(dict.fromkeys((r.server, r.contender) for r in scaling))
    if not pairs:
        return None
    one, two = SCALING_CPUS
    lines = [
        f"| server | contender | objects/s on core {one} | objects/s on cores {two} | ratio |",
        "|---|---|---|---|---|",
    ]
    for server, name in pairs:
        speeds = []
        for cpus in SCALING_CPUS:
            row = next(
                (
                    r
                    for r in scaling
                    if r.server == server and r.contender == name and r.cpus == cpus
                ),
                None,
            )
            if row is None:
                speeds.append(DASH)
            else:
                speeds.append(rate(row.objects_per_second) if row.timed else row.status)
        ratio = scaling_ratio(rows, name, server)
        shown = f"{ratio:.2f}{TIMES}" if ratio else DASH
        lines.append(f"| {server} | {name} | {speeds[0]} | {speeds[1]} | {shown} |")
    return "\n".join(lines)


def scenario_legend(scenarios: Sequence[Scenario]) -> str:
    return "\n".join(f"- **{s.name}**: {s.title}" for s in scenarios)


# --- the documents ---------------------------------------------------------------------------


def results_markdown(rows: Sequence[Row], info: RunInfo) -> str:
    scaling = scaling_table(rows)
    watch = watch_tables(rows)
    parts = [
        "# s3drain benchmark results",
        f"Measured by `{info.command}` on {info.date}. Written by `benchmarks/run.py`: "
        "do not edit by hand, run `make bench` again.",
        "## Servers",
        _bullets(
            {
                name: f"{text}; requests counted {info.counting.get(name, 'not')}"
                for name, text in info.servers.items()
            }
        ),
        "## Where the contenders wrote",
        info.destination,
        "## Results",
        scenario_legend(info.scenarios),
        table(rows),
        *(["## Scaling from one core to two", scaling] if scaling else []),
        *(["## `s3drain watch` on S3 events", watch] if watch else []),
        *(["## The links", info.link_check] if info.link_check else []),
        "## Issue 19's targets for s3drain",
        checks_table(target_checks(rows)),
        *(
            [
                "## The same comparisons until the bytes are on disk",
                ON_DISK_INTRO,
                checks_table(on_disk),
            ]
            if (on_disk := on_disk_checks(rows))
            else []
        ),
        *(
            ["## Issue 20's targets for `s3drain watch`", checks_table(watch_checks(rows))]
            if watch
            else []
        ),
        "## Columns",
        COLUMN_NOTES,
        "## Versions",
        _bullets(info.versions),
        "## Settings used",
        _bullets(info.settings),
        "## Machine",
        _bullets(info.machine),
    ]
    return "\n\n".join(parts) + "\n"


def _bullets(items: Mapping[str, str]) -> str:
    return "\n".join(f"- **{name}**: {value}" for name, value in items.items())


def readme_block(rows: Sequence[Row], info: RunInfo) -> str:
    wanted = [row for row in rows if row.status != NOT_INSTALLED]
    servers = "; ".join(f"{name}: {text}" for name, text in info.servers.items())
    return "\n\n".join(
        [
            README_BEGIN,
            f"Measured {info.date} on {info.machine.get('CPU', 'this machine')} "
            f"({info.machine.get('cores', '?')} cores); servers: {servers}. The full "
            "table, versions and settings are in "
            "[benchmarks/RESULTS.md](benchmarks/RESULTS.md).",
            scenario_legend(info.scenarios),
            compact_table(wanted),
            README_END,
        ]
    )


def replace_readme_block(readme: Path, block: str) -> bool:
    """Swap the marked block in ``readme``; False when the markers are not there."""
    text = readme.read_text()
    pattern = re.compile(re.escape(README_BEGIN) + r".*?" + re.escape(README_END), re.DOTALL)
    if not pattern.search(text):
        return False
    readme.write_text(pattern.sub(lambda _: block, text, count=1))
    return True
