"""The partner doubles as real OS processes: the carrier (bookings, signed at-least-once
callbacks, cancellation, faults) and the payment provider (idempotent refunds, declines, ghost
successes, pending/void, a ledger that survives a restart, refunds per payment method, BNPL
plans, signed settlement webhooks). No Kafka, no mocks.

Most tests share one carrier and one PSP process (starting one costs about a second); each
test puts the fault plan (and the PSP's ledger) back to a clean state first and uses its own
return ids. Tests that need their own settings start their own process.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import defaultdict, deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web

from services.eventing import webhook_signature
from services.eventing.webhook_signature import CARRIER_SIGNATURE, PSP_SIGNATURE
from tests.support.cli_process import run_python_module

REPO_ROOT = Path(__file__).resolve().parents[2]
SIGNING_SECRET = "test-carrier-secret"
WEBHOOK_SECRET = "test-psp-webhook-secret"
SETTLE_DELAY_MS = 400  # a pending card refund, in the shared PSP
TRANSFER_SETTLE_MS = 1000  # direct debit and bank transfer, in the shared PSP
DAY_MS = 24 * 3600 * 1000
STARTUP_TIMEOUT_S = 15.0
NO_CARRIER_FAULTS = {
    "error_rate": 0,
    "latency_ms": 0,
    "ghost_rate": 0,
    "attempt_failure_rate": 0,
    "max_failed_attempts": 0,
    "damage_rate": 0,
}
NO_PSP_FAULTS = {
    "error_rate": 0,
    "latency_ms": 0,
    "ghost_rate": 0,
    "decline_rate": 0,
    "pending_rate": 0,
    "decline_codes": ["account_closed", "card_expired", "do_not_honor"],
    "settlement_failure_rate": 0,
    "webhook_duplicate_rate": 0,
}


# --- partner processes ---------------------------------------------------------------------


@dataclass
class PartnerProcess:
    base_url: str
    process: subprocess.Popen[bytes]
    output_path: Path

    def output(self) -> str:
        return self.output_path.read_text(encoding="utf-8", errors="replace")

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, timeout=10.0)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def partner_env(prefix: str, port: int, settings: dict[str, str]) -> dict[str, str]:
    """This environment without any inherited `<prefix>*` setting, plus the given ones."""
    env = {name: value for name, value in os.environ.items() if not name.startswith(prefix)}
    env.update(
        {f"{prefix}HOST": "127.0.0.1", f"{prefix}PORT": str(port), "BOOMERANG_LOG_FORMAT": "json"}
    )
    env.update(settings)
    return env


def stop_process(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def partner_process(
    module: str, prefix: str, settings: dict[str, str], output_path: Path
) -> Iterator[PartnerProcess]:
    """`python -m services.tools.partners.<module>` on a free port, answering /health; stopped
    after."""
    port = free_port()
    with output_path.open("ab") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", f"services.tools.partners.{module}"],
            cwd=REPO_ROOT,
            env=partner_env(prefix, port, settings),
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        partner = PartnerProcess(f"http://127.0.0.1:{port}", process, output_path)
        try:
            wait_until_healthy(partner)
            yield partner
        finally:
            stop_process(process)


@contextmanager
def own_partner(
    module: str, prefix: str, settings: dict[str, str], output_dir: Path
) -> Iterator[tuple[PartnerProcess, httpx.Client]]:
    """A partner process of the test's own, and a client for it."""
    output_dir.mkdir(parents=True, exist_ok=True)
    with (
        partner_process(module, prefix, settings, output_dir / f"{module}.log") as partner,
        partner.client() as client,
    ):
        yield partner, client


def wait_until_healthy(partner: PartnerProcess) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if partner.process.poll() is not None:
            pytest.fail(f"partner exited with {partner.process.returncode}:\n{partner.output()}")
        try:
            if httpx.get(f"{partner.base_url}/health", timeout=1.0).json() == {"status": "ok"}:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    pytest.fail(f"partner not healthy after {STARTUP_TIMEOUT_S}s:\n{partner.output()}")


def set_faults(partner: httpx.Client, **plan: Any) -> None:
    """Post these fault settings to a partner double's /admin/faults."""
    partner.post("/admin/faults", json=plan).raise_for_status()


