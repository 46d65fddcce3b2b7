"""Human sizes and durations, both ways: `16MiB` and `2h` in flags, `4.0 KiB` in reports."""

from __future__ import annotations

import re

_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "m": 1000**2,
    "mb": 1000**2,
    "g": 1000**3,
    "gb": 1000**3,
    "t": 1000**4,
    "tb": 1000**4,
    "ki": 1024,
    "kib": 1024,
    "mi": 1024**2,
    "mib": 1024**2,
    "gi": 1024**3,
    "gib": 1024**3,
    "ti": 1024**4,
    "tib": 1024**4,
}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")

_DURATION_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_DURATION_PART_RE = re.compile(r"(\d+(?:\.\d+)?)([smhdw]?)")


def parse_size(text: str) -> int:
    """`8MiB`, `16M`, `1.5GiB`, `4096` -> bytes. Raises ValueError with a readable message."""
    match = _SIZE_RE.match(text)
    unit = match.group(2).lower() if match else None
    if match is None or unit not in _SIZE_UNITS:
        raise ValueError(f"{text!r} is not a size (examples: 4096, 512KiB, 8MiB, 2GB)")
    return int(float(match.group(1)) * _SIZE_UNITS[unit])


def parse_duration(text: str) -> float:
    """`15m`, `2h`, `1d12h`, `90` (seconds) -> seconds. Raises ValueError when it is not one."""
    compact = text.strip().lower().replace(" ", "")
    parts = _DURATION_PART_RE.findall(compact)
    if not compact or "".join(num + unit for num, unit in parts) != compact:
        raise ValueError(f"{text!r} is not a duration (examples: 90s, 15m, 2h, 1d)")
    return sum(float(num) * _DURATION_UNITS[unit] for num, unit in parts)


def format_size(num_bytes: float) -> str:
    """Binary units, one decimal: `4.0 KiB`, `1.2 GiB`."""
    value = float(num_bytes)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def format_duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"
