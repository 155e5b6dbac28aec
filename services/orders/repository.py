"""All SQL of the orders service: orders and their items (SQLAlchemy Core).

The same statements run on SQLite and PostgreSQL, compiled once per dialect and run on the
driver (common.statements says why). Each read is one statement: an order and its items
come back joined. Idempotent creation relies on the unique constraint over (user_id,
idempotency_id): concurrent repeats on any number of replicas meet in the database, and
exactly one insert wins.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from common.driver import Driver
from common.statements import Execute, ExecuteMany, Operation, Rows, Statement
from common.timestamps import Clock, UtcDateTime, utc_now
from services.orders.models import CANCELLED, PLACED, Order, OrderItem, total_cents

metadata = sa.MetaData()

orders = sa.Table(
    "orders",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("user_id", sa.String(255), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("total_cents", sa.BigInteger, nullable=False),
    sa.Column("note", sa.String(500), nullable=True),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("cancelled_at", UtcDateTime, nullable=True),
    # The client's Idempotency-Key and the SHA-256 of its request, when it sent a key.
    sa.Column("idempotency_id", sa.String(255), nullable=True),
    sa.Column("request_fingerprint", sa.String(64), nullable=True),
    sa.UniqueConstraint("user_id", "idempotency_id", name="uq_orders_user_idempotency"),
)

order_items = sa.Table(
    "order_items",
    metadata,
    sa.Column(
        "order_id", sa.String(36), sa.ForeignKey("orders.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("line_no", sa.Integer, primary_key=True),
    sa.Column("sku", sa.String(64), nullable=False),
    sa.Column("quantity", sa.Integer, nullable=False),
    sa.Column("unit_price_cents", sa.BigInteger, nullable=False),
)

# A position in the newest-first listing: (created_at, id) of the last order seen.
Position = tuple[dt.datetime, str]


class IdempotencyConflictError(Exception):
    """The user already used this Idempotency-Key for a different request."""


# The columns an Order is read from, then its items' (None on an order without items).
_ORDER_COLUMNS = (
    orders.c.id,
    orders.c.user_id,
    orders.c.status,
    orders.c.total_cents,
    orders.c.note,
    orders.c.created_at,
    orders.c.cancelled_at,
)
_ITEM_COLUMNS = (order_items.c.sku, order_items.c.quantity, order_items.c.unit_price_cents)


def _one_order(*, owned: bool) -> sa.Select:
    condition = orders.c.id == sa.bindparam("id")
    if owned:
        condition = sa.and_(condition, orders.c.user_id == sa.bindparam("owner"))
    return (
        sa.select(*_ORDER_COLUMNS, *_ITEM_COLUMNS)
        .select_from(orders.outerjoin(order_items, order_items.c.order_id == orders.c.id))
        .where(condition)
        .order_by(order_items.c.line_no)
    )


def _page(*, after: bool) -> sa.Select:
    """Up to `limit` of a user's orders newest first (after a position), with their items."""
    page = sa.select(*_ORDER_COLUMNS).where(orders.c.user_id == sa.bindparam("user_id"))
    if after:
        page = page.where(
            sa.or_(
                orders.c.created_at < sa.bindparam("after_created_at"),
                sa.and_(
                    orders.c.created_at == sa.bindparam("after_created_at"),
                    orders.c.id < sa.bindparam("after_id"),
                ),
            )
        )
    subquery = (
        page.order_by(orders.c.created_at.desc(), orders.c.id.desc())
        .limit(sa.bindparam("limit", type_=sa.Integer))
        .subquery("page")
    )
    return (
        sa.select(*subquery.c, *_ITEM_COLUMNS)
        .select_from(subquery.outerjoin(order_items, order_items.c.order_id == subquery.c.id))
        .order_by(subquery.c.created_at.desc(), subquery.c.id.desc(), order_items.c.line_no)
    )


def _changed_since() -> sa.Select:
    """A user's orders placed or cancelled after a time, oldest change first, with items."""
    changed = (
        sa.select(*_ORDER_COLUMNS)
        .where(
            orders.c.user_id == sa.bindparam("user_id"),
            sa.or_(
                orders.c.created_at > sa.bindparam("since"),
                orders.c.cancelled_at > sa.bindparam("since"),
            ),
        )
        .subquery("changed")
    )
    return (
        sa.select(*changed.c, *_ITEM_COLUMNS)
        .select_from(changed.outerjoin(order_items, order_items.c.order_id == changed.c.id))
        .order_by(changed.c.created_at, changed.c.id, order_items.c.line_no)
    )


_ALL_ORDER_VALUES = {column.name: sa.bindparam(column.name) for column in orders.c}

