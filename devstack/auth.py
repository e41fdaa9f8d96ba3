"""The local identity provider: an RSA key pair, dev tokens, and the JWT authorizer's checks.

In AWS the HTTP API's JWT authorizer verifies tokens against the issuer's JWKS. Locally the
issuer is this module: its key pair lives under .devstack/ (gitignored) so tokens printed by
`make token` stay valid across restarts of `make dev`, and the gateway verifies with the
same rules the authorizer applies (RS256 signature, kid, issuer, audience, exp, nbf, iat).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

# What the template's JwtIssuer and JwtAudience parameters are set to locally. The issuer
# must look like an https URL to pass the template's AllowedPattern; nothing fetches it.
ISSUER = "https://auth.devstack.localhost"
AUDIENCE = "course-payments-local"

DEFAULT_STATE_DIR = Path(__file__).resolve().parent.parent / ".devstack"
STATE_DIR_ENV = "DEVSTACK_STATE_DIR"
PRIVATE_KEY_FILE = "jwt-signing-key.pem"

# Long enough for a day of clicking around the demo; tests mint their own.
DEFAULT_TTL_SECONDS = 12 * 3600
ROLES = ("student", "admin")
ADMIN_GROUP = "admin"

# The HTTP API JWT authorizer accepts the RSA family only.
_ACCEPTED_ALGORITHMS = ["RS256", "RS384", "RS512"]


def state_dir() -> Path:
    """Where the key pair lives: DEVSTACK_STATE_DIR, else .devstack/ at the repository root."""
    configured = os.environ.get(STATE_DIR_ENV)
    return Path(configured) if configured else DEFAULT_STATE_DIR


class Unauthorized(Exception):
    """The token is missing or fails a check; the gateway answers 401 like API Gateway."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class KeyPair:
    private_key: rsa.RSAPrivateKey
    kid: str

    @property
    def public_key(self) -> rsa.RSAPublicKey:
        return self.private_key.public_key()

    def jwk(self) -> dict[str, str]:
        numbers = self.public_key.public_numbers()
        return {
            "kty": "RSA",
            "use": "sig",
            "alg": "RS256",
            "kid": self.kid,
            "n": _b64_uint(numbers.n),
            "e": _b64_uint(numbers.e),
        }


