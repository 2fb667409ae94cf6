"""Reconciliation end to end on real processes: a PSP double (its own OS process, over HTTP)
with refunds and an anomaly of each provider-side kind in its daily report, a ledger in a
real PostgreSQL with the same refunds booked, and `boomerang recon run --date D` as a
person runs it. Every anomaly is found in its category; a day run twice changes nothing; a
late line resolves its timing break; a refund never reported becomes missing after the
window; a seller never debited is found; a chargeback books its entry once;
`boomerang finance sql` reads but cannot write."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from psycopg import AsyncConnection

from services.decisions.settlement.return_postings import refund_entry
from services.settlement.ledger_store import LedgerStore
from services.settlement.schema_migrations import apply_migrations
from services.tools.local_stack.demo_settlement import EXPECTED_CATEGORY
from tests.support.cli_process import REPO_ROOT, run_python_module

PROVIDER_KINDS = [
    "timing",
    "missing",
    "unknown",
    "amount",
    "currency",
    "duplicate",
    "fee",
    "status",
]


@pytest.fixture
def psp_double(tmp_path: Path) -> Iterator[str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PSP_")},
        "PSP_PORT": str(port),
        "PSP_LEDGER_FILE": str(tmp_path / "psp-ledger.jsonl"),
    }
    with (tmp_path / "psp.log").open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "services.tools.partners.psp_server"],
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None and time.monotonic() < deadline, "psp did not start"
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(10)


def recon(database: str, psp_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "DATABASE_URL": database,
        "PSP_PROVIDERS": json.dumps({"psp": psp_url}),
        "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",  # not used: no broker is needed
    }
    return run_python_module("services.cli", *args, env=env, timeout=120)


def recon_day(database: str, psp_url: str, day: date) -> tuple[int, dict]:
    done = recon(database, psp_url, "recon", "run", "--date", day.isoformat(), "--json")
    assert done.returncode in (0, 1), done.stderr
    return done.returncode, json.loads(done.stdout.strip().splitlines()[-1])


async def book_refunds(database: str, refunds: list[dict]) -> None:
    async with await AsyncConnection.connect(database, autocommit=True) as conn:
        await apply_migrations(conn)
        entries = []
        for refund in refunds:
            entry = refund_entry(
                refund["return_id"],
                refund["amount_minor"],
                refund["currency"],
                refund["created_at"],
                "psp",
                refund["refund_id"],
                refund["idempotency_key"],
            )
            assert entry is not None
            entries.append(entry)
        await LedgerStore(conn, "test").book(entries, {})
        # a seller-liable return refunded whose debit never came (its order never did)
        await conn.execute(
            "INSERT INTO completions_seen (return_id, liable, order_ref, refunded, currency,"
            " completed_at) VALUES ('R-no-debit', 'SELLER', 'O-gone', 1500, 'EUR', now())"
        )


def test_recon_finds_each_anomaly_once_and_a_day_run_twice_changes_nothing(
    postgres_database: str, psp_double: str, tmp_path: Path
) -> None:
    csv_out = tmp_path / "breaks.csv"
    today = datetime.now(UTC).date()
    with httpx.Client(base_url=psp_double, timeout=10) as psp:
        refunds = []
        for n in range(12):
            key = f"R-{n}-{uuid.uuid4().hex[:6]}-refund-1"
            body = {"return_id": f"R-{n}", "amount_minor": 10_000 + n, "currency": "EUR"}
            answer = psp.post(
                "/refunds", json=body | {"method": "EWALLET"}, headers={"Idempotency-Key": key}
            )
            assert answer.status_code == 201
            refunds.append(answer.json())
        asyncio.run(book_refunds(postgres_database, refunds))
        bent = psp.post(
            "/admin/report-anomalies",
            json={"date": today.isoformat(), "kinds": [*PROVIDER_KINDS, "chargeback"]},
        ).json()["anomalies"]
    injected = {a["merchant_reference"]: a["kind"] for a in bent}

    status, first = recon_day(postgres_database, psp_double, today)

    found = {b["reference"]: b["category"] for b in first["breaks"]}
    assert status == 1  # breaks that need a person
    assert found == {
        **{
            # the missing one is not missing yet: inside the timing window
            ref: "timing" if kind == "missing" else EXPECTED_CATEGORY[kind]
            for ref, kind in injected.items()
            if kind != "chargeback"
        },
        "R-no-debit": "seller_debit_missing",
    }
    assert (first["matched"], first["compared"]) == (12 - 7, 13)  # 7 bent refunds + 1 unknown
    assert len(first["tickets_opened"]) == 7  # every break but the timing ones
    assert first["entries_booked"] == 1  # the chargeback

    _, again = recon_day(postgres_database, psp_double, today)
    plain = recon(
        postgres_database, psp_double, "recon", "run", "--date", str(today), "--csv", str(csv_out)
    )
    assert "matched (match rate 38.46%)" in plain.stdout, plain.stdout + plain.stderr
    assert len(csv_out.read_text().splitlines()) == 1 + len(first["breaks"])
    assert again["breaks"] == first["breaks"]
    assert (again["tickets_opened"], again["entries_booked"]) == ([], 0)

    _, next_day = recon_day(postgres_database, psp_double, today + timedelta(days=1))
    late = {b["reference"]: b["category"] for b in next_day["breaks"]}
    timing_ref = next(ref for ref, kind in injected.items() if kind == "timing")
    missing_ref = next(ref for ref, kind in injected.items() if kind == "missing")
    assert timing_ref not in late  # its line came a day late: resolved
    assert late[missing_ref] == "timing"
    _, third_day = recon_day(postgres_database, psp_double, today + timedelta(days=2))
    assert {b["reference"]: b["category"] for b in third_day["breaks"]}[missing_ref] == (
        "missing_at_psp"
    )

    history = recon(
        postgres_database,
        psp_double,
        "finance",
        "sql",
        "--csv",
        "SELECT reference, category, resolved_on FROM recon_break_history ORDER BY reference",
    )
    assert history.returncode == 0, history.stderr
    resolved = [row.split(",") for row in history.stdout.splitlines()[1:]]
    assert [timing_ref, "timing", (today + timedelta(days=1)).isoformat()] in resolved
    balances = recon(
        postgres_database,
        psp_double,
        "finance",
        "sql",
        "--csv",
        "SELECT account, balance_minor FROM account_balances WHERE account LIKE 'chargebacks%'",
    )
    charged_back = next(
        r["amount_minor"] for r in refunds if injected.get(r["idempotency_key"]) == "chargeback"
    )
    assert balances.stdout.splitlines()[1:] == [f"chargebacks:EUR,{charged_back}"]
    refused = recon(postgres_database, psp_double, "finance", "sql", "DELETE FROM recon_runs")
    assert refused.returncode != 0
    assert "read-only" in refused.stderr or "permission denied" in refused.stderr
    escape = recon(postgres_database, psp_double, "finance", "sql", "COMMIT; DROP TABLE recon_runs")
    assert escape.returncode != 0 and "one statement" in escape.stderr
