"""`make pg-up/down` semantics on a private PostgreSQL cluster (own directory under
pytest's 0700 tmp dir, so as root the cluster is relocated where the server user reaches
it; own port): up initialises and answers over TCP with the printed DATABASE_URL, up twice
is harmless, a server killed with SIGKILL leaves a stale pid file that the next up
detects, down twice is harmless, down --wipe removes everything."""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path

import psycopg
import pytest

from services.tools.local_postgres.server import LocalPostgres, LocalPostgresSettings
from tests.support.cli_process import run_python_module

MODULE = "services.tools.local_postgres"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def private_cluster(tmp_path: Path):
    env = {
        **os.environ,
        "BOOMERANG_PG_DIR": str(tmp_path / "cache" / "postgres"),
        "BOOMERANG_PG_PORT": str(free_port()),
    }
    env.pop("DATABASE_URL", None)
    yield env
    run_python_module(MODULE, "down", "--wipe", env=env)


def cli(env: dict[str, str], *args: str):
    done = run_python_module(MODULE, *args, env=env)
    assert done.returncode == 0, done.stderr
    return done


def test_up_answers_over_tcp_survives_a_sigkill_and_down_wipes(private_cluster) -> None:
    env = private_cluster
    if LocalPostgresSettings.from_env().bin_dir is None:
        pytest.fail("PostgreSQL 15 is not installed: make pg-server")
    url = cli(env, "up").stdout.strip()
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT current_database(), current_user").fetchone() == (
            "boomerang",
            "boomerang",
        )
        conn.execute("CREATE TABLE kept (id int primary key)")
        conn.execute("INSERT INTO kept VALUES (1)")
    assert cli(env, "up").stdout.strip() == url  # already running: the same URL
    assert "running" in cli(env, "status").stdout

    settings = LocalPostgresSettings(
        int(env["BOOMERANG_PG_PORT"]), Path(env["BOOMERANG_PG_DIR"]), None
    )
    pid = LocalPostgres(settings).status().pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while "stale pid file" not in cli(env, "status").stdout and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "stale pid file" in cli(env, "status").stdout
    again = cli(env, "up")
    assert "left by a killed run" in again.stderr
    with psycopg.connect(again.stdout.strip()) as conn:
        assert conn.execute("SELECT id FROM kept").fetchall() == [(1,)]  # crash recovery

    cli(env, "down")
    assert "no server was running" in cli(env, "down").stderr
    cli(env, "down", "--wipe")
    assert "not initialised" in cli(env, "status").stdout
    assert not Path(env["BOOMERANG_PG_DIR"]).exists()
