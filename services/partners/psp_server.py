"""Payment service provider double: a real local HTTP server that refunds buyers.

The refund service asks for a refund (`POST /refunds`, with an `Idempotency-Key`) and may void
a pending one (`POST /refunds/{refund_id}/void`). Every outcome, declines included, is
remembered per idempotency key, so a retried request never moves money twice. The ledger can
be kept in a JSON-lines file (`PSP_LEDGER_FILE`) so a restarted PSP still knows its refunds.
Faults (errors, latency, ghost successes, declines, pending refunds) come from a `PspFaults`
plan set at start (`PSP_FAULTS`) or at run time (`POST /admin/faults`).

    python -m services.partners.psp_server
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import sys
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

from aiohttp import web
from aiohttp.typedefs import Handler

from services.eventing.log_setup import configure_logging, get_logger
from services.partners.fault_injection import FaultPlan, FaultPlanError, codes_field, rate_field

SERVICE_NAME = "psp"
DEFAULT_DECLINE_CODES = ("account_closed", "card_expired", "do_not_honor")
CURRENCY_PATTERN = re.compile(r"[A-Z]{3}")
MAX_AMOUNT_MINOR = 10**12
MAX_TEXT_LENGTH = 500
MAX_IDEMPOTENCY_KEY_LENGTH = 255
REPLAYED_HEADERS = {"Idempotent-Replayed": "true"}

# refund statuses; pending and succeeded refunds have moved (or committed) money
SUCCEEDED = "succeeded"
PENDING = "pending"
DECLINED = "declined"
VOIDED = "voided"
MONEY_MOVING = frozenset({SUCCEEDED, PENDING})

log = get_logger(__name__)


@dataclass
class PspFaults(FaultPlan):
    """The shared faults plus the PSP's own: declined and pending refunds."""

    decline_rate: float = rate_field()
    decline_codes: tuple[str, ...] = codes_field(DEFAULT_DECLINE_CODES)
    pending_rate: float = rate_field()


@dataclass(frozen=True)
class PspSettings:
    host: str = "127.0.0.1"
    port: int = 8092
    ledger_file: Path | None = None
    settle_delay_ms: int = 1000
    faults: PspFaults = field(default_factory=PspFaults)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> PspSettings:
        """Settings from `PSP_*` variables; ValueError names the variable that is wrong."""
        defaults = cls()
        try:
            faults = PspFaults.from_json(env.get("PSP_FAULTS"))
        except FaultPlanError as exc:
            raise ValueError(f"PSP_FAULTS: {exc}") from exc
        ledger_file = env.get("PSP_LEDGER_FILE")
        return cls(
            host=env.get("PSP_HOST") or defaults.host,
            port=_env_int(env, "PSP_PORT", defaults.port, minimum=0),
            ledger_file=Path(ledger_file) if ledger_file else None,
            settle_delay_ms=_env_int(
                env, "PSP_SETTLE_DELAY_MS", defaults.settle_delay_ms, minimum=0
            ),
            faults=faults,
        )


@dataclass(frozen=True)
class RefundRequest:
    return_id: str
    amount_minor: int
    currency: str
    method: str
    reference: str | None


@dataclass
class Refund:
    refund_id: str
    idempotency_key: str
    request_fingerprint: str
    return_id: str
    amount_minor: int
    currency: str
    method: str
    reference: str | None
    status: str  # succeeded | pending | declined | voided
    decline_code: str | None
    created_at: int
    updated_at: int

    def to_json(self) -> dict[str, Any]:
        """What callers see (everything but the request fingerprint)."""
        public = asdict(self)
        del public["request_fingerprint"]
        return public

    def change_status(self, status: str) -> None:
        self.status = status
        self.updated_at = _now_ms()