def wait_for(condition: Callable[[], Any], what: str, timeout_s: float = 5.0) -> Any:
    """Poll until `condition()` is truthy and return it."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(0.02)


# --- callback receiver ---------------------------------------------------------------------


@dataclass(frozen=True)
class ReceivedCallback:
    body: bytes
    timestamp_header: str | None
    signature_header: str | None
    answered: int

    @property
    def payload(self) -> dict[str, Any]:
        return json.loads(self.body)


def carrier_return_id(payload: dict[str, Any]) -> str:
    return str(payload["return_id"])


def psp_return_id(payload: dict[str, Any]) -> str:
    return str(payload["refund"]["return_id"])


class CallbackReceiver:
    """A real aiohttp server, in a background thread, that records signed callbacks: the
    carrier's by default, the PSP's settlement webhooks with `psp_webhooks()`.

    It answers 200 unless told to answer something else for a return's next callbacks.
    """

    PATH = "/carrier/callbacks"

    def __init__(
        self,
        port: int = 0,
        *,
        path: str = PATH,
        headers: tuple[str, str] = (
            CARRIER_SIGNATURE.timestamp_header,
            CARRIER_SIGNATURE.signature_header,
        ),
        return_id_of: Callable[[dict[str, Any]], str] = carrier_return_id,
    ) -> None:
        self.port = port
        self.path = path
        self._headers = headers
        self._return_id_of = return_id_of
        self._received: list[ReceivedCallback] = []
        self._scripted: defaultdict[str, deque[int]] = defaultdict(deque)
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._serve, name="callback-receiver", daemon=True)
        self._started = threading.Event()
        self._start_error: BaseException | None = None

    @classmethod
    def psp_webhooks(cls, port: int = 0) -> CallbackReceiver:
        return cls(
            port,
            path="/webhooks/psp",
            headers=(PSP_SIGNATURE.timestamp_header, PSP_SIGNATURE.signature_header),
            return_id_of=psp_return_id,
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.path}"

    def start(self) -> None:
        self._thread.start()
        if not self._started.wait(10) or self._start_error is not None:
            raise RuntimeError(f"callback receiver did not start: {self._start_error!r}")

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def answer(self, return_id: str, *statuses: int) -> None:
        """Answer the next callbacks for `return_id` with these statuses (then 200 again)."""
        with self._lock:
            self._scripted[return_id].extend(statuses)

    def callbacks(self, return_id: str) -> list[ReceivedCallback]:
        with self._lock:
            return [c for c in self._received if self._return_id_of(c.payload) == return_id]

    def wait_for_collected(self, return_id: str, timeout_s: float = 5.0) -> list[ReceivedCallback]:
        """Every callback for `return_id` so far, once an acknowledged `collected` is among them."""

        def once_collected() -> list[ReceivedCallback] | None:
            callbacks = self.callbacks(return_id)
            done = any(c.payload["status"] == "collected" and c.answered == 200 for c in callbacks)
            return callbacks if done else None

        return wait_for(once_collected, f"a collected callback for {return_id}", timeout_s)

    def wait_for_acknowledged(
        self, return_id: str, count: int = 1, timeout_s: float = 5.0
    ) -> list[ReceivedCallback]:
        """Every callback for `return_id` so far, once `count` of them were answered 200."""

        def once_acknowledged() -> list[ReceivedCallback] | None:
            callbacks = self.callbacks(return_id)
            done = sum(1 for c in callbacks if c.answered == 200) >= count
            return callbacks if done else None

        return wait_for(once_acknowledged, f"{count} acknowledged for {return_id}", timeout_s)

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_post(self.path, self._receive)
        runner = web.AppRunner(app)
        try:
            self._loop.run_until_complete(runner.setup())
            self._loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", self.port).start())
            self.port = runner.addresses[0][1]
        except BaseException as exc:
            self._start_error = exc
            self._started.set()
            return
        self._started.set()
        self._loop.run_forever()
        self._loop.run_until_complete(runner.cleanup())
        self._loop.close()

    async def _receive(self, request: web.Request) -> web.Response:
        body = await request.read()
        return_id = self._return_id_of(json.loads(body))
        timestamp_header, signature_header = self._headers
        with self._lock:
            scripted = self._scripted[return_id]
            status = scripted.popleft() if scripted else 200
            self._received.append(
                ReceivedCallback(
                    body=body,
                    timestamp_header=request.headers.get(timestamp_header),
                    signature_header=request.headers.get(signature_header),
                    answered=status,
                )
            )
        return web.json_response({"received": status == 200}, status=status)


@contextmanager
def running_receiver(port: int = 0, *, psp_webhooks: bool = False) -> Iterator[CallbackReceiver]:
    receiver = CallbackReceiver.psp_webhooks(port) if psp_webhooks else CallbackReceiver(port)
    receiver.start()
    try:
        yield receiver
    finally:
        receiver.stop()


# --- fixtures ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def receiver() -> Iterator[CallbackReceiver]:
    with running_receiver() as started:
        yield started


@pytest.fixture(scope="module")
def carrier_process(
    receiver: CallbackReceiver, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PartnerProcess]:
    settings = {
        "CARRIER_CALLBACK_URL": receiver.url,
        "CARRIER_SIGNING_SECRET": SIGNING_SECRET,
        "CARRIER_CALLBACK_DELAY_MS": "50",
    }
    output = tmp_path_factory.mktemp("carrier") / "carrier.log"
    with partner_process("carrier_server", "CARRIER_", settings, output) as started:
        yield started


@pytest.fixture
def carrier(carrier_process: PartnerProcess) -> Iterator[httpx.Client]:
    """A client for the shared carrier, whose fault plan is back to "no faults"."""
    with carrier_process.client() as client:
        set_faults(client, **NO_CARRIER_FAULTS)
        yield client


@pytest.fixture(scope="module")
def webhooks() -> Iterator[CallbackReceiver]:
    """Receives the settlement webhooks of every PSP these tests start."""
    with running_receiver(psp_webhooks=True) as started:
        yield started


def psp_settings(webhooks: CallbackReceiver, **more: str) -> dict[str, str]:
    return {
        "PSP_SETTLE_DELAY_MS": str(SETTLE_DELAY_MS),
        "PSP_TRANSFER_SETTLE_MS": str(TRANSFER_SETTLE_MS),
        "PSP_WEBHOOK_URL": webhooks.url,
        "PSP_WEBHOOK_SECRET": WEBHOOK_SECRET,
        **more,
    }


@pytest.fixture(scope="module")
def psp_process(
    webhooks: CallbackReceiver, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PartnerProcess]:
    output = tmp_path_factory.mktemp("psp") / "psp.log"
    with partner_process("psp_server", "PSP_", psp_settings(webhooks), output) as started:
        yield started


@pytest.fixture
def psp(psp_process: PartnerProcess) -> Iterator[httpx.Client]:
    """A client for the shared PSP, with an empty ledger and no faults."""
    with psp_process.client() as client:
        set_faults(client, **NO_PSP_FAULTS)
        client.post("/admin/reset").raise_for_status()
        yield client


def new_key() -> str:
    return f"key-{uuid.uuid4()}"


def pickup_body(**overrides: Any) -> dict[str, Any]:
    return {
        "return_id": f"ret-{uuid.uuid4()}",
        "buyer_id": "buyer-17",
        "pickup_address": "12 Rue des Lilas, 75011 Paris",
        "parcel_count": 1,
        **overrides,
    }


def refund_body(**overrides: Any) -> dict[str, Any]:
    return {
        "return_id": f"ret-{uuid.uuid4()}",
        "amount_minor": 2599,
        "currency": "EUR",
        "method": "card",
        **overrides,
    }


def book(carrier: httpx.Client, body: dict[str, Any], key: str | None = None) -> httpx.Response:
    return carrier.post("/pickups", json=body, headers={"Idempotency-Key": key or new_key()})


def pickups_for(carrier: httpx.Client, return_id: str) -> list[dict[str, Any]]:
    return carrier.get("/pickups", params={"return_id": return_id}).json()["pickups"]


def ask_refund(psp: httpx.Client, body: dict[str, Any], key: str | None = None) -> httpx.Response:
    return psp.post("/refunds", json=body, headers={"Idempotency-Key": key or new_key()})


# --- carrier: booking ------------------------------------------------------------------------


def test_carrier_books_a_pickup_with_201(carrier: httpx.Client) -> None:
    body = pickup_body(parcel_count=2)
    response = book(carrier, body)

    assert response.status_code == 201
    booking = response.json()
    assert booking["return_id"] == body["return_id"]
    assert booking["carrier"] == "double-express"
    assert booking["status"] == "scheduled"
    assert booking["booking_id"] and booking["tracking_number"]
    assert isinstance(booking["window_start"], int)
    assert booking["window_start"] < booking["window_end"]
    assert "Idempotent-Replayed" not in response.headers


def test_carrier_replays_a_booking_for_the_same_key_and_body(carrier: httpx.Client) -> None:
    body, key = pickup_body(), new_key()
    first = book(carrier, body, key)
    again = book(carrier, body, key)

    assert (first.status_code, again.status_code) == (201, 200)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["booking_id"] == first.json()["booking_id"]
    assert len(pickups_for(carrier, body["return_id"])) == 1


def test_carrier_refuses_a_key_reused_with_another_body(carrier: httpx.Client) -> None:
    key = new_key()
    assert book(carrier, pickup_body(), key).status_code == 201

    response = book(carrier, pickup_body(), key)

    assert response.status_code == 409
    assert response.json()["error"] == "idempotency_key_reused"


def test_carrier_requires_an_idempotency_key(carrier: httpx.Client) -> None:
    response = carrier.post("/pickups", json=pickup_body())

    assert response.status_code == 400
    assert response.json()["error"] == "missing_idempotency_key"


def test_carrier_rejects_malformed_json_with_400(carrier: httpx.Client) -> None:
    response = carrier.post(
        "/pickups", content=b'{"return_id": ', headers={"Idempotency-Key": new_key()}
    )

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_json"
    assert response.json()["detail"]


def test_carrier_names_a_missing_field_in_a_422(carrier: httpx.Client) -> None:
    body = pickup_body()
    del body["pickup_address"]

    response = book(carrier, body)

    assert response.status_code == 422
    assert response.json()["error"] == "missing_field"
    assert "pickup_address" in response.json()["detail"]


def test_carrier_ghost_booking_is_kept_and_replayed_on_retry(carrier: httpx.Client) -> None:
    set_faults(carrier, ghost_rate=1)
    body, key = pickup_body(), new_key()

    assert book(carrier, body, key).status_code == 503
    [booked] = pickups_for(carrier, body["return_id"])
    retry = book(carrier, body, key)

    assert retry.status_code == 200
    assert retry.json()["booking_id"] == booked["booking_id"]
    assert len(pickups_for(carrier, body["return_id"])) == 1


def test_carrier_error_rate_one_answers_503_and_books_nothing(carrier: httpx.Client) -> None:
    set_faults(carrier, error_rate=1)
    body = pickup_body()

    response = book(carrier, body)

    assert response.status_code == 503
    assert response.json()["error"] == "service_unavailable"
    assert pickups_for(carrier, body["return_id"]) == []


def test_carrier_admin_faults_take_partial_updates_and_reject_bad_values(
    carrier: httpx.Client,
) -> None:
    updated = carrier.post("/admin/faults", json={"damage_rate": 0.25, "seed": 42})
    refused = carrier.post("/admin/faults", json={"attempt_failure_rate": 1.5})

    assert updated.status_code == 200
    assert refused.status_code == 400
    assert refused.json()["error"] == "invalid_fault_plan"
    assert "attempt_failure_rate" in refused.json()["detail"]
    plan = carrier.get("/admin/faults").json()
    assert (plan["damage_rate"], plan["seed"], plan["attempt_failure_rate"]) == (0.25, 42, 0.0)


# --- carrier: callbacks ----------------------------------------------------------------------


def test_carrier_sends_a_signed_collected_callback(
    carrier: httpx.Client, receiver: CallbackReceiver
) -> None:
    body = pickup_body()
    booking = book(carrier, body).json()

    [collected] = receiver.wait_for_collected(body["return_id"])

    webhook_signature.verify(
        SIGNING_SECRET.encode(),
        collected.timestamp_header,
        collected.signature_header,
        collected.body,
        now_s=int(time.time()),
    )
    callback = collected.payload
    assert callback["booking_id"] == booking["booking_id"]
    assert callback["tracking_number"] == booking["tracking_number"]
    assert callback["status"] == "collected"
    assert callback["reason"] is None
    assert callback["attempt_no"] == 1
    assert callback["carrier_noted_damage"] is False
    assert isinstance(callback["parcel_weight_grams"], int)
    assert uuid.UUID(callback["callback_id"])


def test_carrier_retries_a_callback_after_5xx_with_the_same_callback_id(
    carrier: httpx.Client, receiver: CallbackReceiver
) -> None:
    body = pickup_body()
    receiver.answer(body["return_id"], 500, 500)
    book(carrier, body)

    tries = receiver.wait_for_collected(body["return_id"])

    assert [c.answered for c in tries] == [500, 500, 200]
    assert len({c.payload["callback_id"] for c in tries}) == 1
    wait_for(
        lambda: pickups_for(carrier, body["return_id"])[0]["callbacks_sent"] == 1,
        "the carrier to count the delivered callback",
    )


def test_carrier_does_not_retry_a_callback_refused_with_400(
    carrier: httpx.Client, receiver: CallbackReceiver
) -> None:
    body = pickup_body()
    receiver.answer(body["return_id"], 400)
    book(carrier, body)

    wait_for(lambda: receiver.callbacks(body["return_id"]), "the first callback")
    time.sleep(0.8)  # retries would have come at ~0.2 s and ~0.6 s

    assert [c.answered for c in receiver.callbacks(body["return_id"])] == [400]


def test_carrier_reports_failed_attempts_before_collection(
    carrier: httpx.Client, receiver: CallbackReceiver
) -> None:
    set_faults(carrier, max_failed_attempts=2, attempt_failure_rate=1)
    body = pickup_body()
    book(carrier, body)

    callbacks = [c.payload for c in receiver.wait_for_collected(body["return_id"])]

    assert [c["status"] for c in callbacks] == ["attempt_failed", "attempt_failed", "collected"]
    assert [c["attempt_no"] for c in callbacks] == [1, 2, 3]
    assert {c["reason"] for c in callbacks[:2]} <= {"BUYER_ABSENT", "PARCEL_NOT_READY"}
    assert callbacks[2]["reason"] is None
    assert [c["parcel_weight_grams"] for c in callbacks[:2]] == [None, None]
    assert len({c["callback_id"] for c in callbacks}) == 3


def test_carrier_cancel_stops_further_callbacks(
    carrier: httpx.Client, receiver: CallbackReceiver
) -> None:
    # the parcel is never ready, so the carrier keeps trying until the booking is cancelled
    set_faults(carrier, max_failed_attempts=20, attempt_failure_rate=1)
    body = pickup_body()
    booking_id = book(carrier, body).json()["booking_id"]
    wait_for(lambda: receiver.callbacks(body["return_id"]), "a first attempt_failed callback")

    cancelled = carrier.delete(f"/pickups/{booking_id}")
    cancelled_again = carrier.delete(f"/pickups/{booking_id}")
    time.sleep(0.1)  # lets a callback that was already on the wire land
    seen = len(receiver.callbacks(body["return_id"]))
    time.sleep(0.4)  # eight callback delays

    expected = {"booking_id": booking_id, "status": "cancelled"}
    assert (cancelled.status_code, cancelled.json()) == (200, expected)
    assert (cancelled_again.status_code, cancelled_again.json()) == (200, expected)
    callbacks = receiver.callbacks(body["return_id"])
    assert len(callbacks) == seen
    assert all(c.payload["status"] == "attempt_failed" for c in callbacks)
    assert pickups_for(carrier, body["return_id"])[0]["status"] == "cancelled"


def test_carrier_refuses_to_cancel_a_collected_pickup(
    carrier: httpx.Client, receiver: CallbackReceiver
) -> None:
    body = pickup_body()
    booking_id = book(carrier, body).json()["booking_id"]
    receiver.wait_for_collected(body["return_id"])

    response = carrier.delete(f"/pickups/{booking_id}")

    assert response.status_code == 409
    assert response.json()["error"] == "already_collected"


def test_carrier_cancel_of_an_unknown_booking_is_404(carrier: httpx.Client) -> None:
    response = carrier.delete(f"/pickups/{uuid.uuid4()}")

    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


def test_carrier_delivers_callbacks_once_the_receiver_comes_up(tmp_path: Path) -> None:
    receiver_port = free_port()  # nothing listens here yet
    settings = {
        "CARRIER_CALLBACK_URL": f"http://127.0.0.1:{receiver_port}{CallbackReceiver.PATH}",
        "CARRIER_SIGNING_SECRET": SIGNING_SECRET,
        "CARRIER_CALLBACK_DELAY_MS": "50",
    }
    with own_partner("carrier_server", "CARRIER_", settings, tmp_path) as (proc, carrier):
        body = pickup_body()
        book(carrier, body).raise_for_status()
        wait_for(lambda: "callback not delivered" in proc.output(), "a failed delivery")

        with running_receiver(receiver_port) as late_receiver:
            [collected] = late_receiver.wait_for_collected(body["return_id"])

    assert collected.payload["status"] == "collected"


def test_carrier_fault_plan_comes_from_the_environment(
    receiver: CallbackReceiver, tmp_path: Path
) -> None:
    settings = {
        "CARRIER_CALLBACK_URL": receiver.url,
        "CARRIER_CALLBACK_DELAY_MS": "50",
        "CARRIER_FAULTS": json.dumps({"damage_rate": 1, "seed": 7}),
    }
    with own_partner("carrier_server", "CARRIER_", settings, tmp_path) as (_, carrier):
        plan = carrier.get("/admin/faults").json()
        body = pickup_body()
        book(carrier, body).raise_for_status()
        [collected] = receiver.wait_for_collected(body["return_id"])

    assert (plan["damage_rate"], plan["seed"]) == (1.0, 7)
    assert collected.payload["carrier_noted_damage"] is True


def test_carrier_refuses_to_start_with_an_invalid_fault_plan() -> None:
    env = partner_env("CARRIER_", free_port(), {"CARRIER_FAULTS": '{"error_rate": 2}'})
    finished = run_python_module("services.tools.partners.carrier_server", env=env, timeout=30)

    assert finished.returncode == 2
    assert "error_rate" in finished.stderr


def test_carrier_stats_count_bookings_cancellations_collections_and_duplicates(
    receiver: CallbackReceiver, tmp_path: Path
) -> None:
    settings = {"CARRIER_CALLBACK_URL": receiver.url, "CARRIER_CALLBACK_DELAY_MS": "300"}
    with own_partner("carrier_server", "CARRIER_", settings, tmp_path) as (_, carrier):
        twice = pickup_body()
        book(carrier, twice).raise_for_status()
        book(carrier, twice).raise_for_status()  # a second key: a duplicate booking
        cancelled_id = book(carrier, pickup_body()).json()["booking_id"]
        carrier.delete(f"/pickups/{cancelled_id}").raise_for_status()
        wait_for(
            lambda: all(
                p["status"] == "collected" for p in pickups_for(carrier, twice["return_id"])
            ),
            "both bookings to be collected",
        )

        stats = carrier.get("/pickups/stats").json()
        listed = pickups_for(carrier, twice["return_id"])

    assert stats == {"bookings": 3, "cancelled": 1, "collected": 2, "duplicate_bookings": 1}
    assert [p["bookings_for_key"] for p in listed] == [2, 2]


# --- PSP -------------------------------------------------------------------------------------


def test_psp_refunds_with_201(psp: httpx.Client) -> None:
    body, key = refund_body(reference="RMA-1"), new_key()

    response = ask_refund(psp, body, key)

    assert response.status_code == 201
    refund = response.json()
    assert refund["refund_id"]
    assert refund["status"] == "succeeded"
    assert (refund["return_id"], refund["amount_minor"], refund["currency"]) == (
        body["return_id"],
        2599,
        "EUR",
    )
    # the method is accepted in any case and answered upper-case
    assert (refund["method"], refund["idempotency_key"]) == ("CARD", key)
    assert (refund["provider"], refund["settles_at"]) == ("psp", None)
    assert isinstance(refund["created_at"], int)


def test_psp_replay_returns_the_same_refund_and_moves_money_once(psp: httpx.Client) -> None:
    body, key = refund_body(), new_key()
    first = ask_refund(psp, body, key)
    again = ask_refund(psp, body, key)

    assert (first.status_code, again.status_code) == (201, 200)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["refund_id"] == first.json()["refund_id"]
    stats = psp.get("/refunds/stats").json()
    assert stats["refunds"] == 1
    assert stats["total_minor_by_currency"] == {"EUR": 2599}


def test_psp_refuses_a_key_reused_with_another_body(psp: httpx.Client) -> None:
    key = new_key()
    assert ask_refund(psp, refund_body(), key).status_code == 201

    response = ask_refund(psp, refund_body(amount_minor=100), key)

    assert response.status_code == 409
    assert response.json()["error"] == "idempotency_key_reused"


@pytest.mark.parametrize("amount", [25.99, 2599.0, True, 0, -100, "2599"])
def test_psp_rejects_an_amount_that_is_not_a_positive_integer(
    psp: httpx.Client, amount: object
) -> None:
    response = ask_refund(psp, refund_body(amount_minor=amount))

    assert response.status_code == 422
    assert response.json()["error"] == "invalid_field"
    assert "amount_minor" in response.json()["detail"]


@pytest.mark.parametrize("currency", ["eur", "EURO", "E1R", 978])
def test_psp_rejects_a_currency_that_is_not_iso_4217_shaped(
    psp: httpx.Client, currency: object
) -> None:
    response = ask_refund(psp, refund_body(currency=currency))

    assert response.status_code == 422
    assert "currency" in response.json()["detail"]


def test_psp_requires_an_idempotency_key(psp: httpx.Client) -> None:
    response = psp.post("/refunds", json=refund_body())

    assert response.status_code == 400
    assert response.json()["error"] == "missing_idempotency_key"


def test_psp_decline_is_remembered_for_the_key_and_moves_no_money(psp: httpx.Client) -> None:
    set_faults(psp, decline_rate=1)
    body, key = refund_body(), new_key()

    declined = ask_refund(psp, body, key)
    set_faults(psp, decline_rate=0)
    replayed = ask_refund(psp, body, key)

    assert declined.status_code == 402
    assert declined.json()["status"] == "declined"
    assert declined.json()["decline_code"] in NO_PSP_FAULTS["decline_codes"]
    assert replayed.status_code == 402
    assert replayed.headers["Idempotent-Replayed"] == "true"
    assert replayed.json()["decline_code"] == declined.json()["decline_code"]
    assert replayed.json()["refund_id"] == declined.json()["refund_id"]
    stats = psp.get("/refunds/stats").json()
    assert (stats["refunds"], stats["declined"], stats["total_minor_by_currency"]) == (0, 1, {})


def test_psp_ghost_refund_is_recorded_and_a_retry_returns_it(psp: httpx.Client) -> None:
    set_faults(psp, ghost_rate=1)
    body, key = refund_body(), new_key()

    lost = ask_refund(psp, body, key)
    [recorded] = psp.get("/refunds", params={"return_id": body["return_id"]}).json()["refunds"]
    retry = ask_refund(psp, body, key)  # ghosts only hide new work; a replay is answered

    assert lost.status_code == 503
    assert recorded["status"] == "succeeded"
    assert retry.status_code == 200
    assert retry.json()["refund_id"] == recorded["refund_id"]
    assert psp.get("/refunds/stats").json()["refunds"] == 1


def test_psp_pending_refund_can_be_voided(psp: httpx.Client, webhooks: CallbackReceiver) -> None:
    set_faults(psp, pending_rate=1)
    body = refund_body()
    refund = ask_refund(psp, body).json()

    voided = psp.post(f"/refunds/{refund['refund_id']}/void")
    voided_again = psp.post(f"/refunds/{refund['refund_id']}/void")

    assert refund["status"] == "pending"
    assert (voided.status_code, voided.json()["status"]) == (200, "voided")
    assert (voided_again.status_code, voided_again.json()["status"]) == (200, "voided")
    time.sleep(0.5)  # past the settle delay: a voided refund stays voided
    [listed] = psp.get("/refunds", params={"return_id": body["return_id"]}).json()["refunds"]
    assert listed["status"] == "voided"
    assert webhooks.callbacks(body["return_id"]) == []  # and sends no webhook
    stats = psp.get("/refunds/stats").json()
    assert (stats["refunds"], stats["voided"], stats["total_minor_by_currency"]) == (0, 1, {})


def test_psp_pending_refund_settles_to_succeeded(psp: httpx.Client) -> None:
    set_faults(psp, pending_rate=1)
    body = refund_body()
    refund_id = ask_refund(psp, body).json()["refund_id"]

    wait_for(
        lambda: psp.get(f"/refunds/{refund_id}").json()["status"] == "succeeded",
        "the pending refund to settle",
    )
    assert psp.get("/refunds/stats").json()["refunds"] == 1


def test_psp_refuses_to_void_a_settled_refund(psp: httpx.Client) -> None:
    refund_id = ask_refund(psp, refund_body()).json()["refund_id"]

    response = psp.post(f"/refunds/{refund_id}/void")

    assert response.status_code == 409
    assert response.json()["error"] == "already_settled"


def test_psp_void_of_an_unknown_refund_is_404(psp: httpx.Client) -> None:
    response = psp.post("/refunds/rf_nope/void")

    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


def test_psp_concurrent_requests_with_one_key_make_one_refund(
    psp: httpx.Client, psp_process: PartnerProcess
) -> None:
    set_faults(psp, latency_ms=30)  # they all overlap
    body, key = refund_body(), new_key()

    async def twenty_at_once() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=psp_process.base_url, timeout=10.0) as client:
            requests = [
                client.post("/refunds", json=body, headers={"Idempotency-Key": key})
                for _ in range(20)
            ]
            return await asyncio.gather(*requests)

    responses = asyncio.run(twenty_at_once())

    assert sorted(r.status_code for r in responses) == [200] * 19 + [201]
    assert len({r.json()["refund_id"] for r in responses}) == 1
    assert psp.get("/refunds/stats").json()["refunds"] == 1


def test_psp_stats_count_duplicates_and_totals_per_currency(psp: httpx.Client) -> None:
    twice = refund_body()
    ask_refund(psp, twice).raise_for_status()
    ask_refund(psp, twice).raise_for_status()  # a second key: the buyer is refunded twice
    ask_refund(psp, refund_body(amount_minor=10000, currency="SEK")).raise_for_status()

    stats = psp.get("/refunds/stats").json()

    assert stats == {
        "refunds": 3,
        "declined": 0,
        "voided": 0,
        "failed": 0,
        "total_minor_by_currency": {"EUR": 5198, "SEK": 10000},
        "duplicates": 1,
        "by_method": {"CARD": 3},
    }


def test_psp_admin_faults_reject_bad_values(psp: httpx.Client) -> None:
    response = psp.post("/admin/faults", json={"decline_codes": []})

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_fault_plan"
    assert "decline_codes" in response.json()["detail"]


def test_psp_ledger_file_survives_a_restart(tmp_path: Path) -> None:
    settings = {"PSP_LEDGER_FILE": str(tmp_path / "ledger" / "refunds.jsonl")}
    body, key = refund_body(), new_key()
    with own_partner("psp_server", "PSP_", settings, tmp_path / "first") as (first, psp):
        refund_id = ask_refund(psp, body, key).json()["refund_id"]
        stop_process(first.process)
    assert first.process.returncode == 0, first.output()  # SIGTERM is a clean shutdown

    with own_partner("psp_server", "PSP_", settings, tmp_path / "second") as (_, psp):
        listed = psp.get("/refunds", params={"return_id": body["return_id"]}).json()["refunds"]
        replayed = ask_refund(psp, body, key)
        stats = psp.get("/refunds/stats").json()

    assert [refund["refund_id"] for refund in listed] == [refund_id]
    assert (replayed.status_code, replayed.json()["refund_id"]) == (200, refund_id)
    assert stats["refunds"] == 1


# --- PSP: refunds per payment method -----------------------------------------------------------


def verified_webhook(received: ReceivedCallback) -> dict[str, Any]:
    """The webhook's payload, once its PSP signature checks out."""
    webhook_signature.verify(
        WEBHOOK_SECRET.encode(),
        received.timestamp_header,
        received.signature_header,
        received.body,
        now_s=int(time.time()),
    )
    return received.payload