GET_ANY = Statement(_one_order(owned=False))
GET_OWNED = Statement(_one_order(owned=True))
FIRST_PAGE = Statement(_page(after=False))
NEXT_PAGE = Statement(_page(after=True))
CHANGED_SINCE = Statement(_changed_since())
INSERT_ORDER = Statement(orders.insert().values(_ALL_ORDER_VALUES))
# ON CONFLICT DO NOTHING: a concurrent insert with the same key waits for the first to
# commit (PostgreSQL) or for the write lock (SQLite), then inserts nothing.
INSERT_ORDER_ONCE = Statement(
    lambda insert: (
        insert(orders)
        .values(_ALL_ORDER_VALUES)
        .on_conflict_do_nothing(index_elements=["user_id", "idempotency_id"])
        .returning(orders.c.id)
    )
)
FIND_BY_KEY = Statement(
    sa.select(orders.c.id, orders.c.request_fingerprint).where(
        orders.c.user_id == sa.bindparam("user_id"),
        orders.c.idempotency_id == sa.bindparam("idempotency_id"),
    )
)


def _insert_with_items(insert: Any, *, once: bool) -> Any:
    """PostgreSQL only: the order and all its items in one statement (one round trip, atomic
    by itself), items passed as arrays; it returns a row per item, none when the key was
    already used (the items' SELECT reads the order's RETURNING, empty on a conflict)."""
    new_order = insert(orders).values(_ALL_ORDER_VALUES)
    if once:
        new_order = new_order.on_conflict_do_nothing(index_elements=["user_id", "idempotency_id"])
    new_order = new_order.returning(orders.c.id).cte("new_order")
    lines = (
        sa.func.unnest(
            sa.bindparam("line_nos", type_=postgresql.ARRAY(sa.Integer)),
            sa.bindparam("skus", type_=postgresql.ARRAY(sa.String)),
            sa.bindparam("quantities", type_=postgresql.ARRAY(sa.Integer)),
            sa.bindparam("unit_prices", type_=postgresql.ARRAY(sa.BigInteger)),
        )
        .table_valued("line_no", "sku", "quantity", "unit_price_cents")
        .render_derived()
        .alias("line")
    )
    return (
        order_items.insert()
        .from_select(
            ["order_id", "line_no", "sku", "quantity", "unit_price_cents"],
            sa.select(new_order.c.id, *lines.c).select_from(new_order).join(lines, sa.true()),
        )
        .returning(order_items.c.order_id)
    )


INSERT_WITH_ITEMS = Statement(lambda insert: _insert_with_items(insert, once=False))
INSERT_ONCE_WITH_ITEMS = Statement(lambda insert: _insert_with_items(insert, once=True))
INSERT_ITEMS = Statement(
    order_items.insert().values(
        {column.name: sa.bindparam(column.name) for column in order_items.c}
    )
)
# The status condition makes concurrent cancels count once: PostgreSQL re-checks it after
# waiting for the row lock; SQLite runs write transactions one at a time.
CANCEL = Statement(
    orders.update()
    .where(orders.c.id == sa.bindparam("id"), orders.c.status == PLACED)
    .values(status=CANCELLED, cancelled_at=sa.bindparam("cancelled_at"))
)


def _orders_from_rows(rows: Sequence[tuple]) -> list[Order]:
    """Orders from rows of order columns then item columns, an order's rows together."""
    found: list[tuple[tuple, list[OrderItem]]] = []
    current = None
    for row in rows:
        if row[0] != current:
            current = row[0]
            found.append((row, []))
        if row[7] is not None:
            found[-1][1].append(OrderItem(row[7], row[8], row[9]))
    return [
        Order(
            id=row[0],
            user_id=row[1],
            items=tuple(items),
            total_cents=row[3],
            status=row[2],
            note=row[4],
            created_at=row[5],
            cancelled_at=row[6],
        )
        for row, items in found
    ]


def _load(order_id: str, owner: str | None = None) -> Operation[Order | None]:
    if owner is None:
        rows = yield Rows(GET_ANY, {"id": order_id})
    else:
        rows = yield Rows(GET_OWNED, {"id": order_id, "owner": owner})
    found = _orders_from_rows(rows)
    return found[0] if found else None


