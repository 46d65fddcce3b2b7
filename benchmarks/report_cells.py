"""How one figure of a result row reads in a table cell: shared by RESULTS.md's tables, the
README block and the watch scenario's tables."""

from __future__ import annotations

from collections.abc import Sequence

from benchmarks.results import CEILING, Row

DASH = "—"


def rate(value: float | None) -> str:
    if value is None:
        return DASH
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def ratio(value: float) -> str:
    if value >= 10:
        return f"{value:.0f}"
    if value >= 0.995:
        return f"{value:.2f}".rstrip("0").rstrip(".")
    return f"{value:.3f}".lstrip("0") or "0"


def requests(row: Row) -> str:
    total = row.requests_per_object
    if row.status == CEILING:
        return "1 GET per object or range"
    if total is None:
        return DASH
    return breakdown(total, row.requests_by_type())


def breakdown(total: float, per_object: Sequence[tuple[str, float]]) -> str:
    """Requests per object in all (bold), then by type or action."""
    parts = ", ".join(f"{op} {ratio(n)}" for op, n in per_object)
    return f"**{total:.3f}**: {parts}" if parts else f"**{total:.3f}**"


def server_cpu(row: Row) -> str:
    per_request, per_object = row.server_ms_per_request, row.server_ms_per_object
    if per_object is None:
        return DASH
    if per_request is None:
        return f"— ({per_object:.3f})"
    return f"{per_request:.3f} ({per_object:.3f})"


def cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def line(cells: Sequence[str]) -> str:
    """One table row of Markdown."""
    return "| " + " | ".join(cell(text) for text in cells) + " |"