def refund_status(psp: httpx.Client, refund_id: str) -> str:
    return str(psp.get(f"/refunds/{refund_id}").json()["status"])


def wait_until_webhook_delivered(psp: httpx.Client, refund_id: str) -> None:
    """Until the PSP notes that the refund's settlement webhook was acknowledged."""
    wait_for(
        lambda: psp.get(f"/refunds/{refund_id}").json()["webhook_delivered"],
        "the PSP to note the delivery",
    )


def bnpl_body(order_ref: str, amount_minor: int, **overrides: Any) -> dict[str, Any]:
    return refund_body(
        method="BNPL",
        amount_minor=amount_minor,
        order_ref=order_ref,
        order_paid_minor=10_000,
        **overrides,
    )


def plan_of(refund: dict[str, Any]) -> list[tuple[int, str]]:
    return [(i["amount_minor"], i["status"]) for i in refund["schedule"]]


@pytest.mark.parametrize("method", ["EWALLET", "STORE_CREDIT"])
def test_psp_ewallet_and_store_credit_refunds_succeed_at_once(
    psp: httpx.Client, webhooks: CallbackReceiver, method: str
) -> None:
    set_faults(psp, pending_rate=1)  # cards only
    body = refund_body(method=method)

    response = ask_refund(psp, body)

    assert response.status_code == 201
    refund = response.json()
    assert (refund["status"], refund["method"], refund["provider"]) == ("succeeded", method, "psp")
    assert refund["settles_at"] is None
    assert "webhook_delivered" not in refund  # never pending: no webhook to deliver
    assert psp.get("/refunds/stats").json()["by_method"] == {method: 1}
    time.sleep(0.2)
    assert webhooks.callbacks(body["return_id"]) == []  # nothing was pending: no webhook


