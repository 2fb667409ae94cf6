"""Composition root of the settlement service (`boomerang run settlement`): PostgreSQL at
DATABASE_URL (in a checkout without it: this checkout's local cluster, `make pg-up`), the
schema migrated on start, the consumer booking into the ledger, and an HTTP port with
`/health` (is the ledger balanced, what was booked) and `GET /ledger/balances`.

When PostgreSQL or Kafka fails, the consumer starts again from the offsets stored in the
ledger after a backoff: what a failed transaction had read is read again, never lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from aiohttp import web
from aiokafka.errors import KafkaError
from psycopg import AsyncConnection

from services.decisions.settlement.cycles import cycle, cycle_number
from services.decisions.settlement.return_postings import SettlementTerms
from services.engine import loop_metrics
from services.engine.web import add_metrics_page, add_openapi_page, new_web_app, serving
from services.eventing.avro_codec import AvroCodec
from services.eventing.envelope import now_ms
from services.eventing.log_setup import configure_logging, get_logger
from services.eventing.schema_catalogue import SchemaCatalogue
from services.eventing.settings import bootstrap_servers
from services.settlement.consumer import SettlementConsumer
from services.settlement.cycle_calendar import CycleCalendar
from services.settlement.finance_schedule import FinanceSchedule, ScheduleSettings
from services.settlement.ledger_store import LedgerStore
from services.settlement.schema_migrations import apply_migrations
from services.settlement.seller_tokens import AccessDenied, AccessSettings, Reader
from services.settlement.statement_documents import (
    Language,
    StatementTexts,
    UnknownLanguage,
    notification,
    render_html,
)
from services.settlement.statements_store import (
    CycleNotEnded,
    close_cycle,
    draft_statements,
    statements_of_cycle,
    statements_of_seller,
)

SERVICE = "settlement"
OPENAPI_DOCUMENT = Path(__file__).resolve().parent / "openapi.json"
DEFAULT_PORT = 8088
RETRY_S = (1, 2, 5, 10)
log = get_logger(__name__)


@dataclass(frozen=True)
class SettlementSettings:
    database_url: str
    bootstrap: str
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    start_at_ms: int | None = None  # a new ledger reads the topics from this instant

    @classmethod
    def from_env(cls) -> SettlementSettings:
        return cls(
            database_url=database_url(),
            bootstrap=bootstrap_servers(),
            host=os.environ.get("BOOMERANG_BIND_HOST") or "127.0.0.1",
            port=int(os.environ.get("SETTLEMENT_PORT") or DEFAULT_PORT),
            start_at_ms=int(os.environ["BOOMERANG_SETTLEMENT_START_AT_MS"])
            if os.environ.get("BOOMERANG_SETTLEMENT_START_AT_MS")
            else None,
        )


def database_url() -> str:
    """DATABASE_URL, or in a checkout this checkout's local cluster (started if needed)."""
    configured = os.environ.get("DATABASE_URL")
    if configured:
        return configured
    try:
        from services.tools.local_postgres.server import LocalPostgres, LocalPostgresSettings
    except ModuleNotFoundError as exc:
        raise RuntimeError("DATABASE_URL is not set (no local PostgreSQL here)") from exc
    return LocalPostgres(LocalPostgresSettings.from_env(log=log.info)).up()


