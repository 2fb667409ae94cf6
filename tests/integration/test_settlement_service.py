"""`boomerang run settlement` as a real OS process on the session's broker and a database
of its own: it migrates the ledger's schema, serves /health and the balances (balanced),
and stops cleanly on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psycopg

from services.settlement.schema_migrations import migrations
from tests.integration.test_partner_doubles import free_port

REPO = Path(__file__).resolve().parents[2]


def test_the_service_migrates_serves_and_stops(
    catalogue_topics: str, postgres_database: str, tmp_path: Path
) -> None:
    port = free_port()
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": catalogue_topics,
        "DATABASE_URL": postgres_database,
        "BOOMERANG_LOG_FORMAT": "json",
    }
    log_path = tmp_path / "settlement.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "services.cli", "run", "settlement", "--port", str(port)],
            cwd=REPO,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline, health = time.monotonic() + 60, None
        while time.monotonic() < deadline and health is None:
            try:
                health = httpx.get(f"{base}/health", timeout=1).json()
            except httpx.TransportError:
                time.sleep(0.2)
        assert health is not None and health["status"] == "ok", log_path.read_text()
        deadline, applied = time.monotonic() + 30, []
        with psycopg.connect(postgres_database, autocommit=True) as conn:
            while time.monotonic() < deadline and len(applied) < len(migrations()):
                try:
                    applied = conn.execute("SELECT version FROM schema_migrations").fetchall()
                except psycopg.errors.UndefinedTable:  # not migrated yet
                    time.sleep(0.2)
        assert len(applied) == len(migrations())
        balances = httpx.get(f"{base}/ledger/balances", timeout=10).json()
        assert balances["ledger_balanced"] is True
        assert httpx.get(f"{base}/sellers/S-NONE/statements").json() == {"statements": []}
        far_future = httpx.post(f"{base}/cycles/DE/99999/close")
        assert far_future.status_code == 409 and far_future.json()["error"] == "cycle_not_ended"
        assert httpx.post(f"{base}/cycles/DE/x/close").status_code == 400
        empty = httpx.post(f"{base}/cycles/DE/10/close")  # a week of 2024, nothing booked
        assert empty.status_code == 200 and empty.json()["statements"] == []
        csv_text = httpx.get(f"{base}/statements/DE-00010", params={"format": "csv"}).text
        assert csv_text.startswith("seller_id,cycle_id,currency,return_id")
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0, log_path.read_text()
    assert '"event": "stopped"' in log_path.read_text()