def test_psp_pending_card_refund_settles_with_a_signed_webhook(
    psp: httpx.Client, webhooks: CallbackReceiver
) -> None:
    set_faults(psp, pending_rate=1)
    body = refund_body(method="CARD")
    pending = ask_refund(psp, body).json()

    [received] = webhooks.wait_for_acknowledged(body["return_id"])

    assert pending["status"] == "pending"
    assert pending["settles_at"] == pending["created_at"] + SETTLE_DELAY_MS
    webhook = verified_webhook(received)
    assert webhook["webhook_id"] == f"wh_{pending['refund_id']}_succeeded"
    assert (webhook["type"], webhook["provider"]) == ("refund.settled", "psp")
    settled = webhook["refund"]
    assert (settled["refund_id"], settled["status"]) == (pending["refund_id"], "succeeded")
    assert (settled["amount_minor"], settled["currency"], settled["method"]) == (
        2599,
        "EUR",
        "CARD",
    )
    assert settled["settles_at"] == pending["settles_at"]
    assert webhook["occurred_at"] == settled["updated_at"] >= pending["settles_at"]
    wait_until_webhook_delivered(psp, pending["refund_id"])


def test_psp_direct_debit_is_pending_until_the_transfer_delay(
    psp: httpx.Client, webhooks: CallbackReceiver
) -> None:
    body = refund_body(method="DIRECT_DEBIT")
    pending = ask_refund(psp, body).json()
    time.sleep((SETTLE_DELAY_MS + 150) / 1000)  # past a card's delay, not a transfer's
    still_pending = refund_status(psp, pending["refund_id"])

    [received] = webhooks.wait_for_acknowledged(body["return_id"])

    assert pending["status"] == still_pending == "pending"
    assert pending["settles_at"] == pending["created_at"] + TRANSFER_SETTLE_MS
    webhook = verified_webhook(received)
    assert (webhook["type"], webhook["refund"]["method"]) == ("refund.settled", "DIRECT_DEBIT")
    assert webhook["occurred_at"] >= pending["settles_at"]
    assert refund_status(psp, pending["refund_id"]) == "succeeded"
    assert psp.get("/refunds/stats").json()["by_method"] == {"DIRECT_DEBIT": 1}


