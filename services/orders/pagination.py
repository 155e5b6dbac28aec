"""Opaque cursors for keyset pagination: a position (created_at, id) the client hands back."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import uuid

from services.orders.repository import Position

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MAX_MICROS = int((dt.datetime(9999, 12, 31, tzinfo=dt.UTC) - _EPOCH).total_seconds()) * 10**6


def encode_cursor(position: Position) -> str:
    created_at, order_id = position
    micros = (created_at - _EPOCH) // dt.timedelta(microseconds=1)
    raw = f"{micros}.{order_id}".encode("ascii")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode_cursor(cursor: str) -> Position:
    """The position a cursor names; ValueError when it is not one this service made."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
        micros_text, order_id = raw.split(".", 1)
        micros = int(micros_text)
        canonical = str(uuid.UUID(order_id))
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ValueError("malformed cursor") from None
    if canonical != order_id or not micros_text.isdigit() or not 0 <= micros <= _MAX_MICROS:
        raise ValueError("malformed cursor")
    return _EPOCH + dt.timedelta(microseconds=micros), order_id
