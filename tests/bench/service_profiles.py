"""Sampling profiles of the running services (py-spy, from outside the process), and the
functions that cost the most, by own time and by time including callees."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Mapping
from pathlib import Path


def py_spy() -> str | None:
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


def start_profiles(
    pids: Mapping[str, int], seconds: float, out_dir: Path, rate_hz: int = 97
) -> dict[str, tuple[subprocess.Popen, Path]]:
    """Start one `py-spy record` per process (collapsed stacks); returns what to wait for."""
    binary = py_spy()
    if binary is None:
        return {}
    out_dir.mkdir(parents=True, exist_ok=True)
    running = {}
    for name, pid in pids.items():
        path = out_dir / f"{name}.collapsed"
        command = [binary, "record", "--pid", str(pid), "--duration", str(int(seconds))]
        command += ["--rate", str(rate_hz), "--format", "raw", "--nonblocking", "--output"]
        running[name] = (
            subprocess.Popen(
                [*command, str(path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            ),
            path,
        )
    return running


def finish_profiles(running: Mapping[str, tuple[subprocess.Popen, Path]]) -> dict[str, Path]:
    done = {}
    for name, (process, path) in running.items():
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
        if path.exists():
            done[name] = path
    return done


def hot_spots(collapsed: str, top: int = 15) -> dict[str, list[tuple[str, float]]]:
    """From py-spy's collapsed stacks ("frame;frame;frame count" lines): the share of samples
    each function is on top of the stack (own), anywhere in it (inclusive), and the same for
    Boomerang's own functions. `select (selectors.py)` on top is an event loop waiting."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_short(frame) for frame in stack.split(";")]
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    if total == 0:
        return {"own": [], "inclusive": [], "ours": [], "samples": []}

    def shares(counter: Counter[str]) -> list[tuple[str, float]]:
        ranked = sorted(counter.items(), key=lambda item: (-item[1], item[0]))[:top]
        return [(frame, round(100 * n / total, 1)) for frame, n in ranked]

    ours = Counter(
        {
            frame: n
            for frame, n in inclusive.items()
            if "(services/" in frame and not frame.startswith(ENTRY_POINTS)
        }
    )
    return {
        "own": shares(own),
        "inclusive": shares(inclusive),
        "ours": shares(ours),
        "samples": [("total", total)],
    }


# frames every sample of a service passes through: no information
ENTRY_POINTS = ("<module> ", "run ", "main ", "run_worker ")


def _short(frame: str) -> str:
    """'send (aiokafka/producer/producer.py:123)' -> 'send (aiokafka/producer/producer.py)'."""
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", "/work/main/", "python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{name} ({path})" if path else name


def write_summary(profiles: Mapping[str, Path], path: Path) -> str:
    lines = []
    for name, collapsed_path in sorted(profiles.items()):
        spots = hot_spots(collapsed_path.read_text(errors="replace"))
        samples = spots["samples"][0][1] if spots["samples"] else 0
        lines.append(f"== {name} ({samples} samples)")
        lines.append("  own time:")
        lines += [f"    {share:5.1f}%  {frame}" for frame, share in spots["own"]]
        lines.append("  Boomerang's own functions, including what they call:")
        lines += [f"    {share:5.1f}%  {frame}" for frame, share in spots["ours"]]
    text = "\n".join(lines) + "\n"
    path.write_text(text)
    return text
