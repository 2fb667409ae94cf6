"""A partner's signed webhook becomes one event: the signature is checked (401 with the
reason otherwise), the body parsed into the event (422 with the fields otherwise), the event
published before the 202 answer names its id."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from services.eventing.handler_contract import HttpAnswer, HttpRequest, Outbound, Publish
from services.eventing.log_setup import event_context, get_logger
from services.eventing.request_fields import ApiError, parse_json_object
from services.eventing.webhook_signature import SignatureError, WebhookSignature

log = get_logger(__name__)


async def publish_signed_event(
    request: HttpRequest,
    *,
    signature: WebhookSignature,
    secret: bytes,
    now_s: int,
    event_of: Callable[[dict[str, Any]], Outbound],
    publish: Publish,
    logged_as: str,
    **log_fields: Any,
) -> HttpAnswer:
    try:
        signature.verify(secret, request.headers, request.body, now_s)
    except SignatureError as exc:
        raise ApiError(401, "bad_signature", str(exc)) from exc
    name, record, *_ = event_of(parse_json_object(request.body))
    with event_context(record["envelope"]):
        await publish([(name, record)])
        log.debug(logged_as, event_type=name, **log_fields)
    return HttpAnswer(202, {"accepted": True, "event_id": record["envelope"]["event_id"]})
