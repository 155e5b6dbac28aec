"""Orders as values: what the repository returns and the API renders; request fingerprints."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
from collections.abc import Sequence
from typing import Any

from common.timestamps import rfc3339

PLACED = "placed"
CANCELLED = "cancelled"


@dataclasses.dataclass(frozen=True, slots=True)
class OrderItem:
    sku: str
    quantity: int
    unit_price_cents: int

    def to_json(self) -> dict[str, Any]:
        return {
            "sku": self.sku,
            "quantity": self.quantity,
            "unit_price_cents": self.unit_price_cents,
        }


@dataclasses.dataclass(frozen=True, slots=True)
class Order:
    id: str
    user_id: str
    items: tuple[OrderItem, ...]
    total_cents: int
    status: str
    note: str | None
    created_at: dt.datetime
    cancelled_at: dt.datetime | None = None

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": self.id,
            "user_id": self.user_id,
            "items": [item.to_json() for item in self.items],
            "total_cents": self.total_cents,
            "status": self.status,
            "created_at": rfc3339(self.created_at),
        }
        if self.note is not None:
            body["note"] = self.note
        if self.cancelled_at is not None:
            body["cancelled_at"] = rfc3339(self.cancelled_at)
        return body


def total_cents(items: Sequence[OrderItem]) -> int:
    """Computed here, never taken from the client. At most 100 * 1000 * 10^9 = 10^14, a BIGINT."""
    return sum(item.quantity * item.unit_price_cents for item in items)


def items_from_json(values: Sequence[dict[str, Any]]) -> tuple[OrderItem, ...]:
    # JSON Schema counts 2.0 as an integer; int() stores and fingerprints it as 2.
    return tuple(
        OrderItem(value["sku"], int(value["quantity"]), int(value["unit_price_cents"]))
        for value in values
    )


def request_fingerprint(items: Sequence[OrderItem], note: str | None) -> str:
    """SHA-256 of the canonical JSON of a creation request, to recognise a repeat by its content.

    Canonical: the validated, normalised values (integers as integers, an absent note and a
    null note alike), keys sorted, no insignificant whitespace, UTF-8. Item order counts.
    """
    canonical = json.dumps(
        {"items": [item.to_json() for item in items], "note": note},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()