class SettlementService:
    def __init__(self, settings: SettlementSettings, terms: SettlementTerms) -> None:
        self.settings = settings
        self.terms = terms
        self.calendar = CycleCalendar.from_env()
        self.codec = AvroCodec(SchemaCatalogue.load())
        self.consumer: SettlementConsumer | None = None
        self.failures = 0
        self.last_error = ""
        self.schedule: FinanceSchedule | None = None
        self.access = AccessSettings.from_env()
        self.texts = StatementTexts.load()

    async def consume(self, stop: asyncio.Event) -> None:
        """Book until stopped; after a failure, connect again and start from the ledger's
        offsets (the wait grows with the failures in a row, RETRY_S)."""
        in_a_row = 0
        while not stop.is_set():
            try:
                async with await AsyncConnection.connect(
                    self.settings.database_url, autocommit=True
                ) as conn:
                    applied = await apply_migrations(conn)
                    if applied:
                        log.info("ledger schema migrated", applied=applied)
                    self.consumer = SettlementConsumer(
                        self.settings.bootstrap,
                        conn,
                        self.codec,
                        self.terms,
                        calendar=self.calendar,
                        start_at_ms=self.settings.start_at_ms,
                    )
                    await self.consumer.start()
                    in_a_row = 0
                    try:
                        while not stop.is_set():
                            await self.consumer.poll_once(500)
                    finally:
                        await self.consumer.stop()
            except (psycopg.OperationalError, KafkaError, OSError) as exc:
                self.failures += 1
                in_a_row += 1
                self.last_error = repr(exc)
                wait_s = RETRY_S[min(in_a_row - 1, len(RETRY_S) - 1)]
                log.warning("settlement interrupted; starting again", error=repr(exc), in_s=wait_s)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), wait_s)

    def readings(self) -> loop_metrics.LoopReadings:
        """What /metrics shows of the booking consumer (engine/loop_metrics.py)."""
        consumer = self.consumer
        kafka = consumer.consumer if consumer else None
        return loop_metrics.LoopReadings(
            ready=kafka is not None,
            partitions_assigned=len(kafka.assignment()) if kafka else 0,
            in_flight=0,
            buffered=0,
            lag=consumer.lag() if consumer else {},
            state_entries={},
            keys_tracked=0,
            state_expired=0,
            skipped_as_applied=0,
        )

    async def health(self, _request: web.Request) -> web.Response:
        """200 while booking from Kafka into the ledger, 503 while (re)connecting."""
        consumer = self.consumer
        ready = consumer is not None and consumer.consumer is not None
        body: dict[str, object] = {
            "status": "ok" if ready else "starting",
            "service": SERVICE,
            "ready": ready,
            "booked": consumer.booked if consumer else 0,
            "records_read": consumer.read if consumer else 0,
            "duplicates": consumer.duplicates if consumer else 0,
            "restarts": self.failures,
            "last_error": self.last_error,
            "scheduled_runs": self.schedule.runs if self.schedule else {},
            "scheduled_last_error": self.schedule.last_error if self.schedule else "",
        }
        return web.json_response(body, status=200 if ready else 503)

    def _reader(self, request: web.Request) -> Reader:
        return self.access.reader(request.headers.get("Authorization"), now_ms())

    def _finance(self, request: web.Request) -> None:
        if not self._reader(request).is_finance:
            raise AccessDenied(403, "finance only")

    async def seller_statements(self, request: web.Request) -> web.Response:
        """GET /sellers/{id}/statements: the seller's closed statements (its own token, or
        finance)."""
        seller_id = request.match_info["seller_id"]
        if not self._reader(request).may_read(seller_id):
            raise AccessDenied(403, "a seller sees its own statements only")
        async with await AsyncConnection.connect(self.settings.database_url) as conn:
            found = await statements_of_seller(conn, seller_id)
        return web.json_response({"statements": found})

    async def seller_statement(self, request: web.Request) -> web.Response:
        """GET /sellers/{id}/statements/{cycle_id}[?format=csv|html][&lang=xx]: one closed
        statement per currency (JSON), or the CSV, or the readable page."""
        _, cycle_id, found = await self._sellers_statements_of_cycle(request)
        wanted = request.query.get("format", "json")
        if wanted == "csv":
            return web.Response(text=statements_csv(found), content_type="text/csv")
        if wanted == "html":
            language = self._language(request, found[0]["market"])
            page = "\n".join(render_html(statement, language) for statement in found)
            return web.Response(text=page, content_type="text/html", charset="utf-8")
        return web.json_response({"cycle_id": cycle_id, "statements": found})

    async def seller_notification(self, request: web.Request) -> web.Response:
        """GET /sellers/{id}/statements/{cycle_id}/notification[?lang=xx]: the message
        telling the seller its statement is ready, per currency."""
        seller_id, cycle_id, found = await self._sellers_statements_of_cycle(request)
        language = self._language(request, found[0]["market"])
        link = f"/sellers/{seller_id}/statements/{cycle_id}?format=html"
        return web.json_response(
            {"notifications": [notification(s, language, link) for s in found]}
        )

    async def _sellers_statements_of_cycle(
        self, request: web.Request
    ) -> tuple[str, str, list[dict[str, Any]]]:
        """The seller's statements of the cycle the path names (403: another seller's; 404:
        none)."""
        seller_id, cycle_id = request.match_info["seller_id"], request.match_info["cycle_id"]
        if not self._reader(request).may_read(seller_id):
            raise AccessDenied(403, "a seller sees its own statements only")
        async with await AsyncConnection.connect(self.settings.database_url) as conn:
            found = [
                s for s in await statements_of_cycle(conn, cycle_id) if s["seller_id"] == seller_id
            ]
        if not found:
            raise _RequestProblem(404, "not_found", f"no statement of {seller_id} in {cycle_id}")
        return seller_id, cycle_id, found

    def _language(self, request: web.Request, market: str) -> Language:
        try:
            return self.texts.language(market, request.query.get("lang"))
        except UnknownLanguage as exc:
            raise _RequestProblem(422, "unknown_language", str(exc)) from exc

    async def cycle_statements(self, request: web.Request) -> web.Response:
        """GET /statements/{cycle_id}[?format=csv]: every statement of the cycle (finance),
        or the asking seller's only."""
        reader = self._reader(request)
        cycle_id = request.match_info["cycle_id"]
        async with await AsyncConnection.connect(self.settings.database_url) as conn:
            found = await statements_of_cycle(conn, cycle_id)
        found = [s for s in found if reader.may_read(s["seller_id"])]
        if request.query.get("format") == "csv":
            return web.Response(text=statements_csv(found), content_type="text/csv")
        return web.json_response({"cycle_id": cycle_id, "statements": found})

    async def close(self, request: web.Request) -> web.Response:
        """POST /cycles/{market}/{number}/close: idempotent; 409 before the cycle ends."""
        market, number = self._cycle_of(request)
        try:
            async with await AsyncConnection.connect(self.settings.database_url) as conn:
                closed = await close_cycle(conn, self.calendar, market, number, now_ms())
        except CycleNotEnded as exc:
            return _problem(409, "cycle_not_ended", str(exc))
        except (ValueError, OverflowError) as exc:  # a number no calendar reaches
            return _problem(400, "invalid_cycle", str(exc))
        return web.json_response({"market": market, "number": number, "statements": closed})

    async def draft(self, request: web.Request) -> web.Response:
        """GET /cycles/{market}/{number}/draft: the statements of a cycle still open, as
        they would be if it closed now (a closed cycle: its statements)."""
        market, number = self._cycle_of(request)
        try:
            async with await AsyncConnection.connect(self.settings.database_url) as conn:
                drafted = await draft_statements(conn, self.calendar, market, number)
        except (ValueError, OverflowError) as exc:  # a number no calendar reaches
            return _problem(400, "invalid_cycle", str(exc))
        return web.json_response({"market": market, "number": number, "statements": drafted})

    def _cycle_of(self, request: web.Request) -> tuple[str, int]:
        """Finance only; the market and cycle number the path names (400: not a number)."""
        self._finance(request)
        market = _market_of(request)
        try:
            return market, int(request.match_info["number"])
        except ValueError:
            raise _RequestProblem(
                400, "invalid_cycle", "the cycle number is a whole number"
            ) from None

    async def current_cycle(self, request: web.Request) -> web.Response:
        """GET /cycles/{market}/current: the number and bounds of the market's open cycle."""
        market = _market_of(request)
        rule, zone = self.calendar.rule_and_zone(market)
        number = cycle_number(rule, zone, now_ms())
        running = cycle(rule, zone, number)
        return web.json_response(
            {
                "market": market,
                "number": number,
                "cycle_id": running.cycle_id,
                "starts_at_ms": running.start_ms,
                "ends_at_ms": running.end_ms,
            }
        )

    async def balances(self, request: web.Request) -> web.Response:
        self._finance(request)
        prefix = request.query.get("account", "")
        async with await AsyncConnection.connect(self.settings.database_url) as conn:
            store = LedgerStore(conn, "read")
            imbalance = await store.imbalance()
            balances = await store.balances(prefix)
        return web.json_response(
            {"ledger_balanced": not imbalance, "imbalance": imbalance, "balances": balances}
        )