@pytest.mark.parametrize(
    "bank_account",
    [
        None,
        "DE89370400440532013000",
        {"holder": "A. Buyer", "number": "DE89370400440532013000"},
        {"holder": "", "number": "DE89370400440532013000", "bank_code": "COBADEFFXXX"},
        {"holder": "A. Buyer", "number": "12345", "bank_code": "COBADEFFXXX"},
        {"holder": "A. Buyer", "number": "DE89-3704-0044", "bank_code": "COBADEFFXXX"},
        {"holder": "A. Buyer", "number": "D" * 35, "bank_code": "COBADEFFXXX"},
    ],
    ids=["missing", "not-an-object", "no-bank-code", "no-holder", "short", "dashes", "long"],
)
def test_psp_bank_transfer_without_a_valid_bank_account_is_422(
    psp: httpx.Client, bank_account: object
) -> None:
    body = refund_body(method="BANK_TRANSFER")
    if bank_account is not None:
        body["bank_account"] = bank_account

    response = ask_refund(psp, body)

    assert response.status_code == 422
    assert response.json()["error"] in ("missing_field", "invalid_field")
    assert response.json()["field"] == "bank_account"
    assert "bank_account" in response.json()["detail"]
    assert psp.get("/refunds", params={"return_id": body["return_id"]}).json()["refunds"] == []


