"""Kill the processes a runner started when the runner itself dies, however it dies.

Services and brokers run in sessions of their own (a Ctrl-C on the terminal must not hit them
half-way), so a SIGKILLed runner - a pytest timeout, an OOM kill, `kill -9` - would leave them
running. `reap_children_if_i_die()` marks every process this one starts afterwards with an
environment variable and starts a small reaper process holding the read end of a pipe whose
write end only this process has. When this process exits, the kernel closes the pipe, the
reaper reads end-of-file and SIGKILLs every process still carrying the mark.

Run as `python -m services.tools.local_stack.orphan_reaper <mark>` (stdin = the pipe).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

OWNER_VARIABLE = "BOOMERANG_RUN_OWNER"

_mark: str | None = None


def reap_children_if_i_die() -> str:
    """Start the reaper once per process; returns the mark its children carry."""
    global _mark
    if _mark is not None:
        return _mark
    mark = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
    read_end, write_end = os.pipe()  # both non-inheritable; only read_end is handed over
    env = {k: v for k, v in os.environ.items() if k != OWNER_VARIABLE}
    subprocess.Popen(
        [sys.executable, "-m", "services.tools.local_stack.orphan_reaper", mark],
        stdin=read_end,
        stdout=subprocess.DEVNULL,
        start_new_session=True,
        env=env,
        cwd=Path(__file__).resolve().parents[3],
    )
    os.close(read_end)
    # write_end stays open (unused) for the life of this process: its close is the signal.
    _keep_open.append(write_end)
    os.environ[OWNER_VARIABLE] = mark
    _mark = mark
    return mark


_keep_open: list[int] = []


def marked_processes(mark: str, proc: Path = Path("/proc")) -> list[int]:
    """Pids whose environment at start carried OWNER_VARIABLE=mark."""
    needle = f"{OWNER_VARIABLE}={mark}".encode()
    found = []
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:  # gone, or not ours to read
            continue
        if needle in environ.split(b"\0"):
            found.append(int(entry.name))
    return found


def reap(mark: str) -> None:
    for pid in marked_processes(mark):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m services.tools.local_stack.orphan_reaper <mark>", file=sys.stderr)
        return 2
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while sys.stdin.buffer.read(65536):  # nothing is ever written: this waits for EOF
        pass
    # Twice: a supervisor thread may have been restarting a child while the owner died.
    reap(args[0])
    reap(args[0])
    return 0


if __name__ == "__main__":
    sys.exit(main())
