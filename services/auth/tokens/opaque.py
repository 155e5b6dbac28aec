"""Opaque secrets (refresh tokens, client secrets, one-time codes): made and stored hashed."""

from __future__ import annotations

import hashlib
import secrets

# A prefix makes leaked refresh tokens and client secrets recognisable to secret scanners.
REFRESH_TOKEN_PREFIX = "pgr_"
CLIENT_SECRET_PREFIX = "pgs_"
TOKEN_BYTES = 32  # 256 bits from the CSPRNG


def opaque_hash(value: str) -> str:
    """SHA-256 of a high-entropy secret: enough to store it, as nothing can guess the input."""
    return hashlib.sha256(value.encode()).hexdigest()


def new_secret(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(TOKEN_BYTES)
