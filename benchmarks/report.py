"""The results table, the issue's targets, and RESULTS.md / the README block around them."""

from __future__ import annotations

import os
import platform
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from benchmarks.results import CEILING, CEILING_NAME, Row, best_other, find
from benchmarks.scenarios import MIB, TIMES, Scenario

README_BEGIN = "<!-- bench:begin (written by `make bench`) -->"
README_END = "<!-- bench:end -->"

_COLUMNS = (
    "scenario",
    "contender",
    "result",
    "objects/s",
    "MiB/s",
    "% of ceiling",
    "S3 requests/object (by type)",
    "peak RSS MiB",
    "CPU s/1,000 obj",
    "CPU s/GiB",
    "notes",
)
_DASH = "—"


@dataclass(frozen=True)
class RunInfo:
    """What RESULTS.md says about the run besides the rows."""

    date: str
    command: str
    server: str
    counting: str
    versions: Mapping[str, str]
    settings: Mapping[str, str]
    machine: Mapping[str, str]
    scenarios: Sequence[Scenario]
    # How the wan link was measured before the wan scenarios ran; None when none ran.
    link_check: str | None = None


@dataclass(frozen=True)
class Check:
    target: str
    measured: str
    verdict: str


# --- numbers -------------------------------------------------------------------------------


def _rate(value: float | None) -> str:
    if value is None:
        return _DASH
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def _ratio(value: float) -> str:
    if value >= 10:
        return f"{value:.0f}"
    if value >= 0.995:
        return f"{value:.2f}".rstrip("0").rstrip(".")
    return f"{value:.3f}".lstrip("0") or "0"


def _requests(row: Row) -> str:
    total = row.requests_per_object
    if total is None or row.status == CEILING:
        return _DASH if row.status != CEILING else "1 GET per object or range"
    parts = ", ".join(f"{op} {_ratio(n)}" for op, n in row.requests_by_type())
    return f"**{total:.3f}**: {parts}" if parts else f"**{total:.3f}**"


def _percent_of_ceiling(row: Row, rows: Sequence[Row]) -> str:
    ceiling = find(rows, row.scenario.name, CEILING_NAME)
    if row.status == CEILING or ceiling is None or not ceiling.timed or not row.timed:
        return _DASH
    assert row.seconds is not None and ceiling.seconds is not None
    return f"{100 * ceiling.seconds / row.seconds:.0f} %"


def _result(row: Row) -> str:
    return f"{row.status} (median of {row.runs})" if row.runs > 1 else row.status


def _notes(row: Row) -> str:
    notes = [row.note] if row.note else []
    if row.relay_cpu_seconds is not None and row.seconds:
        share = 100 * row.relay_cpu_seconds / row.seconds
        notes.append(f"link relay {row.relay_cpu_seconds:.2f} CPU-s ({share:.0f} % of a core)")
    return "; ".join(notes)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


# --- the table -------------------------------------------------------------------------------


def table(rows: Sequence[Row]) -> str:
    lines = ["| " + " | ".join(_COLUMNS) + " |", "|" + "---|" * len(_COLUMNS)]
    for row in rows:
        cells = (
            row.scenario.name,
            row.contender,
            _result(row),
            _rate(row.objects_per_second),
            _rate(row.mib_per_second),
            _percent_of_ceiling(row, rows),
            _requests(row),
            _rate(row.peak_rss_mib),
            _rate(row.cpu_per_1000_objects),
            _rate(row.cpu_per_gib),
            _notes(row),
        )
        lines.append("| " + " | ".join(_cell(cell) for cell in cells) + " |")
    return "\n".join(lines)


_COMPACT_COLUMNS = (
    "scenario",
    "contender",
    "objects/s",
    "MiB/s",
    "% of ceiling",
    "requests/object",
    "peak RSS MiB",
    "CPU s/1,000 obj",
    "CPU s/GiB",
)


def compact_table(rows: Sequence[Row]) -> str:
    """The README's table: figures only; a row that is not ok shows its status instead."""
    lines = ["| " + " | ".join(_COMPACT_COLUMNS) + " |", "|" + "---|" * len(_COMPACT_COLUMNS)]
    for row in rows:
        speed = _rate(row.objects_per_second) if row.timed else row.status
        total = row.requests_per_object
        cells = (
            row.scenario.name,
            f"**{row.contender}**" if row.contender == "s3drain" else row.contender,
            speed,
            _rate(row.mib_per_second),
            _percent_of_ceiling(row, rows),
            f"{total:.3f}" if total is not None and row.status != CEILING else _DASH,
            _rate(row.peak_rss_mib),
            _rate(row.cpu_per_1000_objects),
            _rate(row.cpu_per_gib),
        )
        lines.append("| " + " | ".join(_cell(cell) for cell in cells) + " |")
    return "\n".join(lines)