class LedgerFile:
    """Append-only JSON lines: every refund's new state, and resets; replayed at start."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[str] | None = None

    def load(self) -> list[Refund]:
        """The latest state of every refund written since the last reset, oldest first."""
        refunds: dict[str, Refund] = {}
        if not self.path.exists():
            return []
        with self.path.open(encoding="utf-8") as lines:
            for line_no, line in enumerate(lines, start=1):
                try:
                    entry = json.loads(line)
                    if entry["op"] == "reset":
                        refunds.clear()
                    else:
                        refund = Refund(**entry["refund"])
                        refunds[refund.refund_id] = refund
                except (ValueError, KeyError, TypeError) as exc:
                    # a crash can leave a torn last line; everything before it still counts
                    log.warning("ledger line skipped", line_no=line_no, error=str(exc))
        return list(refunds.values())

    def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        torn_last_line = False
        if self.path.exists() and self.path.stat().st_size > 0:
            with self.path.open("rb") as existing:
                existing.seek(-1, os.SEEK_END)
                torn_last_line = existing.read(1) != b"\n"
        self._file = self.path.open("a", encoding="utf-8")
        if torn_last_line:  # start our lines on a fresh line
            self._file.write("\n")

    def append(self, entry: dict[str, Any]) -> None:
        assert self._file is not None, "the ledger file is not open"
        self._file.write(json.dumps(entry, sort_keys=True) + "\n")
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class ApiError(Exception):
    """An answer other than success, rendered as `{"error": code, "detail": reason}`."""

    def __init__(self, status: int, code: str, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.extra = extra

    def response(self) -> web.Response:
        body = {"error": self.code, "detail": self.detail, **self.extra}
        return web.json_response(body, status=self.status)


class PspDouble:
    """State and handlers of one PSP double; everything runs on one event loop."""

    def __init__(self, settings: PspSettings) -> None:
        self.settings = settings
        self.faults: PspFaults = settings.faults
        self.refunds: dict[str, Refund] = {}
        self._refunds_by_key: dict[str, Refund] = {}
        self._key_locks: dict[str, asyncio.Lock] = {}
        self._settlements: dict[str, asyncio.Task[None]] = {}
        self._ledger = LedgerFile(settings.ledger_file) if settings.ledger_file else None

    async def lifespan(self, _app: web.Application) -> AsyncIterator[None]:
        """aiohttp cleanup context: reload the ledger, settle what was pending, then tidy up."""
        if self._ledger is not None:
            for refund in self._ledger.load():
                self._remember(refund)
                if refund.status == PENDING:
                    self._schedule_settlement(refund)
            self._ledger.open()
        log.info(
            "psp double ready",
            port=self.settings.port,
            ledger_file=str(self.settings.ledger_file or ""),
            refunds_loaded=len(self.refunds),
            faults=self.faults.to_dict(),
        )
        try:
            yield
        finally:
            self._cancel_settlements()
            if self._ledger is not None:
                self._ledger.close()

    # --- refunds -------------------------------------------------------------------------

    async def create_refund(self, request: web.Request) -> web.Response:
        await self._inject_faults()
        key = _idempotency_key(request)
        payload = await _json_object(request)
        wanted = _refund_request(payload)
        request["return_id"] = wanted.return_id
        fingerprint = _fingerprint(payload)
        async with self._key_locks.setdefault(key, asyncio.Lock()):
            existing = self._refunds_by_key.get(key)
            if existing is not None:
                if existing.request_fingerprint != fingerprint:
                    raise _key_reused(key)
                log.info("refund replayed", refund_id=existing.refund_id, status=existing.status)
                return _refund_answer(existing, created=False)
            refund = self._decide(wanted, key, fingerprint)
            self._save(refund)
            if refund.status == PENDING:
                self._schedule_settlement(refund)
        log.info(
            "refund decided",
            refund_id=refund.refund_id,
            status=refund.status,
            decline_code=refund.decline_code,
            amount_minor=refund.amount_minor,
            currency=refund.currency,
        )
        self._ghost_if_planned("refund")
        return _refund_answer(refund, created=True)

    async def void_refund(self, request: web.Request) -> web.Response:
        await self._inject_faults()
        refund = self._refund(request.match_info["refund_id"])
        request["return_id"] = refund.return_id
        if refund.status == SUCCEEDED:
            raise ApiError(409, "already_settled", "the refund has settled; it cannot be voided")
        if refund.status == DECLINED:
            raise ApiError(409, "refund_declined", "the refund was declined; nothing to void")
        if refund.status == PENDING:
            refund.change_status(VOIDED)
            self._save(refund)
            settlement = self._settlements.pop(refund.refund_id, None)
            if settlement is not None:
                settlement.cancel()
            log.info("refund voided", refund_id=refund.refund_id)
            self._ghost_if_planned("void")
        return web.json_response(refund.to_json())

    async def get_refund(self, request: web.Request) -> web.Response:
        refund = self._refund(request.match_info["refund_id"])
        request["return_id"] = refund.return_id
        return web.json_response(refund.to_json())

    async def list_refunds(self, request: web.Request) -> web.Response:
        return_id = request.query.get("return_id")
        if return_id is not None:
            request["return_id"] = return_id
        refunds = [
            refund.to_json()
            for refund in self.refunds.values()
            if return_id is None or refund.return_id == return_id
        ]
        return web.json_response({"refunds": refunds})

    async def stats(self, _request: web.Request) -> web.Response:
        statuses = Counter(refund.status for refund in self.refunds.values())
        moving = [refund for refund in self.refunds.values() if refund.status in MONEY_MOVING]
        total_minor_by_currency: defaultdict[str, int] = defaultdict(int)
        for refund in moving:
            total_minor_by_currency[refund.currency] += refund.amount_minor
        per_return = Counter(refund.return_id for refund in moving)
        return web.json_response(
            {
                "refunds": len(moving),
                "declined": statuses[DECLINED],
                "voided": statuses[VOIDED],
                "total_minor_by_currency": dict(total_minor_by_currency),
                "duplicates": sum(1 for n in per_return.values() if n > 1),
            }
        )

    # --- admin ---------------------------------------------------------------------------

    async def get_faults(self, _request: web.Request) -> web.Response:
        return web.json_response(self.faults.to_dict())

    async def set_faults(self, request: web.Request) -> web.Response:
        changes = await _json_object(request)
        try:
            self.faults = self.faults.updated(changes)
        except FaultPlanError as exc:
            raise ApiError(400, "invalid_fault_plan", str(exc)) from exc
        log.info("fault plan changed", faults=self.faults.to_dict())
        return web.json_response(self.faults.to_dict())

    async def reset(self, _request: web.Request) -> web.Response:
        """Forget every refund (tests start from an empty ledger); the fault plan stays."""
        self._cancel_settlements()
        self.refunds.clear()
        self._refunds_by_key.clear()
        if self._ledger is not None:
            self._ledger.append({"op": "reset", "at": _now_ms()})
        log.info("ledger reset")
        return web.json_response({"status": "reset"})

    async def _inject_faults(self) -> None:
        """Latency, then maybe a 503 before anything is done."""
        if self.faults.latency_ms:
            await asyncio.sleep(self.faults.latency_s)
        if self.faults.should_error():
            log.warning("injected fault: answering 503 without doing anything")
            raise _unavailable()

    def _ghost_if_planned(self, what: str) -> None:
        """Maybe answer 503 although the operation was done (the caller never hears)."""
        if self.faults.should_ghost():
            log.warning("injected ghost: operation done, answering 503", operation=what)
            raise _unavailable()

    # --- ledger --------------------------------------------------------------------------

    def _decide(self, wanted: RefundRequest, key: str, fingerprint: str) -> Refund:
        faults = self.faults
        declined = faults.roll(faults.decline_rate)
        decline_code = faults.rng.choice(faults.decline_codes) if declined else None
        if decline_code is not None:
            status = DECLINED
        elif faults.roll(faults.pending_rate):
            status = PENDING
        else:
            status = SUCCEEDED
        now = _now_ms()
        return Refund(
            refund_id=f"rf_{uuid.uuid4().hex}",
            idempotency_key=key,
            request_fingerprint=fingerprint,
            return_id=wanted.return_id,
            amount_minor=wanted.amount_minor,
            currency=wanted.currency,
            method=wanted.method,
            reference=wanted.reference,
            status=status,
            decline_code=decline_code,
            created_at=now,
            updated_at=now,
        )

    def _remember(self, refund: Refund) -> None:
        self.refunds[refund.refund_id] = refund
        self._refunds_by_key[refund.idempotency_key] = refund

    def _save(self, refund: Refund) -> None:
        """Remember the refund's new state, and write it to the ledger file if there is one."""
        self._remember(refund)
        if self._ledger is not None:
            self._ledger.append({"op": "refund", "at": _now_ms(), "refund": asdict(refund)})

    def _refund(self, refund_id: str) -> Refund:
        refund = self.refunds.get(refund_id)
        if refund is None:
            raise ApiError(404, "not_found", f"no refund {refund_id!r}")
        return refund

    def _schedule_settlement(self, refund: Refund) -> None:
        self._settlements[refund.refund_id] = asyncio.create_task(self._settle(refund))

    async def _settle(self, refund: Refund) -> None:
        """A pending refund settles after the delay unless it was voided meanwhile."""
        await asyncio.sleep(self.settings.settle_delay_ms / 1000)
        self._settlements.pop(refund.refund_id, None)
        if refund.status == PENDING and self.refunds.get(refund.refund_id) is refund:
            refund.change_status(SUCCEEDED)
            self._save(refund)
            log.info("refund settled", refund_id=refund.refund_id, return_id=refund.return_id)

    def _cancel_settlements(self) -> None:
        for settlement in self._settlements.values():
            settlement.cancel()
        self._settlements.clear()


