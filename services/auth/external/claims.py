"""What an ID token's claims give a new account: a verified e-mail, a username, a name."""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from typing import Any

_USERNAME_CHARS = re.compile(r"[^a-z0-9._-]+")
# What the users service refuses in a display name: controls, line separators, and the
# bidirectional overrides and isolates that make text read differently from what it is.
_CONTROL = re.compile(r"[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,255}$")
USERNAME_ATTEMPTS = 5


def verified_email(claims: Mapping[str, Any]) -> str | None:
    """The e-mail, lower-cased, only when the provider says it is verified: JSON true,
    not a string that looks like it (Core 5.1 defines email_verified as a boolean)."""
    email = claims.get("email")
    if claims.get("email_verified") is True and isinstance(email, str) and _EMAIL.match(email):
        return email.lower()
    return None


def username_candidates(claims: Mapping[str, Any]) -> list[str]:
    base = ""
    email = claims.get("email")
    for raw in (
        claims.get("preferred_username"),
        email.split("@")[0] if isinstance(email, str) else None,
        claims.get("name"),
    ):
        if isinstance(raw, str):
            base = _USERNAME_CHARS.sub("-", raw.lower()).strip("-._")[:48]
            if len(base) >= 3:
                break
    if len(base) < 3:
        base = "user"
    return [base, *(f"{base}-{secrets.token_hex(3)}" for _ in range(USERNAME_ATTEMPTS - 1))]


def display_name(claims: Mapping[str, Any], fallback: str) -> str:
    name = claims.get("name")
    if isinstance(name, str):
        name = _CONTROL.sub("", name).strip()[:100].strip()
        if name:
            return name
    return fallback