def _b64_uint(value: int) -> str:
    raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _kid(public_key: rsa.RSAPublicKey) -> str:
    # RFC 7638 thumbprint: stable for a key, different for any other key.
    numbers = public_key.public_numbers()
    canonical = json.dumps(
        {"e": _b64_uint(numbers.e), "kty": "RSA", "n": _b64_uint(numbers.n)},
        separators=(",", ":"),
        sort_keys=True,
    )
    digest = hashlib.sha256(canonical.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def generate_key_pair() -> KeyPair:
    private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return KeyPair(private_key, _kid(private_key.public_key()))


def load_or_create_key_pair(directory: Path | None = None) -> KeyPair:
    """The persistent local key pair; created (mode 0600) on first use."""
    directory = directory or state_dir()
    path = directory / PRIVATE_KEY_FILE
    if path.exists():
        loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(loaded, rsa.RSAPrivateKey):
            raise ValueError(f"{path} does not hold an RSA private key; delete it to start over")
        return KeyPair(loaded, _kid(loaded.public_key()))
    pair = generate_key_pair()
    directory.mkdir(parents=True, exist_ok=True)
    pem = pair.private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    # Written under a temporary name and renamed: two processes starting at once (make dev
    # and make token) never read a half-written key.
    partial = directory / f".{PRIVATE_KEY_FILE}.{os.getpid()}"
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    try:
        os.link(partial, path)  # fails if another process won the race; use theirs
    except FileExistsError:
        partial.unlink()
        return load_or_create_key_pair(directory)
    partial.unlink()
    return pair


def student_claims(sub: str) -> dict[str, Any]:
    """Billing details PayMob's intention needs, as an identity provider would carry them."""
    return {
        "email": f"{sub}@students.devstack.localhost",
        "given_name": "Demo",
        "family_name": sub.replace("-", " ").title() or "Student",
        "phone_number": "+201000000000",
    }


def issue_token(
    keys: KeyPair,
    sub: str,
    *,
    role: str = "student",
    ttl_seconds: int = DEFAULT_TTL_SECONDS,
    issuer: str = ISSUER,
    audience: str = AUDIENCE,
    now: float | None = None,
    extra_claims: Mapping[str, Any] | None = None,
) -> str:
    """An RS256 id-token-like JWT for `sub`; admins carry the `groups` claim ["admin"]."""
    if not sub:
        raise ValueError("sub must not be empty")
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    issued = int(time.time() if now is None else now)
    claims: dict[str, Any] = {
        "iss": issuer,
        "aud": audience,
        "sub": sub,
        "iat": issued,
        "nbf": issued,
        "exp": issued + ttl_seconds,
        "token_use": "id",
        **student_claims(sub),
    }
    if role == "admin":
        claims["groups"] = [ADMIN_GROUP]
    claims.update(extra_claims or {})
    return jwt.encode(claims, keys.private_key, algorithm="RS256", headers={"kid": keys.kid})


@dataclass(frozen=True)
class JwtAuthorizer:
    """The checks of an HTTP API JWT authorizer, against the local key."""

    keys: KeyPair
    issuer: str = ISSUER
    audiences: tuple[str, ...] = (AUDIENCE,)

    def verify(self, authorization: str | None) -> dict[str, Any]:
        """The verified claims of an Authorization header value, or Unauthorized."""
        token = _token_from_header(authorization)
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError as exc:
            raise Unauthorized(f"malformed token: {exc}") from None
        if header.get("alg") not in _ACCEPTED_ALGORITHMS:
            raise Unauthorized(f"algorithm {header.get('alg')!r} is not accepted")
        if header.get("kid") != self.keys.kid:
            raise Unauthorized("no signing key matches the token's kid")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self.keys.public_key,
                algorithms=_ACCEPTED_ALGORITHMS,
                issuer=self.issuer,
                # The audience is checked below: API Gateway also accepts client_id.
                options={
                    "verify_aud": False,
                    "require": ["exp", "iss"],
                    "verify_iat": True,
                    "verify_nbf": True,
                },
            )
        except jwt.InvalidTokenError as exc:
            raise Unauthorized(str(exc)) from None
        if not _audience_matches(claims, self.audiences):
            raise Unauthorized("the token's audience is not accepted")
        return claims


def _token_from_header(authorization: str | None) -> str:
    if authorization is None or not authorization.strip():
        raise Unauthorized("no token in the Authorization header")
    value = authorization.strip()
    # The authorizer takes the header as the token, with an optional "Bearer " prefix.
    if value[:7].lower() == "bearer ":
        value = value[7:].strip()
    if not value:
        raise Unauthorized("no token in the Authorization header")
    return value


def _audience_matches(claims: Mapping[str, Any], audiences: Iterable[str]) -> bool:
    accepted = set(audiences)
    aud = claims.get("aud")
    token_audiences = [aud] if isinstance(aud, str) else list(aud or [])
    if any(value in accepted for value in token_audiences):
        return True
    return claims.get("client_id") in accepted


def claims_as_api_gateway_renders(claims: Mapping[str, Any]) -> dict[str, str]:
    """Claims as the HTTP API passes them to the function: every value a string.

    Numbers become their decimal text, booleans "true"/"false", and arrays "[a b]"
    (which is why handlers parse `groups` from a string).
    """
    return {name: _render_claim(value) for name, value in claims.items()}


def _render_claim(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)):
        return "[" + " ".join(_render_claim(item) for item in value) + "]"
    if isinstance(value, dict):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def scopes_of(claims: Mapping[str, Any]) -> list[str] | None:
    """The token's OAuth scopes (`scope`, space separated, or `scp`), or None when it has none."""
    scope = claims.get("scope")
    if isinstance(scope, str) and scope.strip():
        return scope.split()
    scp = claims.get("scp")
    if isinstance(scp, list) and scp:
        return [str(item) for item in scp]
    return None
