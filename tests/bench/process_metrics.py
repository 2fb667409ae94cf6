"""CPU time and resident memory of running processes, read from /proc (Linux)."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU of the process (all its threads) and its reaped children."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    # after the command name: state is field 3, utime 14, stime 15, cutime 16, cstime 17
    utime, stime, cutime, cstime = (int(fields[i]) for i in (11, 12, 13, 14))
    return (utime + stime + cutime + cstime) / TICKS_PER_S


def tree_cpu_seconds(pid: int) -> float | None:
    """`cpu_seconds` of the process plus its living children's (a PostgreSQL server: the
    postmaster, its reaped backends, and the backends still connected)."""
    own = cpu_seconds(pid)
    if own is None:
        return None
    children: list[int] = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:  # ppid is field 4: the second after the command name
            children.append(int(stat.parent.name))
    return own + sum(cpu_seconds(child) or 0.0 for child in children)


def peak_rss_mb(pid: int) -> float | None:
    """The peak resident set (VmHWM) since the process started or since `reset_peak_rss`."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def reset_peak_rss(pid: int) -> bool:
    """Start a new peak-RSS window (writing 5 to clear_refs); False where not allowed."""
    with contextlib.suppress(OSError):
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    return False


def machine() -> dict[str, object]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory_kb = 0
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_kb = int(line.split()[1])
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "memory_gib": round(memory_kb / 1024 / 1024, 1),
        "kernel": os.uname().release,
    }
