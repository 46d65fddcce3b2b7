"""What RESULTS.md says about the machine a bench ran on."""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

from benchmarks.destfs import describe
from benchmarks.scenarios import MIB


def machine_info(workdir: Path) -> dict[str, str]:
    return {
        "CPU": _cpu_model(),
        "cores": str(os.cpu_count()),
        "memory": _memory_total(),
        "OS": f"{_os_name()}, Linux {platform.release()}",
        "Python": sys.version.split()[0],
        "work folder": f"{workdir} ({describe(workdir)})",
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