def scenario_legend(scenarios: Sequence[Scenario]) -> str:
    return "\n".join(f"- **{s.name}**: {s.title}" for s in scenarios)


# --- the targets -------------------------------------------------------------------


def _value_check(
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
    measured = f"{_rate(mine)} {unit} (needs {'≥' if higher_is_better else '≤'} "
    measured += f"{_rate(needed)}: {basis})"
    met = mine >= needed if higher_is_better else mine <= needed
    if met:
        return Check(target, measured, "met")
    share = mine / needed if higher_is_better else needed / mine
    return Check(target, measured, f"**missed**: {100 * share:.0f} % of the target")


def _speed_checks(rows: Sequence[Row]) -> list[Check]:
    checks = []
    for scenario, factor in (("small", 1.5), ("latency", 1.5)):
        mine, other = find(rows, scenario, "s3drain"), best_other(rows, scenario)
        needed = other.objects_per_second * factor if other and other.objects_per_second else None
        basis = f"{factor}{TIMES} {other.contender}" if other else "no other contender"
        checks.append(
            _value_check(
                f"{scenario}: objects/s ≥ {factor}{TIMES} the best contender",
                mine=mine.objects_per_second if mine else None,
                needed=needed,
                unit="obj/s",
                basis=basis,
            )
        )
    ceiling, mine = find(rows, "small", CEILING_NAME), find(rows, "small", "s3drain")
    checks.append(
        _value_check(
            "small: objects/s ≥ 70 % of the server ceiling",
            mine=mine.objects_per_second if mine else None,
            needed=0.7 * ceiling.objects_per_second
            if ceiling and ceiling.objects_per_second
            else None,
            unit="obj/s",
            basis="70 % of the ceiling",
        )
    )
    for scenario in ("large", "huge"):
        mine, other = find(rows, scenario, "s3drain"), best_other(rows, scenario)
        checks.append(
            _value_check(
                f"{scenario}: MiB/s ≥ the best contender",
                mine=mine.mib_per_second if mine else None,
                needed=other.mib_per_second if other else None,
                unit="MiB/s",
                basis=other.contender if other else "no other contender",
            )
        )
    return checks


def _resource_checks(rows: Sequence[Row]) -> list[Check]:
    checks = []
    for scenario in ("large", "huge"):
        mine = find(rows, scenario, "s3drain")
        checks.append(
            _value_check(
                f"{scenario}: peak RSS ≤ 128 MiB",
                mine=mine.peak_rss_mib if mine else None,
                needed=128.0,
                unit="MiB",
                basis="the budget",
                higher_is_better=False,
            )
        )
    for scenario in ("small", "latency"):
        mine = find(rows, scenario, "s3drain")
        checks.append(
            _value_check(
                f"{scenario}: ≤ 1.01 S3 requests per object",
                mine=mine.requests_per_object if mine and mine.status == "ok" else None,
                needed=1.01,
                unit="req/obj",
                basis="the budget",
                higher_is_better=False,
            )
        )
    checks.append(_cpu_check(rows))
    return checks


def _cpu_check(rows: Sequence[Row]) -> Check:
    target = "small: CPU per 1,000 objects lower than every contender's"
    mine = find(rows, "small", "s3drain")
    others = [
        row
        for row in rows
        if row.scenario.name == "small"
        and row.contender not in ("s3drain", CEILING_NAME)
        and row.cpu_per_1000_objects is not None
    ]
    if mine is None or mine.cpu_per_1000_objects is None or not others:
        return Check(target, _DASH, "not measured")
    lowest = min(others, key=lambda row: row.cpu_per_1000_objects or 0.0)
    assert lowest.cpu_per_1000_objects is not None
    measured = (
        f"{_rate(mine.cpu_per_1000_objects)} s (lowest other: "
        f"{lowest.contender} {_rate(lowest.cpu_per_1000_objects)} s)"
    )
    if mine.cpu_per_1000_objects < lowest.cpu_per_1000_objects:
        return Check(target, measured, "met")
    share = mine.cpu_per_1000_objects / lowest.cpu_per_1000_objects
    return Check(target, measured, f"**missed**: {share:.1f}{TIMES} {lowest.contender}'s CPU")


def target_checks(rows: Sequence[Row]) -> list[Check]:
    """The issue's targets for s3drain, each met or missed (a report, never an assertion)."""
    return _speed_checks(rows) + _resource_checks(rows)


def checks_table(checks: Sequence[Check]) -> str:
    lines = ["| target | s3drain measured | verdict |", "|---|---|---|"]
    lines += [f"| {_cell(c.target)} | {_cell(c.measured)} | {c.verdict} |" for c in checks]
    return "\n".join(lines)


# --- the documents ---------------------------------------------------------------------------


_COLUMN_NOTES = """\
- **objects/s, MiB/s**: objects (bytes) in the scenario divided by the contender's wall time,
  from process start to exit (start-up included: a scheduled drain pays it too).
- **% of ceiling**: the contender's speed as a share of the server ceiling row.
- **server ceiling**: many parallel plain GETs of the same objects after the same fill, bytes
  discarded, nothing written or deleted (presigned URLs, one kept connection per thread); the
  fastest of several probes: thread counts, equal ranges per object where there are fewer
  objects than threads, and 8 MiB ranges for big objects. The notes give every probe's rate.
- **S3 requests/object**: every request the server received during the run divided by the
  object count, total and by S3 operation.
- **peak RSS**: the contender's maximum resident set, from ``os.wait4`` of that one child
  (children it waited for included), started by a bare-interpreter launcher so that the
  runner's own memory is not counted in (Linux carries the forking process's RSS into the
  child's peak); values under ~6 MiB would be the launcher's floor.
- **CPU s/1,000 obj**: user + system CPU seconds of the contender per 1,000 objects.
- **CPU s/GiB**: the same CPU seconds per GiB drained, for the scenarios of big objects. It is
  the contender's whole process tree (``wait4``), start-up included; the server's CPU (moto,
  its own process) and the link relay's are not in it.
- **(median of N)**: N runs of that contender; wall time, CPU and the relay's CPU are each the
  median, requests are the median run's, peak RSS the largest of the N.
- **link relay**: in the wan scenarios, the CPU the relay process spent during the run (its
  share of one core over the run's wall time), to show the link was not the bottleneck.
- **result**: `ok` only when the exit code was 0, every object is on disk with the right bytes
  (MD5), nothing else is there, and the prefix is empty. Anything else is `wrong`/`failed`/
  `timeout` and its speed is not reported."""


def results_markdown(rows: Sequence[Row], info: RunInfo) -> str:
    parts = [
        "# s3drain benchmark results",
        f"Measured by `{info.command}` on {info.date} against a {info.server}; "
        f"requests counted {info.counting}. Written by `benchmarks/run.py`: "
        "do not edit by hand, run `make bench` again.",
        "## Results",
        scenario_legend(info.scenarios),
        table(rows),
        *(["## The wan link", info.link_check] if info.link_check else []),
        "## The issue's targets for s3drain",
        checks_table(target_checks(rows)),
        "## Columns",
        _COLUMN_NOTES,
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
    wanted = [row for row in rows if row.status != "not installed"]
    return "\n\n".join(
        [
            README_BEGIN,
            f"Measured {info.date} on {info.machine.get('CPU', 'this machine')} "
            f"({info.machine.get('cores', '?')} cores) against a {info.server}; the full "
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


# --- the machine -----------------------------------------------------------------------------


def machine_info(workdir: Path) -> dict[str, str]:
    return {
        "CPU": _cpu_model(),
        "cores": str(os.cpu_count()),
        "memory": _memory_total(),
        "OS": f"{_os_name()}, Linux {platform.release()}",
        "Python": sys.version.split()[0],
        "work folder": f"{workdir} ({_filesystem(workdir)})",
        # Two cores are easily shared: other work running during the bench shows in it.
        "load average (1/5/15 min) when the bench started": load_average(),
    }


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def _field(text: str, name: str, separator: str) -> str | None:
    for line in text.splitlines():
        key, sep, value = line.partition(separator)
        if sep and key.strip() == name:
            return value.strip().strip('"')
    return None


def load_average() -> str:
    """The 1, 5 and 15 minute load averages."""
    fields = _read("/proc/loadavg").split()
    return " / ".join(fields[:3]) if len(fields) >= 3 else "unknown"


def _cpu_model() -> str:
    return _field(_read("/proc/cpuinfo"), "model name", ":") or platform.processor() or "unknown"


def _memory_total() -> str:
    value = _field(_read("/proc/meminfo"), "MemTotal", ":")
    if value is None:
        return "unknown"
    return f"{int(value.split()[0]) * 1024 / (1024 * MIB):.1f} GiB"


def _os_name() -> str:
    return _field(_read("/etc/os-release"), "PRETTY_NAME", "=") or platform.system()


def _filesystem(path: Path) -> str:
    """The mount holding ``path``: its device and file system type, from /proc/mounts."""
    best: tuple[str, str, str] | None = None
    resolved = str(path.resolve())
    for line in _read("/proc/mounts").splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        device, mount, fstype = fields[:3]
        inside = resolved == mount or resolved.startswith(mount.rstrip("/") + "/")
        if inside and (best is None or len(mount) > len(best[1])):
            best = (device, mount, fstype)
    return f"{best[2]} on {best[0]}" if best else "unknown file system"
