"""All SQL of the orders service: orders and their items (SQLAlchemy Core).

The same statements run on SQLite and PostgreSQL. Idempotent creation relies on the unique
constraint over (user_id, idempotency_id): concurrent repeats on any number of replicas
meet in the database, and exactly one insert wins.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from common.db import dialect_insert, write_transaction
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


class IdempotencyConflict(Exception):
    """The user already used this Idempotency-Key for a different request."""


class OrderRepository:
    def __init__(self, engine: AsyncEngine, *, clock: Clock = utc_now) -> None:
        self.engine = engine
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
        and a different request under the same key raises IdempotencyConflict. On
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
        values = {
            "id": order.id,
            "user_id": user_id,
            "status": order.status,
            "total_cents": order.total_cents,
            "note": note,
            "created_at": order.created_at,
            "idempotency_id": idempotency_key,
            "request_fingerprint": fingerprint if idempotency_key is not None else None,
        }
        async with write_transaction(self.engine) as connection:
            if idempotency_key is None:
                await connection.execute(orders.insert().values(**values))
            else:
                inserted = (
                    await connection.execute(
                        dialect_insert(connection, orders)
                        .values(**values)
                        .on_conflict_do_nothing(index_elements=["user_id", "idempotency_id"])
                        .returning(orders.c.id)
                    )
                ).first()
                if inserted is None:
                    first = (
                        await connection.execute(
                            sa.select(orders.c.id, orders.c.request_fingerprint).where(
                                orders.c.user_id == user_id,
                                orders.c.idempotency_id == idempotency_key,
                            )
                        )
                    ).one()
                    if first.request_fingerprint != fingerprint:
                        raise IdempotencyConflict(idempotency_key)
                    return (await self._load(connection, [first.id]))[0], False
            await connection.execute(
                order_items.insert(),
                [
                    {
                        "order_id": order.id,
                        "line_no": line_no,
                        "sku": item.sku,
                        "quantity": item.quantity,
                        "unit_price_cents": item.unit_price_cents,
                    }
                    for line_no, item in enumerate(items)
                ],
            )
        return order, True

    async def get(self, order_id: str, *, owner: str | None) -> Order | None:
        """The order, if it exists and (unless owner is None, for admins) belongs to owner."""
        async with self.engine.connect() as connection:
            found = await self._load(connection, [order_id], owner=owner)
        return found[0] if found else None

    async def list(
        self, user_id: str, *, limit: int, after: Position | None = None
    ) -> tuple[list[Order], Position | None]:
        """One page of a user's orders, newest first, by keyset on (created_at, id).

        Returns the page and the position to continue from, or None on the last page.
        """
        query = sa.select(orders.c.id).where(orders.c.user_id == user_id)
        if after is not None:
            created_at, order_id = after
            query = query.where(
                sa.or_(
                    orders.c.created_at < created_at,
                    sa.and_(orders.c.created_at == created_at, orders.c.id < order_id),
                )
            )
        query = query.order_by(orders.c.created_at.desc(), orders.c.id.desc()).limit(limit + 1)
        async with self.engine.connect() as connection:
            ids = list((await connection.execute(query)).scalars())
            page = await self._load(connection, ids[:limit])
        if len(ids) <= limit:
            return page, None
        last = page[-1]
        return page, (last.created_at, last.id)

    async def cancel(self, order_id: str, *, owner: str | None) -> tuple[Order, bool] | None:
        """Cancel a placed order: (order, changed), or None when missing or not the owner's."""
        async with write_transaction(self.engine) as connection:
            condition = orders.c.id == order_id
            if owner is not None:
                condition = sa.and_(condition, orders.c.user_id == owner)
            exists = (await connection.execute(sa.select(orders.c.id).where(condition))).first()
            if exists is None:
                return None
            # The status condition makes concurrent cancels count once: PostgreSQL re-checks it
            # after waiting for the row lock; SQLite runs write transactions one at a time.
            result = await connection.execute(
                orders.update()
                .where(orders.c.id == order_id, orders.c.status == PLACED)
                .values(status=CANCELLED, cancelled_at=self.clock())
            )
            order = (await self._load(connection, [order_id]))[0]
        return order, result.rowcount == 1

    async def _load(
        self, connection: AsyncConnection, ids: Sequence[str], *, owner: str | None = None
    ) -> list[Order]:
        """Orders with their items, in the order of `ids` (missing ones left out)."""
        if not ids:
            return []
        query = sa.select(orders).where(orders.c.id.in_(ids))
        if owner is not None:
            query = query.where(orders.c.user_id == owner)
        rows = {row.id: row for row in await connection.execute(query)}
        items: dict[str, list[OrderItem]] = {order_id: [] for order_id in rows}
        if rows:
            item_rows = await connection.execute(
                sa.select(order_items)
                .where(order_items.c.order_id.in_(list(rows)))
                .order_by(order_items.c.order_id, order_items.c.line_no)
            )
            for item in item_rows:
                items[item.order_id].append(
                    OrderItem(item.sku, item.quantity, item.unit_price_cents)
                )
        return [
            Order(
                id=row.id,
                user_id=row.user_id,
                items=tuple(items[row.id]),
                total_cents=row.total_cents,
                status=row.status,
                note=row.note,
                created_at=row.created_at,
                cancelled_at=row.cancelled_at,
            )
            for order_id in ids
            if (row := rows.get(order_id)) is not None
        ]
