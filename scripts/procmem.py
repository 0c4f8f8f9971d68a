"""Memory of a running process and the machine's load, for the benchmark scripts' figures.

A benchmark's sync runs in its own process (``ru_maxrss`` there); the emulator is another process
whose current and peak resident memory only the kernel knows: ``VmRSS`` / ``VmHWM`` in
``/proc/<pid>/status`` (Linux). The load average is printed beside each figure because the
benchmarks share the machine's cores.
"""

from __future__ import annotations

import os
from pathlib import Path


def process_memory_mb(pid: int) -> dict[str, float]:
    """``{"rss_mb", "peak_mb"}`` of process ``pid`` (its high-water mark since it started)."""
    values = {"rss_mb": 0.0, "peak_mb": 0.0}
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return values
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            values["rss_mb" if name == "VmRSS" else "peak_mb"] = int(rest.split()[0]) / 1024
    return values


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds process ``pid`` has used so far (``/proc/<pid>/stat``; 0.0 if gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime (fields 14, 15)


def load_average() -> str:
    """The 1-minute load average on this machine's cores, e.g. ``"1.42/2"``."""
    return f"{os.getloadavg()[0]:.2f}/{os.cpu_count()}"
