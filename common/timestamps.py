"""UTC timestamps: the clock, the wire format (RFC 3339 with "Z") and a portable column type."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

# The clock types, both here so there is one place to look: services stamp rows with
# aware datetimes; the gateway's hot path (token expiry, rate-limit buckets) compares
# seconds since the epoch, which costs no object per reading.
Clock = Callable[[], dt.datetime]
EpochClock = Callable[[], float]


def utc_now() -> dt.datetime:
    """The current time, timezone-aware UTC, at the microsecond precision both databases keep."""
    return dt.datetime.now(dt.UTC)


def rfc3339(value: dt.datetime) -> str:
    """RFC 3339 section 5.6 in UTC with the "Z" suffix, e.g. 2025-01-02T03:04:05.678901Z."""
    return value.astimezone(dt.UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


class UtcDateTime(sa.TypeDecorator[dt.datetime]):
    """A timestamp that goes in and comes out timezone-aware UTC on SQLite and PostgreSQL alike.

    PostgreSQL keeps `timestamp with time zone`; SQLite keeps a fixed-width text form whose
    string order is time order, so keyset comparisons work the same on both.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: sa.Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are ambiguous; pass an aware UTC datetime")
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: dt.datetime | None, dialect: sa.Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)
