"""The shared HMAC webhook signature and the partners' header names on top of it."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.eventing import webhook_signature
from services.pickup import carrier_signature
from services.refund import psp_signature

SECRET = b"shared-secret"
NOW = 1_790_000_000
BODY = b'{"webhook_id": "wh_1"}'


def test_the_psp_and_the_carrier_sign_the_same_way_under_their_own_header_names() -> None:
    psp = psp_signature.signature_headers(SECRET, NOW, BODY)
    carrier = carrier_signature.signature_headers(SECRET, NOW, BODY)

    signature = webhook_signature.sign(SECRET, NOW, BODY)
    assert psp == {"X-Psp-Timestamp": str(NOW), "X-Psp-Signature": signature}
    assert carrier == {"X-Carrier-Timestamp": str(NOW), "X-Carrier-Signature": signature}
    assert (psp_signature.TIMESTAMP_HEADER, psp_signature.SIGNATURE_HEADER) == (
        "X-Psp-Timestamp",
        "X-Psp-Signature",
    )


def test_the_partner_modules_reuse_the_shared_implementation() -> None:
    for module in (psp_signature, carrier_signature):
        assert module.SignatureError is webhook_signature.SignatureError
        assert module.sign is webhook_signature.sign
        assert module.verify is webhook_signature.verify
        assert module.DEFAULT_TOLERANCE_S == webhook_signature.DEFAULT_TOLERANCE_S == 300


def test_generic_headers_take_any_names() -> None:
    headers = webhook_signature.signature_headers(
        SECRET, NOW, BODY, timestamp_header="T", signature_header="S"
    )

    assert headers == {"T": str(NOW), "S": webhook_signature.sign(SECRET, NOW, BODY)}


def test_a_psp_webhook_signed_with_another_secret_or_too_late_is_refused() -> None:
    h = psp_signature.signature_headers(b"other", NOW, BODY)
    with pytest.raises(psp_signature.SignatureError, match="does not match"):
        psp_signature.verify(SECRET, h["X-Psp-Timestamp"], h["X-Psp-Signature"], BODY, NOW)

    h = psp_signature.signature_headers(SECRET, NOW, BODY)
    late = NOW + psp_signature.DEFAULT_TOLERANCE_S + 1
    with pytest.raises(psp_signature.SignatureError, match="stale"):
        psp_signature.verify(SECRET, h["X-Psp-Timestamp"], h["X-Psp-Signature"], BODY, late)


@settings(max_examples=200)
@given(body=st.binary(max_size=512), secret=st.binary(min_size=1, max_size=64))
def test_any_psp_webhook_verifies_with_its_secret(body: bytes, secret: bytes) -> None:
    h = psp_signature.signature_headers(secret, NOW, body)

    psp_signature.verify(secret, h["X-Psp-Timestamp"], h["X-Psp-Signature"], body, NOW)