def test_psp_bank_transfer_is_pending_and_keeps_only_the_last_digits(psp: httpx.Client) -> None:
    account = {"holder": "A. Buyer", "number": "DE89 3704 0044 0532 0130 00", "bank_code": "X1"}

    refund = ask_refund(psp, refund_body(method="BANK_TRANSFER", bank_account=account)).json()

    assert refund["status"] == "pending"
    assert refund["settles_at"] == refund["created_at"] + TRANSFER_SETTLE_MS
    assert refund["bank_account"] == {
        "holder": "A. Buyer",
        "number": "******************3000",
        "bank_code": "X1",
    }


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"order_ref": None}, "order_ref"),
        ({"order_ref": " "}, "order_ref"),
        ({"order_paid_minor": None}, "order_paid_minor"),
        ({"order_paid_minor": 2_000}, "order_paid_minor"),  # less than the refund
        ({"order_paid_minor": 100.0}, "order_paid_minor"),
    ],
    ids=["no-order-ref", "blank-order-ref", "no-paid-total", "paid-below-refund", "float"],
)
def test_psp_bnpl_needs_the_order_and_its_paid_total(
    psp: httpx.Client, changes: dict[str, Any], field: str
) -> None:
    body = {**bnpl_body("ORD-1", 3_000), **changes}

    response = ask_refund(psp, body)

    assert response.status_code == 422
    assert response.json()["field"] == field


