"""Test-only: an OIDC issuer made in the test. Key pairs, signed tokens (and forged ones:
``alg: none``, HS256 keyed with the public key), and its JWKS served by a tiny HTTP server."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class Issuer:
    """An issuer with an RSA key (``kid`` rsa-1) and an EC key (``kid`` ec-1)."""

    url: str
    audience: str
    rsa_key: rsa.RSAPrivateKey
    ec_key: ec.EllipticCurvePrivateKey
    extra_keys: dict[str, rsa.RSAPrivateKey] = field(default_factory=dict)

    @classmethod
    def make(cls, url: str, *, audience: str) -> Issuer:
        return cls(
            url,
            audience,
            rsa.generate_private_key(public_exponent=65537, key_size=2048),
            ec.generate_private_key(ec.SECP256R1()),
        )

    def jwks(self, *, rotated: bool = False) -> dict[str, Any]:
        rsa_jwk = RSAAlgorithm.to_jwk(self.rsa_key.public_key(), as_dict=True)
        ec_jwk = ECAlgorithm.to_jwk(self.ec_key.public_key(), as_dict=True)
        keys = [
            {**rsa_jwk, "kid": "rsa-1", "use": "sig", "alg": "RS256"},
            {**ec_jwk, "kid": "ec-1", "use": "sig", "alg": "ES256"},
        ]
        for kid, key in self.extra_keys.items() if rotated else ():
            keys.append({**RSAAlgorithm.to_jwk(key.public_key(), as_dict=True), "kid": kid})
        return {"keys": keys}

    def claims(self, **over: Any) -> dict[str, Any]:
        now = int(time.time())
        base: dict[str, Any] = {
            "iss": self.url,
            "aud": self.audience,
            "sub": "0b5c1f9e-user-olivia",
            "preferred_username": "olivia",
            "groups": ["ops", "payments"],
            "iat": now,
            "exp": now + 300,
        }
        base.update(over)
        return {k: v for k, v in base.items() if v is not None}

    def token(self, *, alg: str = "RS256", kid: str | None = None, **claims: Any) -> str:
        if alg.startswith("ES"):
            key: Any = self.ec_key
            kid = kid or "ec-1"
        elif kid in self.extra_keys:
            key = self.extra_keys[kid]
        else:
            key = self.rsa_key
            kid = kid or "rsa-1"
        return jwt.encode(self.claims(**claims), key, algorithm=alg, headers={"kid": kid})

    def public_pem(self) -> bytes:
        return self.rsa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def forged_none(self, **claims: Any) -> str:
        """``alg: none``: no signature at all."""
        header = _b64(json.dumps({"alg": "none", "typ": "JWT", "kid": "rsa-1"}).encode())
        body = _b64(json.dumps(self.claims(**claims)).encode())
        return f"{header}.{body}."

    def forged_hs256(self, **claims: Any) -> str:
        """HS256 keyed with the issuer's public key (the classic algorithm confusion)."""
        header = _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "rsa-1"}).encode())
        body = _b64(json.dumps(self.claims(**claims)).encode())
        mac = hmac.new(self.public_pem(), f"{header}.{body}".encode(), hashlib.sha256)
        return f"{header}.{body}.{_b64(mac.digest())}"


class JwksServer:
    """Serves a JWKS at ``/jwks`` on 127.0.0.1; counts the fetches; ``document`` may be
    replaced (a key rotation) and ``status`` set (an issuer failing)."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self.status = 200
        self.fetches = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.fetches += 1
                body = json.dumps(outer.document).encode()
                self.send_response(outer.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/jwks"

    def __enter__(self) -> JwksServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)
