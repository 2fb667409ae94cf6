"""This repository's commands (`python -m …`) as processes, the way a person runs them: the
`boomerang` command on call, and any other module with a command line."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
OPERATOR = "tests@boomerang"


def run_python_module(
    module: str, *args: str, env: Mapping[str, str] | None = None, timeout: float | None = None
) -> subprocess.CompletedProcess[str]:
    """`python -m <module> <args>` from the repository root, its output captured as text;
    the exit status is the caller's to check."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def cli_env(bootstrap: str, operator: str = OPERATOR) -> dict[str, str]:
    return {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "BOOMERANG_OPERATOR": operator}


def run_cli(
    bootstrap: str, *args: str, operator: str = OPERATOR, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return run_python_module(
        "services.cli", *args, env=cli_env(bootstrap, operator), timeout=timeout
    )
