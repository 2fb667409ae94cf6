"""`boomerang run settlement` as a real OS process on the session's broker and a database
of its own: it migrates the ledger's schema, serves /health and the balances (balanced),
and stops cleanly on SIGTERM."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psycopg

from services.settlement.schema_migrations import migrations
from services.settlement.seller_tokens import issue_seller_token
from tests.integration.test_partner_doubles import free_port

REPO = Path(__file__).resolve().parents[2]
FINANCE_TOKEN = "finance-token-for-tests"
SELLER_SECRET = "seller-secret-for-tests"
FINANCE = {"Authorization": f"Bearer {FINANCE_TOKEN}"}


def seller(seller_id: str, secret: str = SELLER_SECRET, expires_ms: int | None = None) -> dict:
    expiry = expires_ms or int(time.time() * 1000) + 60_000
    return {"Authorization": f"Bearer {issue_seller_token(secret, seller_id, expiry)}"}


def test_the_service_migrates_serves_and_stops(
    catalogue_topics: str, postgres_database: str, tmp_path: Path
) -> None:
    port = free_port()
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": catalogue_topics,
        "DATABASE_URL": postgres_database,
        "BOOMERANG_LOG_FORMAT": "json",
        "SETTLEMENT_FINANCE_TOKENS": FINANCE_TOKEN,
        "SELLER_TOKEN_SECRET": SELLER_SECRET,
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
        while time.monotonic() < deadline and (health is None or health["status"] != "ok"):
            with contextlib.suppress(httpx.TransportError):
                health = httpx.get(f"{base}/health", timeout=1).json()  # 503 until booking
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
        balances = httpx.get(f"{base}/ledger/balances", timeout=10, headers=FINANCE).json()
        assert balances["ledger_balanced"] is True
        own = httpx.get(f"{base}/sellers/S-NONE/statements", headers=seller("S-NONE"))
        assert own.json() == {"statements": []}
        # who may read what: no token 401, another seller's 403, a forged or old token 401
        statements = f"{base}/sellers/S-NONE/statements"
        assert httpx.get(statements).status_code == 401
        assert httpx.get(statements, headers=seller("S-OTHER")).status_code == 403
        assert httpx.get(statements, headers=seller("S-NONE", "forged")).status_code == 401
        expired = seller("S-NONE", expires_ms=int(time.time() * 1000) - 1)
        assert httpx.get(statements, headers=expired).json()["detail"] == "the token has expired"
        assert httpx.get(f"{base}/ledger/balances", headers=seller("S-NONE")).status_code == 403
        assert httpx.post(f"{base}/cycles/DE/10/close", headers=seller("S-1")).status_code == 403
        far_future = httpx.post(f"{base}/cycles/DE/90000/close", headers=FINANCE)  # the last one
        assert far_future.status_code == 409 and far_future.json()["error"] == "cycle_not_ended"
        assert (
            httpx.post(f"{base}/cycles/DE/x/close", headers=FINANCE).status_code == 404
        )  # no cycle
        # a week of 2024, nothing booked
        empty = httpx.post(f"{base}/cycles/DE/10/close", headers=FINANCE)
        assert empty.status_code == 200 and empty.json()["statements"] == [], empty.text
        missing = httpx.get(f"{base}/sellers/S-NONE/statements/DE-00010", headers=seller("S-NONE"))
        assert missing.status_code == 404
        csv_text = httpx.get(
            f"{base}/statements/DE-00010", params={"format": "csv"}, headers=FINANCE
        ).text
        assert csv_text.startswith("seller_id,cycle_id,currency,return_id")
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0, log_path.read_text()
    assert '"event": "stopped"' in log_path.read_text()
