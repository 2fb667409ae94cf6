"""Claims against carriers (an adapter): each claim the consumer wrote (`carrier_claims`,
status `to_file`) is filed with the carrier over its HTTP API (`POST /claims`, the claim id
as the idempotency identity: filing again after a lost answer files nothing new), then
followed (`GET /claims/{id}`) until the carrier rejects it or pays it. Each outcome's entry
(services/decisions/settlement/return_postings.claim_entry: the claim written off, or the
money received and any shortfall written off) is booked in the same transaction as the
status, so an outcome is booked once however often it is read.

Several settlement processes may run: a claim is worked by whoever locks its row first
(`FOR UPDATE SKIP LOCKED`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
from psycopg import AsyncConnection

from services.decisions.settlement.return_postings import ClaimOutcome, claim_entry
from services.eventing.envelope import now_ms
from services.eventing.log_setup import get_logger
from services.settlement.ledger_store import LedgerStore

BATCH = 50
log = get_logger(__name__)


@dataclass
class ClaimsWorked:
    filed: int = 0
    decided: int = 0
    failures: int = 0


async def work_claims(
    conn: AsyncConnection, http: httpx.AsyncClient, carrier_url: str, batch: int = BATCH
) -> ClaimsWorked:
    """One round: file what is to be filed, ask about what is open; what moved."""
    worked = ClaimsWorked()
    async with conn.transaction():
        cursor = await conn.execute(
            "SELECT claim_id, return_id, carrier_id, amount_minor, currency, status"
            " FROM carrier_claims WHERE status IN ('to_file', 'filed', 'accepted')"
            " ORDER BY updated_at LIMIT %s FOR UPDATE SKIP LOCKED",
            (batch,),
        )
        for claim_id, return_id, carrier_id, amount, currency, status in await cursor.fetchall():
            currency = currency.strip()
            try:
                async with conn.transaction():  # each claim's answer and outcome, or nothing
                    if status == "to_file":
                        answer = await _file(
                            http, carrier_url, claim_id, return_id, amount, currency
                        )
                        worked.filed += 1
                    else:
                        answer = await _ask(http, carrier_url, claim_id)
                    decided = await _record(
                        conn, answer, claim_id, return_id, carrier_id, amount, currency
                    )
                    worked.decided += decided
            except (httpx.HTTPError, ValueError, TypeError) as exc:  # asked again next round
                worked.failures += 1
                log.warning("carrier claim not worked", claim_id=claim_id, error=repr(exc))
                await conn.execute(
                    "UPDATE carrier_claims SET attempts = attempts + 1, updated_at = now(),"
                    " detail = %s WHERE claim_id = %s",
                    (repr(exc)[:500], claim_id),
                )
    return worked


async def _file(
    http: httpx.AsyncClient, url: str, claim_id: str, return_id: str, amount: int, currency: str
) -> dict[str, Any]:
    response = await http.post(
        f"{url}/claims",
        json={
            "claim_id": claim_id,
            "return_id": return_id,
            "amount_minor": amount,
            "currency": currency,
            "reason": "DAMAGED_IN_TRANSIT",
        },
        headers={"Idempotency-Key": claim_id},
    )
    if response.status_code not in (200, 201):
        raise ValueError(f"filing answered HTTP {response.status_code}: {response.text[:200]}")
    return response.json()  # a body that is not JSON: ValueError


async def _ask(http: httpx.AsyncClient, url: str, claim_id: str) -> Any:
    response = await http.get(f"{url}/claims/{claim_id}")
    if response.status_code != 200:
        raise ValueError(f"asking answered HTTP {response.status_code}: {response.text[:200]}")
    return response.json()


async def _record(
    conn: AsyncConnection,
    answer: Any,
    claim_id: str,
    return_id: str,
    carrier_id: str,
    amount: int,
    currency: str,
) -> bool:
    """The carrier's answer kept, and its outcome booked; whether it was decided. An answer
    that makes no sense is a ValueError (the claim is asked again next round)."""
    if not isinstance(answer, dict):
        raise ValueError(f"the carrier answered {type(answer).__name__}, not an object")
    status = answer.get("status")
    if status not in ("filed", "accepted", "rejected", "paid"):
        raise ValueError(f"the carrier answered status {status!r}")
    paid = answer.get("paid_minor") or 0
    if not isinstance(paid, int) or isinstance(paid, bool) or not 0 <= paid <= amount:
        raise ValueError(f"the carrier says it paid {paid!r} of {amount}")
    detail = answer.get("rejection_reason") or ""
    await conn.execute(
        "UPDATE carrier_claims SET status = %s, paid_minor = %s, detail = %s, updated_at = now()"
        " WHERE claim_id = %s",
        (status, paid, detail, claim_id),
    )
    if status not in ("rejected", "paid"):
        return False
    entry = claim_entry(
        return_id, carrier_id, amount, currency, ClaimOutcome(status), now_ms(), paid
    )
    if entry is not None:
        await LedgerStore(conn, "claims").book([entry], {})
    log.info("carrier claim decided", claim_id=claim_id, return_id=return_id, status=status)
    return True