def test_psp_bnpl_partial_refunds_reduce_the_plan_and_survive_a_restart(
    tmp_path: Path,
) -> None:
    settings = {"PSP_LEDGER_FILE": str(tmp_path / "ledger.jsonl"), "PSP_NAME": "psp-bnpl"}
    order_ref = f"ORD-{uuid.uuid4()}"
    with own_partner("psp_server", "PSP_", settings, tmp_path / "first") as (first, psp):
        one = ask_refund(psp, bnpl_body(order_ref, 3_000)).json()
        two = ask_refund(psp, bnpl_body(order_ref, 5_000)).json()
        other_order = ask_refund(psp, bnpl_body(f"ORD-{uuid.uuid4()}", 1_000)).json()
        stop_process(first.process)

    with own_partner("psp_server", "PSP_", settings, tmp_path / "second") as (_, psp):
        three = ask_refund(psp, bnpl_body(order_ref, 1_000)).json()
        too_much = ask_refund(psp, bnpl_body(order_ref, 1_001))  # 10 001 of 10 000 paid
        stats = psp.get("/refunds/stats").json()

    assert [r["status"] for r in (one, two, three)] == ["succeeded"] * 3
    assert one["provider"] == "psp-bnpl"
    # the last instalment is reduced first; what exceeds everything due goes to the buyer
    paid, due, cancelled = "PAID", "DUE", "CANCELLED"
    assert plan_of(one) == [(2_500, paid), (2_500, due), (2_000, due), (0, cancelled)]
    assert one["refunded_to_buyer_minor"] == 0
    assert plan_of(two) == [(2_500, paid), (0, cancelled), (0, cancelled), (0, cancelled)]
    assert two["refunded_to_buyer_minor"] == 500
    assert plan_of(three) == plan_of(two)  # the plan came back after the restart
    assert three["refunded_to_buyer_minor"] == 1_000
    assert plan_of(other_order) == [(2_500, paid), (2_500, due), (2_500, due), (1_500, due)]
    # planned at the first refund, monthly
    due_dates = [i["due_at"] for i in three["schedule"]]
    assert due_dates == [one["created_at"] + n * 30 * DAY_MS for n in range(4)]
    assert too_much.status_code == 402
    assert too_much.json()["decline_code"] == "refund_exceeds_capture"
    assert (stats["refunds"], stats["declined"], stats["by_method"]) == (4, 1, {"BNPL": 4})


def test_psp_settlement_failure_ends_failed_with_a_refund_failed_webhook(
    psp: httpx.Client, webhooks: CallbackReceiver
) -> None:
    set_faults(psp, settlement_failure_rate=1)
    body = refund_body(method="DIRECT_DEBIT", amount_minor=4_000)
    pending = ask_refund(psp, body).json()

    [received] = webhooks.wait_for_acknowledged(body["return_id"])

    webhook = verified_webhook(received)
    assert webhook["webhook_id"] == f"wh_{pending['refund_id']}_failed"
    assert webhook["type"] == "refund.failed"
    assert (webhook["refund"]["status"], webhook["refund"]["decline_code"]) == (
        "failed",
        "account_closed",
    )
    stats = psp.get("/refunds/stats").json()
    assert (stats["refunds"], stats["failed"], stats["total_minor_by_currency"]) == (0, 1, {})
    assert stats["by_method"] == {}
    void = psp.post(f"/refunds/{pending['refund_id']}/void")
    assert (void.status_code, void.json()["error"]) == (409, "refund_failed")


def test_psp_webhook_is_retried_until_the_receiver_answers_2xx(
    psp: httpx.Client, webhooks: CallbackReceiver
) -> None:
    set_faults(psp, pending_rate=1)
    body = refund_body()
    webhooks.answer(body["return_id"], 500, 503)
    refund_id = ask_refund(psp, body).json()["refund_id"]

    tries = webhooks.wait_for_acknowledged(body["return_id"], timeout_s=8.0)

    assert [t.answered for t in tries] == [500, 503, 200]
    assert len({t.body for t in tries}) == 1  # the same bytes every time
    for received in tries:
        verified_webhook(received)  # each try signed afresh
    wait_until_webhook_delivered(psp, refund_id)


def test_psp_duplicate_webhook_fault_sends_a_delivered_webhook_twice(
    psp: httpx.Client, webhooks: CallbackReceiver
) -> None:
    set_faults(psp, pending_rate=1, webhook_duplicate_rate=1)
    body = refund_body()
    ask_refund(psp, body).raise_for_status()

    twice = webhooks.wait_for_acknowledged(body["return_id"], count=2)

    assert len(twice) == 2
    assert twice[0].payload == twice[1].payload


