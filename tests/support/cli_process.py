"""The `boomerang` command as a process, the way a person on call runs it."""

from __future__ import annotations

import os
import subprocess
import sys

OPERATOR = "tests@boomerang"


def cli_env(bootstrap: str, operator: str = OPERATOR) -> dict[str, str]:
    return {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "BOOMERANG_OPERATOR": operator}


def run_cli(
    bootstrap: str, *args: str, operator: str = OPERATOR, timeout: float = 300
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "services.cli", *args],
        capture_output=True,
        text=True,
        env=cli_env(bootstrap, operator),
        timeout=timeout,
        check=False,
    )