async def serve(settings: SettlementSettings) -> int:
    service = SettlementService(settings, SettlementTerms())
    app = new_web_app(_problems)
    app.router.add_get("/health", service.health)
    add_metrics_page(app)
    loop_metrics.watch_loop(service.readings)
    add_openapi_page(app, OPENAPI_DOCUMENT)
    app.router.add_get("/sellers/{seller_id}/statements/{cycle_id}", service.seller_statement)
    app.router.add_get(
        "/sellers/{seller_id}/statements/{cycle_id}/notification", service.seller_notification
    )
    app.router.add_get("/ledger/balances", service.balances)
    app.router.add_get("/sellers/{seller_id}/statements", service.seller_statements)
    app.router.add_get("/statements/{cycle_id}", service.cycle_statements)
    app.router.add_post("/cycles/{market}/{number}/close", service.close)
    app.router.add_get("/cycles/{market}/current", service.current_cycle)
    app.router.add_get("/cycles/{market}/{number}/draft", service.draft)
    async with serving(app, settings.host, settings.port) as stop:
        schedule = FinanceSchedule(
            settings.database_url, service.calendar, ScheduleSettings.from_env()
        )
        service.schedule = schedule
        scheduled = asyncio.create_task(schedule.run(stop))
        try:
            await service.consume(stop)
        finally:
            stop.set()
            await scheduled
    log.info("stopped")
    return 0