# --- app -----------------------------------------------------------------------------------


def create_app(settings: PspSettings) -> web.Application:
    psp = PspDouble(settings)
    app = web.Application(middlewares=[_errors_and_request_log])
    app.cleanup_ctx.append(psp.lifespan)
    app.router.add_get("/health", _health)
    app.router.add_get("/admin/faults", psp.get_faults)
    app.router.add_post("/admin/faults", psp.set_faults)
    app.router.add_post("/admin/reset", psp.reset)
    app.router.add_post("/refunds", psp.create_refund)
    app.router.add_get("/refunds", psp.list_refunds)
    app.router.add_get("/refunds/stats", psp.stats)
    app.router.add_get("/refunds/{refund_id}", psp.get_refund)
    app.router.add_post("/refunds/{refund_id}/void", psp.void_refund)
    return app


def main() -> int:
    configure_logging(SERVICE_NAME)
    try:
        settings = PspSettings.from_env(os.environ)
    except ValueError as exc:
        log.error("invalid settings", error=str(exc))
        return 2
    # run_app turns SIGTERM/SIGINT into a graceful shutdown (cleanup contexts run)
    web.run_app(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        print=None,
        access_log=None,
        shutdown_timeout=5.0,
    )
    log.info("psp double stopped")
    return 0


