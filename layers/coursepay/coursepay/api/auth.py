"""Who is calling: the JWT claims API Gateway's authorizer verified, read again by each handler."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from coursepay.errors import Forbidden, Unauthorized

ADMIN_GROUP = "admin"
ADMIN_SCOPE = "payments/admin"


@dataclass(frozen=True, slots=True)
class Caller:
    subject: str
    is_admin: bool
    email: str | None = None
    given_name: str | None = None
    family_name: str | None = None
    phone_number: str | None = None

    def require_admin(self) -> None:
        if not self.is_admin:
            raise Forbidden("this needs an admin")


def _as_list(value: Any) -> list[str]:
    # The HTTP API passes array claims as "[a b]" strings; Cognito sends lists.
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    text = str(value).strip().strip("[]")
    return [part for part in text.replace(",", " ").split() if part]


def caller_from_claims(claims: Mapping[str, Any] | None) -> Caller:
    if not claims or not claims.get("sub"):
        raise Unauthorized("a signed-in user is required")
    groups = _as_list(claims.get("groups")) + _as_list(claims.get("cognito:groups"))
    scopes = _as_list(claims.get("scope"))
    return Caller(
        subject=str(claims["sub"]),
        is_admin=ADMIN_GROUP in groups or ADMIN_SCOPE in scopes,
        email=claims.get("email"),
        given_name=claims.get("given_name"),
        family_name=claims.get("family_name"),
        phone_number=claims.get("phone_number"),
    )


def caller_from_event(event: Mapping[str, Any]) -> Caller:
    authorizer = (event.get("requestContext") or {}).get("authorizer") or {}
    return caller_from_claims((authorizer.get("jwt") or {}).get("claims"))
