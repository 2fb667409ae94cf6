"""Schemathesis hooks for the fuzzing run (loaded by `st` through SCHEMATHESIS_HOOKS).

The carrier's callbacks and the PSP's webhooks are refused unless signed over the exact
bytes sent, which a generator cannot do. A case whose signature headers were generated as
valid data is signed for real (as the partner would), after the body is serialised; a case
generated to break its headers (missing, malformed) goes out as generated, and must be
refused.

Every answer is tallied by operation and status class into the file FUZZ_TALLY_FILE names
(written when `st` exits), the summary the fuzzing test prints.
"""

from __future__ import annotations

import atexit
import json
import os
import threading
import time
from collections import Counter, defaultdict
from typing import Any

import requests
import schemathesis
from schemathesis.core.parameters import ParameterLocation

from services.eventing.webhook_signature import CARRIER_SIGNATURE, PSP_SIGNATURE, WebhookSignature
from services.tools.local_stack.stack import CARRIER_SECRET, PSP_WEBHOOK_SECRET

SIGNED_PATHS: dict[str, tuple[WebhookSignature, bytes]] = {
    "/carrier/callbacks": (CARRIER_SIGNATURE, CARRIER_SECRET.encode()),
    "/webhooks/psp": (PSP_SIGNATURE, PSP_WEBHOOK_SECRET.encode()),
}


class PartnerSignature(requests.auth.AuthBase):
    """Signs the prepared request's body, as the partner does."""

    def __init__(self, signature: WebhookSignature, secret: bytes) -> None:
        self.signature = signature
        self.secret = secret

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        body = request.body or b""
        if isinstance(body, str):
            body = body.encode()
        request.headers.update(
            self.signature.signature_headers(self.secret, int(time.time()), body)
        )
        return request


def _generated_valid_signature_headers(case: Any, signature: WebhookSignature) -> bool:
    meta = case.meta
    if meta is not None and meta.is_negative_at(ParameterLocation.HEADER):
        return False
    headers = case.headers or {}
    return signature.timestamp_header in headers and signature.signature_header in headers


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    signed = SIGNED_PATHS.get(case.operation.path)
    if signed is not None and _generated_valid_signature_headers(case, signed[0]):
        kwargs["auth"] = PartnerSignature(*signed)


TALLY: defaultdict[str, Counter[str]] = defaultdict(Counter)
TALLY_LOCK = threading.Lock()


@schemathesis.hook
def after_call(context: Any, case: Any, response: Any) -> None:
    label = f"{case.operation.method.upper()} {case.operation.path}"
    with TALLY_LOCK:
        TALLY[label]["requests"] += 1
        TALLY[label][f"{response.status_code // 100}xx"] += 1


def _write_tally() -> None:
    target = os.environ.get("FUZZ_TALLY_FILE")
    if target:
        with TALLY_LOCK, open(target, "w", encoding="utf-8") as out:
            json.dump({label: dict(counts) for label, counts in TALLY.items()}, out, indent=1)


atexit.register(_write_tally)