def test_psp_resends_an_undelivered_webhook_after_a_restart(
    webhooks: CallbackReceiver, tmp_path: Path
) -> None:
    ledger = {"PSP_LEDGER_FILE": str(tmp_path / "ledger.jsonl")}
    nobody_listens = f"http://127.0.0.1:{free_port()}/webhooks/psp"
    down = psp_settings(webhooks, PSP_WEBHOOK_URL=nobody_listens, PSP_SETTLE_DELAY_MS="50")
    body = refund_body()
    with own_partner(
        "psp_server",
        "PSP_",
        {**down, **ledger, "PSP_FAULTS": '{"pending_rate": 1}'},
        tmp_path / "a",
    ) as (first, psp):
        refund_id = ask_refund(psp, body).json()["refund_id"]
        wait_for(lambda: "webhook not delivered" in first.output(), "a failed delivery")
        before_restart = psp.get(f"/refunds/{refund_id}").json()
        stop_process(first.process)

    with own_partner(
        "psp_server", "PSP_", {**psp_settings(webhooks), **ledger}, tmp_path / "b"
    ) as (
        second,
        psp,
    ):
        [received] = webhooks.wait_for_acknowledged(body["return_id"])
        wait_until_webhook_delivered(psp, refund_id)
        stop_process(second.process)

    with own_partner("psp_server", "PSP_", {**psp_settings(webhooks), **ledger}, tmp_path / "c"):
        time.sleep(0.3)  # a delivered webhook is not sent again

    assert (before_restart["status"], before_restart["webhook_delivered"]) == (
        "succeeded",
        False,
    )
    assert verified_webhook(received)["webhook_id"] == f"wh_{refund_id}_succeeded"
    assert len(webhooks.callbacks(body["return_id"])) == 1


def test_psp_redeliver_endpoint_resends_the_webhooks_of_ended_pending_refunds(
    psp: httpx.Client, webhooks: CallbackReceiver
) -> None:
    set_faults(psp, pending_rate=1)
    settled, other, voided = refund_body(), refund_body(), refund_body()
    ask_refund(psp, settled).raise_for_status()
    ask_refund(psp, other).raise_for_status()
    voided_id = ask_refund(psp, voided).json()["refund_id"]
    psp.post(f"/refunds/{voided_id}/void").raise_for_status()
    ask_refund(psp, refund_body(method="EWALLET")).raise_for_status()  # never pending
    [first] = webhooks.wait_for_acknowledged(settled["return_id"])
    webhooks.wait_for_acknowledged(other["return_id"])

    one = psp.post("/admin/webhooks/redeliver", json={"return_id": settled["return_id"]})
    [_, again] = webhooks.wait_for_acknowledged(settled["return_id"], count=2)
    every = psp.post("/admin/webhooks/redeliver")

    assert one.json() == {"queued": 1, "in_flight": 0}
    assert again.payload == first.payload  # same webhook_id: the receiver drops it
    assert every.json()["queued"] == 2  # settled and other; not the voided one
    webhooks.wait_for_acknowledged(settled["return_id"], count=3)
    webhooks.wait_for_acknowledged(other["return_id"], count=2)
    assert webhooks.callbacks(voided["return_id"]) == []


@pytest.mark.parametrize("method", ["CHEQUE", "VOUCHER", 7])
def test_psp_refuses_an_unknown_method_with_422(psp: httpx.Client, method: object) -> None:
    response = ask_refund(psp, refund_body(method=method))

    assert response.status_code == 422
    assert response.json()["error"] == "invalid_field"
    assert response.json()["field"] == "method"
    assert "method" in response.json()["detail"]


# --- psp: the daily settlement report --------------------------------------------------------


def _report(psp: httpx.Client, day: str) -> list[dict[str, str]]:
    response = psp.get("/reports/settlement", params={"date": day})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    return list(csv.DictReader(io.StringIO(response.text)))


def test_psp_reports_the_days_refunds_with_fees_and_bends_lines_on_request(
    psp: httpx.Client,
) -> None:
    keys = [new_key() for _ in range(9)]
    for n, key in enumerate(keys):
        assert ask_refund(psp, refund_body(amount_minor=10_000 + n), key).status_code == 201
    assert ask_refund(psp, refund_body(method="STORE_CREDIT")).status_code == 201
    today = datetime.now(UTC).date()

    lines = _report(psp, today.isoformat())

    assert sorted(line["merchant_reference"] for line in lines) == sorted(keys)  # no store credit
    first = next(line for line in lines if line["merchant_reference"] == keys[0])
    assert (first["type"], first["gross_minor"], first["fee_minor"], first["net_minor"]) == (
        "Refunded",
        "10000",
        "20",  # 20 bps
        "10020",
    )
    assert first["booking_date"] == today.isoformat() and first["currency"] == "EUR"

    kinds = ["timing", "missing", "unknown", "amount", "currency", "duplicate", "fee", "status"]
    answer = psp.post("/admin/report-anomalies", json={"date": today.isoformat(), "kinds": kinds})
    assert answer.status_code == 200
    bent = {a["kind"]: a for a in answer.json()["anomalies"]}
    assert set(bent) == set(kinds)
    by_ref: dict[str, list[dict[str, str]]] = {}
    for line in _report(psp, today.isoformat()):
        by_ref.setdefault(line["provider_reference"], []).append(line)
    assert bent["timing"]["provider_reference"] not in by_ref
    assert bent["missing"]["provider_reference"] not in by_ref
    assert by_ref[bent["unknown"]["provider_reference"]][0]["merchant_reference"] not in keys
    assert len(by_ref[bent["duplicate"]["provider_reference"]]) == 2
    assert by_ref[bent["status"]["provider_reference"]][0]["type"] == "RefundFailed"
    assert by_ref[bent["currency"]["provider_reference"]][0]["currency"] == "USD"
    tomorrow = [line["provider_reference"] for line in _report(psp, str(today + timedelta(1)))]
    assert tomorrow == [bent["timing"]["provider_reference"]]


def test_psp_report_names_a_wrong_date_in_a_422(psp: httpx.Client) -> None:
    assert psp.get("/reports/settlement", params={"date": "yesterday"}).status_code == 422
    answer = psp.post("/admin/report-anomalies", json={"date": "2026-01-01", "kinds": ["fee"]})
    assert answer.status_code == 422 and "too few" in answer.json()["detail"]
    answer = psp.post("/admin/report-anomalies", json={"date": "2026-01-01", "kinds": ["nope"]})
    assert answer.status_code == 422