class _RequestProblem(Exception):
    def __init__(self, status: int, error: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.error, self.detail = status, error, detail


@web.middleware
async def _problems(request: web.Request, handler: Any) -> web.StreamResponse:
    """Refused access is a 401/403, a bad parameter a 4xx, the database away a 503 with
    Retry-After: never a 500 for what is not a bug."""
    try:
        return await handler(request)
    except AccessDenied as exc:
        return _problem(
            exc.status, "unauthorized" if exc.status == 401 else "forbidden", exc.reason
        )
    except _RequestProblem as exc:
        return _problem(exc.status, exc.error, exc.detail)
    except psycopg.OperationalError as exc:
        response = _problem(503, "ledger_unavailable", f"the ledger database: {exc}".strip())
        response.headers["Retry-After"] = "5"
        return response


MARKET = re.compile(r"[A-Z]{2}")  # ISO 3166 alpha-2, as the documents say


def _market_of(request: web.Request) -> str:
    market = request.match_info["market"]
    if not MARKET.fullmatch(market):
        raise _RequestProblem(400, "invalid_market", "a market is two capital letters, e.g. DE")
    return market


def _problem(status: int, error: str, detail: str) -> web.Response:
    return web.json_response({"error": error, "detail": detail}, status=status)


def statements_csv(statements: list[dict]) -> str:
    """One row per statement line, in a flat layout accounting tools import."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(
        [
            "seller_id",
            "cycle_id",
            "currency",
            "return_id",
            "order_ref",
            "sku",
            "amount_type",
            "description",
            "amount_minor",
            "booked_at_ms",
        ]
    )
    for made in statements:
        for line in made["lines"]:
            writer.writerow(
                [
                    made["seller_id"],
                    made["cycle_id"],
                    made["currency"],
                    line["return_id"],
                    line["order_ref"],
                    line["sku"],
                    line["line_type"],
                    line["description"],
                    line["amount_minor"],
                    line["booked_at_ms"],
                ]
            )
    return out.getvalue()


def main() -> int:
    configure_logging(SERVICE)
    return asyncio.run(serve(SettlementSettings.from_env()))
