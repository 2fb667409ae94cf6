"""Notification-provider double: a real local HTTP server that takes messages for buyers and
sellers (as an e-mail/SMS/push provider would: the recipient by id, the provider knows how to
reach them) and remembers every one.

`POST /messages` needs an `Idempotency-Key`: the same key and body are one message (200
replayed), the same key with another body is a 409. `POST /messages/batch` takes up to
BATCH_MAX messages, each with its `idempotency_key`, and answers 200 with one result per
entry, in order (`status` 201, 200, 409 or 422 as the single send would have; as SNS's
PublishBatch does): the same key sent alone or in a batch is one message.
`GET /messages?return_id=` lists them; `GET /messages/stats` counts them: `delivered`,
`replays` (sends the key made harmless) and `duplicates` (a message with the same
recipient, return, milestone and words as one already delivered under another key: a
notifier that told someone twice). Faults as the other doubles (`NOTIFY_FAULTS`:
error_rate, latency_ms, ghost_rate; a batch fails or ghosts whole); `NOTIFY_LEDGER_FILE`
keeps the messages across restarts.

    python -m services.tools.partners.notify_server
"""

from __future__ import annotations

import sys
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from services.eventing.log_setup import get_logger
from services.tools.partners import http_support, partner_double
from services.tools.partners.fault_injection import FaultPlan
from services.tools.partners.json_lines_ledger import JsonLinesLedger

SERVICE_NAME = "notify"
ROLES = ("buyer", "seller")
MAX_TEXT = 4_000
LISTED = 1_000
BATCH_MAX = 100

log = get_logger(__name__)


@dataclass(frozen=True)
class NotifySettings:
    host: str = "127.0.0.1"
    port: int = 8095
    ledger_file: Path | None = None
    faults: FaultPlan = field(default_factory=FaultPlan)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> NotifySettings:
        defaults = cls()
        return cls(
            host=env.get("NOTIFY_HOST") or defaults.host,
            port=http_support.env_int(env, "NOTIFY_PORT", defaults.port, minimum=0),
            ledger_file=http_support.env_path(env, "NOTIFY_LEDGER_FILE"),
            faults=partner_double.faults_from_env(FaultPlan, env, "NOTIFY_FAULTS"),
        )


@dataclass(frozen=True)
class WantedMessage:
    return_id: str
    recipient_role: str
    recipient_id: str
    milestone: str
    language: str
    subject: str
    body: str


@dataclass
class Message:
    message_id: str
    idempotency_key: str
    request_fingerprint: str
    return_id: str
    recipient_role: str
    recipient_id: str
    milestone: str
    language: str
    subject: str
    body: str
    created_at: int

    def to_json(self) -> dict[str, Any]:
        public = asdict(self)
        del public["request_fingerprint"]
        return public

    @property
    def words(self) -> tuple[str, ...]:
        return (self.recipient_id, self.return_id, self.milestone, self.subject, self.body)


def _wanted(payload: Mapping[str, Any]) -> WantedMessage:
    role = http_support.text_field(payload, "recipient_role")
    if role not in ROLES:
        raise http_support.invalid_field("recipient_role", f"must be one of {list(ROLES)}")
    texts = {
        name: http_support.text_field(payload, name)
        for name in ("return_id", "recipient_id", "milestone", "language", "subject", "body")
    }
    for name in ("subject", "body"):
        if len(texts[name]) > MAX_TEXT:
            raise http_support.invalid_field(name, f"is longer than {MAX_TEXT} characters")
    return WantedMessage(recipient_role=role, **texts)


def _batch_entries(payload: Mapping[str, Any]) -> list[dict[str, Any]]:
    entries = payload.get("messages")
    if not isinstance(entries, list) or not 1 <= len(entries) <= BATCH_MAX:
        raise http_support.invalid_field("messages", f"must be a list of 1 to {BATCH_MAX}")
    if not all(isinstance(entry, dict) for entry in entries):
        raise http_support.invalid_field("messages", "must hold JSON objects")
    keys = [entry.get("idempotency_key") for entry in entries]
    if len({str(key) for key in keys}) != len(keys):
        raise http_support.invalid_field("messages", "repeat an idempotency_key")
    return entries


