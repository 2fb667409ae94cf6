"""A broker node as an OS process: its java command line, pid file and liveness checks.

A pid is only ever trusted after checking that its command line names the node's
directory, so a recycled pid can never make us signal someone else's process.
"""

from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path

from services.tools.local_kafka.cluster_settings import LocalKafkaSettings


def java_command(settings: LocalKafkaSettings, node_id: int) -> list[str]:
    """`java ... -cp <jars>` for a node (the main class and its arguments follow)."""
    node_dir = settings.node_dir(node_id)
    return [
        "java",
        f"-Xms{settings.heap}",
        f"-Xmx{settings.heap}",
        "-XX:+UseG1GC",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={node_dir / 'log4j2.properties'}",
        f"-Dkafka.logs.dir={node_dir}",
        "-cp",
        f"{settings.libs_dir}/*",
    ]


def read_pid(pid_file: Path) -> int | None:
    """The pid a pid file names, or None (no file, or not a number)."""
    try:
        return int(pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def is_ours(pid: int, node_dir: Path) -> bool:
    """Alive, not a zombie, and its command line names this node's directory."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, PermissionError, IndexError):
        return False
    return state != "Z" and str(node_dir) in cmdline


def pid_alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


def reap(pid: int) -> None:
    """Collect the exit status of a child of ours (no-op for anyone else's process)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def port_open(port: int) -> bool:
    """Something accepts connections on 127.0.0.1:`port`."""
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0
