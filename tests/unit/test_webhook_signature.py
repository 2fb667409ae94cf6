"""The shared HMAC webhook signature and the partners' header names on top of it."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.eventing import webhook_signature
from services.eventing.webhook_signature import (
    CARRIER_SIGNATURE,
    DEFAULT_TOLERANCE_S,
    PSP_SIGNATURE,
    SignatureError,
)

SECRET = b"shared-secret"
NOW = 1_790_000_000
BODY = b'{"webhook_id": "wh_1"}'


def test_the_psp_and_the_carrier_sign_the_same_way_under_their_own_header_names() -> None:
    psp = PSP_SIGNATURE.signature_headers(SECRET, NOW, BODY)
    carrier = CARRIER_SIGNATURE.signature_headers(SECRET, NOW, BODY)

    signature = webhook_signature.sign(SECRET, NOW, BODY)
    assert psp == {"X-Psp-Timestamp": str(NOW), "X-Psp-Signature": signature}
    assert carrier == {"X-Carrier-Timestamp": str(NOW), "X-Carrier-Signature": signature}


def test_a_partner_verifies_its_own_headers_and_refuses_the_other_partners() -> None:
    carrier = CARRIER_SIGNATURE.signature_headers(SECRET, NOW, BODY)
    CARRIER_SIGNATURE.verify(SECRET, carrier, BODY, NOW)
    with pytest.raises(SignatureError, match="missing"):
        PSP_SIGNATURE.verify(SECRET, carrier, BODY, NOW)
    with pytest.raises(SignatureError, match="stale"):
        CARRIER_SIGNATURE.verify(SECRET, carrier, BODY, NOW + 11, tolerance_s=10)


def test_generic_headers_take_any_names() -> None:
    headers = webhook_signature.signature_headers(
        SECRET, NOW, BODY, timestamp_header="T", signature_header="S"
    )

    assert headers == {"T": str(NOW), "S": webhook_signature.sign(SECRET, NOW, BODY)}


def test_a_psp_webhook_signed_with_another_secret_or_too_late_is_refused() -> None:
    h = PSP_SIGNATURE.signature_headers(b"other", NOW, BODY)
    with pytest.raises(SignatureError, match="does not match"):
        webhook_signature.verify(SECRET, h["X-Psp-Timestamp"], h["X-Psp-Signature"], BODY, NOW)

    h = PSP_SIGNATURE.signature_headers(SECRET, NOW, BODY)
    late = NOW + DEFAULT_TOLERANCE_S + 1
    with pytest.raises(SignatureError, match="stale"):
        webhook_signature.verify(SECRET, h["X-Psp-Timestamp"], h["X-Psp-Signature"], BODY, late)


@settings(max_examples=200)
@given(body=st.binary(max_size=512), secret=st.binary(min_size=1, max_size=64))
def test_any_psp_webhook_verifies_with_its_secret(body: bytes, secret: bytes) -> None:
    h = PSP_SIGNATURE.signature_headers(secret, NOW, body)

    PSP_SIGNATURE.verify(secret, h, body, NOW)