class NotifyDouble(partner_double.PartnerDouble[FaultPlan, Message]):
    def __init__(self, settings: NotifySettings) -> None:
        super().__init__(settings.faults, partner="notification provider")
        self.settings = settings
        self.messages: dict[str, Message] = {}  # message_id -> message
        self.replays = 0
        self._ledger = JsonLinesLedger(settings.ledger_file)

    async def lifespan(self, _app: web.Application) -> AsyncIterator[None]:
        self._ledger.replay(self._replay)
        self._ledger.open()
        log.info("notify double ready", port=self.settings.port, messages=len(self.messages))
        try:
            yield
        finally:
            self._ledger.close()

    def _replay(self, entry: dict[str, Any]) -> None:
        if entry["op"] == "reset":
            self._forget_all()
            return
        message = Message(**entry["message"])
        self.messages[message.message_id] = message
        self.keys.records[message.idempotency_key] = message

    def _forget_all(self) -> None:
        self.messages.clear()
        self.keys.records.clear()
        self.replays = 0

    def _create(self, wanted: WantedMessage, key: str, fingerprint: str) -> Message:
        message = Message(
            f"MSG-{uuid.uuid4().hex[:16].upper()}",
            key,
            fingerprint,
            created_at=http_support.now_ms(),
            **asdict(wanted),
        )
        self.messages[message.message_id] = message
        return message

    def _answered(self, message: Message, created: bool, *, alone: bool) -> None:
        if not created:
            self.replays += 1
        (log.info if alone else log.debug)(
            "message answered",
            message_id=message.message_id,
            milestone=message.milestone,
            recipient_role=message.recipient_role,
            replayed=not created,
        )

    @partner_double.route("POST", "/messages")
    async def send_message(self, request: web.Request) -> web.Response:
        await self.inject_faults()
        message, created = await self.keys.create_once(request, _wanted, self._create)
        self._answered(message, created, alone=True)
        if created:
            self._ledger.append({"op": "message", "message": asdict(message)})
            self.ghost_if_planned("message")
        return http_support.creation_answer(message.to_json(), created=created)

    @partner_double.route("POST", "/messages/batch")
    async def send_batch(self, request: web.Request) -> web.Response:
        """Several messages in one request; each entry succeeds or fails on its own."""
        await self.inject_faults()
        entries = _batch_entries(await http_support.json_object(request))
        results: list[dict[str, Any]] = []
        created: list[Message] = []
        for entry in entries:
            key = entry.get("idempotency_key")
            try:
                if not isinstance(key, str) or not key.strip():
                    raise http_support.invalid_field("idempotency_key", "must be a text")
                if len(key) > http_support.MAX_IDEMPOTENCY_KEY_LENGTH:
                    raise http_support.invalid_field("idempotency_key", "is too long")
                fields = {name: value for name, value in entry.items() if name != "idempotency_key"}
                message, new = await self.keys.create_keyed(
                    key, _wanted(fields), http_support.request_fingerprint(fields), self._create
                )
            except http_support.ApiError as refused:
                results.append(
                    {
                        "idempotency_key": key if isinstance(key, str) else None,
                        "status": refused.status,
                        "error": refused.code,
                        "detail": refused.detail,
                    }
                )
                continue
            self._answered(message, new, alone=False)
            if new:
                created.append(message)
            results.append(
                {"idempotency_key": key, "status": 201 if new else 200, **message.to_json()}
            )
        # one ledger write and one log line per batch (a line per message was most of the
        # double's cost, on the cores the loop shares)
        self._ledger.append_many([{"op": "message", "message": asdict(m)} for m in created])
        log.info("batch answered", messages=len(entries), created=len(created))
        if created:
            self.ghost_if_planned("message batch")
        return web.json_response({"results": results})

    @partner_double.route("GET", "/messages")
    async def list_messages(self, request: web.Request) -> web.Response:
        listed = http_support.filter_by_return_id(request, self.messages.values())
        return web.json_response({"messages": [m.to_json() for m in listed[-LISTED:]]})

    @partner_double.route("GET", "/messages/stats")
    async def stats(self, _request: web.Request) -> web.Response:
        same_words = Counter(message.words for message in self.messages.values())
        return web.json_response(
            {
                "delivered": len(self.messages),
                "replays": self.replays,
                "duplicates": sum(n - 1 for n in same_words.values() if n > 1),
                "by_milestone": dict(
                    sorted(Counter(m.milestone for m in self.messages.values()).items())
                ),
            }
        )

    @partner_double.route("POST", "/admin/reset")
    async def reset(self, _request: web.Request) -> web.Response:
        self._forget_all()
        self._ledger.append({"op": "reset"})
        return web.json_response({"reset": True})


def main() -> int:
    return partner_double.run_double(SERVICE_NAME, NotifySettings.from_env, NotifyDouble)


if __name__ == "__main__":
    sys.exit(main())
