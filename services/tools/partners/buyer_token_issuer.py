"""The marketplace double's sign-in: RS256 tokens for buyers and support agents, and the
JWKS the front door verifies them with (services/eventing/marketplace_tokens.py reads them).

The signing key is an RSA key kept in a PEM file when one is named (so tokens outlive a
restart of the double), else made at start. Its key id is the key's RFC 7638 thumbprint.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

ISSUER = "https://marketplace.local"
AUDIENCE = "boomerang-returns"
KEY_BITS = 2048


def _new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)


def signing_key(path: Path | None) -> rsa.RSAPrivateKey:
    """The key in `path` (PEM), written there first when the file is missing; a new key
    each start without a path."""
    if path is None:
        return _new_key()
    if path.exists():
        loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(loaded, rsa.RSAPrivateKey):
            raise ValueError(f"{path} does not hold an RSA private key")
        return loaded
    key = _new_key()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)
    return key


class BuyerTokenIssuer:
    def __init__(
        self, key: rsa.RSAPrivateKey, issuer: str = ISSUER, audience: str = AUDIENCE
    ) -> None:
        self.key = key
        self.issuer = issuer
        self.audience = audience
        public = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
        self.key_id = _thumbprint(public)
        self.public_jwk = {**public, "kid": self.key_id, "use": "sig", "alg": "RS256"}

    def jwks(self) -> dict[str, Any]:
        return {"keys": [self.public_jwk]}

    def issue(
        self,
        subject: str,
        role: str = "buyer",
        signed_in_at_s: int | None = None,
        ttl_s: int = 3600,
        now_s: int | None = None,
    ) -> str:
        """A token for `subject`, signed in at `signed_in_at_s` (now by default)."""
        now = int(time.time()) if now_s is None else now_s
        claims = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": subject,
            "role": role,
            "iat": now,
            "exp": now + ttl_s,
            "auth_time": now if signed_in_at_s is None else signed_in_at_s,
            "jti": uuid.uuid4().hex,
        }
        return jwt.encode(claims, self.key, algorithm="RS256", headers={"kid": self.key_id})


def _thumbprint(public_jwk: dict[str, Any]) -> str:
    """RFC 7638: SHA-256 of the required members in lexical order, base64url."""
    members = {name: public_jwk[name] for name in ("e", "kty", "n")}
    digest = hashlib.sha256(json.dumps(members, separators=(",", ":"), sort_keys=True).encode())
    return base64.urlsafe_b64encode(digest.digest()).rstrip(b"=").decode()
