"""A runner killed with SIGKILL leaves none of the processes it started behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from services.tools.local_kafka.broker import REPO_ROOT
from services.tools.local_stack.orphan_reaper import OWNER_VARIABLE, marked_processes

RUNNER = """
import subprocess, sys, time
from services.tools.local_stack.orphan_reaper import reap_children_if_i_die
mark = reap_children_if_i_die()
children = [
    subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True)
    for _ in range(3)
]
print(mark, *[c.pid for c in children], flush=True)
time.sleep(600)
"""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _start_runner() -> tuple[subprocess.Popen, str, list[int]]:
    env = {k: v for k, v in os.environ.items() if k != OWNER_VARIABLE}
    runner = subprocess.Popen(
        [sys.executable, "-c", RUNNER],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert runner.stdout is not None
    mark, *pids = runner.stdout.readline().split()
    return runner, mark, [int(pid) for pid in pids]


def _wait_until(condition, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


def test_children_in_their_own_sessions_die_with_a_sigkilled_runner():
    runner, mark, pids = _start_runner()
    assert len(pids) == 3 and all(_alive(pid) for pid in pids)
    # Popen returns once exec has begun; the kernel fills /proc/<pid>/environ a moment later
    # (seen: the last child's environment still empty right after Popen returned).
    assert _wait_until(lambda: sorted(marked_processes(mark)) == sorted(pids), timeout=5.0), (
        marked_processes(mark),
        pids,
    )

    runner.send_signal(signal.SIGKILL)
    runner.wait(10)

    assert _wait_until(lambda: not any(_alive(pid) for pid in pids)), [
        pid for pid in pids if _alive(pid)
    ]
    assert marked_processes(mark) == []


def test_processes_without_the_mark_are_left_alone():
    bystander = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(600)"],
        env={k: v for k, v in os.environ.items() if k != OWNER_VARIABLE},
        start_new_session=True,
    )
    try:
        runner, _mark, pids = _start_runner()
        runner.send_signal(signal.SIGKILL)
        runner.wait(10)
        assert _wait_until(lambda: not any(_alive(pid) for pid in pids))
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait(5)