class OrderRepository:
    def __init__(self, driver: Driver, *, clock: Clock = utc_now) -> None:
        self.driver = driver
        self.clock = clock

    async def create(
        self,
        user_id: str,
        items: Sequence[OrderItem],
        note: str | None,
        *,
        idempotency_key: str | None = None,
        fingerprint: str | None = None,
    ) -> tuple[Order, bool]:
        """Place an order; returns (order, created).

        With a key, a repeat of the same request returns the first order (created False)
        and a different request under the same key raises IdempotencyConflictError. On
        PostgreSQL a concurrent insert with the same key waits for the first to commit,
        then does nothing, so the lookup that follows sees the winner.
        """
        order = Order(
            id=str(uuid.uuid4()),
            user_id=user_id,
            items=tuple(items),
            total_cents=total_cents(items),
            status=PLACED,
            note=note,
            created_at=self.clock(),
        )
        if self.driver.dialect_name != "postgresql":
            return await self.driver.run(
                self._create(order, idempotency_key, fingerprint), write=True
            )
        # One statement instead of BEGIN, two INSERTs and COMMIT: four round trips were most
        # of a POST's CPU on PostgreSQL. A repeat (nothing inserted) is looked up after.
        inserted = await self.driver.run(
            _insert_at_once(order, idempotency_key, fingerprint), write=True, one_statement=True
        )
        if inserted:
            return order, True
        assert idempotency_key is not None  # without a key, an insert always inserts
        return await self.driver.run(_replay(order.user_id, idempotency_key, fingerprint))

    def _create(
        self, order: Order, idempotency_key: str | None, fingerprint: str | None
    ) -> Operation[tuple[Order, bool]]:
        if idempotency_key is None:
            yield Execute(INSERT_ORDER, _order_values(order, None, None))
        else:
            inserted = yield Rows(
                INSERT_ORDER_ONCE, _order_values(order, idempotency_key, fingerprint)
            )
            if not inserted:
                return (yield from _replay(order.user_id, idempotency_key, fingerprint))
        yield ExecuteMany(
            INSERT_ITEMS,
            [
                {
                    "order_id": order.id,
                    "line_no": line_no,
                    "sku": item.sku,
                    "quantity": item.quantity,
                    "unit_price_cents": item.unit_price_cents,
                }
                for line_no, item in enumerate(order.items)
            ],
        )
        return order, True

    async def get(self, order_id: str, *, owner: str | None) -> Order | None:
        """The order, if it exists and (unless owner is None, for admins) belongs to owner."""
        return await self.driver.run(_load(order_id, owner))

    async def list(
        self, user_id: str, *, limit: int, after: Position | None = None
    ) -> tuple[list[Order], Position | None]:
        """One page of a user's orders, newest first, by keyset on (created_at, id).

        Returns the page and the position to continue from, or None on the last page.
        """
        found = await self.driver.run(_page_of(user_id, limit + 1, after))
        if len(found) <= limit:
            return found, None
        page = found[:limit]
        last = page[-1]
        return page, (last.created_at, last.id)

    async def changed_since(self, user_id: str, since: dt.datetime) -> list[Order]:
        """The user's orders placed or cancelled after `since` (the order stream's poll)."""
        return await self.driver.run(_changes_of(user_id, since))

    async def cancel(self, order_id: str, *, owner: str | None) -> tuple[Order, bool] | None:
        """Cancel a placed order: (order, changed), or None when missing or not the owner's."""
        return await self.driver.run(self._cancel(order_id, owner), write=True)

    def _cancel(self, order_id: str, owner: str | None) -> Operation[tuple[Order, bool] | None]:
        if (yield from _load(order_id, owner)) is None:
            return None
        changed = yield Execute(CANCEL, {"id": order_id, "cancelled_at": self.clock()})
        order = yield from _load(order_id)
        assert order is not None  # seen in this transaction, and orders are never deleted
        return order, changed == 1


def _order_values(
    order: Order, idempotency_key: str | None, fingerprint: str | None
) -> dict[str, Any]:
    return {
        "id": order.id,
        "user_id": order.user_id,
        "status": order.status,
        "total_cents": order.total_cents,
        "note": order.note,
        "created_at": order.created_at,
        "cancelled_at": None,
        "idempotency_id": idempotency_key,
        "request_fingerprint": fingerprint if idempotency_key is not None else None,
    }


def _insert_at_once(
    order: Order, idempotency_key: str | None, fingerprint: str | None
) -> Operation[bool]:
    """PostgreSQL: insert the order with its items in one statement; False when a repeat."""
    values = _order_values(order, idempotency_key, fingerprint)
    values["line_nos"] = list(range(len(order.items)))
    values["skus"] = [item.sku for item in order.items]
    values["quantities"] = [item.quantity for item in order.items]
    values["unit_prices"] = [item.unit_price_cents for item in order.items]
    statement = INSERT_WITH_ITEMS if idempotency_key is None else INSERT_ONCE_WITH_ITEMS
    return bool((yield Rows(statement, values)))


def _replay(
    user_id: str, idempotency_key: str, fingerprint: str | None
) -> Operation[tuple[Order, bool]]:
    """The order first placed under this key, if this request is the same; else a conflict.

    Its insert committed before ours did nothing (PostgreSQL waits on the unique index;
    SQLite holds the write lock), so it is there to be read.
    """
    first = yield Rows(FIND_BY_KEY, {"user_id": user_id, "idempotency_id": idempotency_key})
    first_id, first_fingerprint = first[0]
    if first_fingerprint != fingerprint:
        raise IdempotencyConflictError(idempotency_key)
    replayed = yield from _load(first_id)
    assert replayed is not None  # orders are never deleted
    return replayed, False


def _page_of(user_id: str, limit: int, after: Position | None) -> Operation[list[Order]]:
    if after is None:
        rows = yield Rows(FIRST_PAGE, {"user_id": user_id, "limit": limit})
    else:
        created_at, order_id = after
        rows = yield Rows(
            NEXT_PAGE,
            {
                "user_id": user_id,
                "limit": limit,
                "after_created_at": created_at,
                "after_id": order_id,
            },
        )
    return _orders_from_rows(rows)


def _changes_of(user_id: str, since: dt.datetime) -> Operation[list[Order]]:
    rows = yield Rows(CHANGED_SINCE, {"user_id": user_id, "since": since})
    return _orders_from_rows(rows)