# --- HTTP helpers --------------------------------------------------------------------------


def _refund_answer(refund: Refund, *, created: bool) -> web.Response:
    """201 for a new refund, 200 + replay header for a repeat; a decline is a 402 either way."""
    headers = None if created else REPLAYED_HEADERS
    if refund.status == DECLINED:
        body = {
            "error": "refund_declined",
            "detail": f"the refund was declined ({refund.decline_code})",
            **refund.to_json(),
        }
        return web.json_response(body, status=402, headers=headers)
    return web.json_response(refund.to_json(), status=201 if created else 200, headers=headers)


@web.middleware
async def _errors_and_request_log(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure as JSON `{"error", "detail"}`, and one structured log line per request."""
    started = time.perf_counter()
    try:
        response = await handler(request)
    except ApiError as exc:
        response = exc.response()
    except web.HTTPException as exc:  # aiohttp's own: unknown route, wrong method, too large
        code = exc.reason.lower().replace(" ", "_")
        response = ApiError(exc.status, code, exc.reason).response()
    except Exception:
        log.exception("request failed", method=request.method, path=request.path)
        response = ApiError(500, "internal_error", "unexpected error, see the logs").response()
    log.info(
        "request",
        method=request.method,
        path=request.path,
        status=response.status,
        duration_ms=round((time.perf_counter() - started) * 1000, 1),
        return_id=request.get("return_id"),
    )
    return response


async def _health(_request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def _idempotency_key(request: web.Request) -> str:
    key = request.headers.get("Idempotency-Key", "").strip()
    if not key:
        raise ApiError(400, "missing_idempotency_key", "the Idempotency-Key header is required")
    if len(key) > MAX_IDEMPOTENCY_KEY_LENGTH:
        raise ApiError(
            400,
            "invalid_idempotency_key",
            f"the Idempotency-Key header is longer than {MAX_IDEMPOTENCY_KEY_LENGTH} characters",
        )
    return key


async def _json_object(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    try:
        payload = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ApiError(400, "invalid_json", f"the body is not valid JSON: {exc}") from exc
    if not isinstance(payload, dict):
        raise ApiError(400, "invalid_json", "the body must be a JSON object")
    return payload


def _fingerprint(payload: Mapping[str, Any]) -> str:
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _refund_request(payload: Mapping[str, Any]) -> RefundRequest:
    reference = payload.get("reference")
    return RefundRequest(
        return_id=_text(payload, "return_id"),
        amount_minor=_amount_minor(payload, "amount_minor"),
        currency=_currency(payload, "currency"),
        method=_text(payload, "method"),
        reference=None if reference is None else _text(payload, "reference"),
    )


def _amount_minor(payload: Mapping[str, Any], name: str) -> int:
    """Money is a whole number of minor units (cents): no floats, no bools, more than zero."""
    value = _required(payload, name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _invalid_field(name, f"must be an integer number of minor units, got {value!r}")
    if not 0 < value <= MAX_AMOUNT_MINOR:
        raise _invalid_field(name, f"must be from 1 to {MAX_AMOUNT_MINOR}, got {value}")
    return value


def _currency(payload: Mapping[str, Any], name: str) -> str:
    value = _required(payload, name)
    if not isinstance(value, str) or not CURRENCY_PATTERN.fullmatch(value):
        raise _invalid_field(name, f"must be three upper-case letters (ISO 4217), got {value!r}")
    return value


def _text(payload: Mapping[str, Any], name: str) -> str:
    value = _required(payload, name)
    if not isinstance(value, str) or not value.strip():
        raise _invalid_field(name, "must be a non-empty string")
    if len(value) > MAX_TEXT_LENGTH:
        raise _invalid_field(name, f"must be at most {MAX_TEXT_LENGTH} characters")
    return value


def _required(payload: Mapping[str, Any], name: str) -> Any:
    if payload.get(name) is None:
        raise ApiError(422, "missing_field", f"{name} is required", field=name)
    return payload[name]


def _invalid_field(name: str, reason: str) -> ApiError:
    return ApiError(422, "invalid_field", f"{name} {reason}", field=name)


def _key_reused(key: str) -> ApiError:
    return ApiError(
        409,
        "idempotency_key_reused",
        f"Idempotency-Key {key!r} was already used with a different body",
    )


def _unavailable() -> ApiError:
    return ApiError(503, "service_unavailable", "the payment provider is temporarily unavailable")


def _env_int(env: Mapping[str, str], name: str, default: int, *, minimum: int) -> int:
    raw = env.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise ValueError(f"{name} must be an integer, got {raw!r}") from exc
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
    return value


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


if __name__ == "__main__":
    sys.exit(main())
