"""Orders and their items; idempotency keys unique per user.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "orders",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("user_id", sa.String(255), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("total_cents", sa.BigInteger, nullable=False),
        sa.Column("note", sa.String(500), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("cancelled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("idempotency_id", sa.String(255), nullable=True),
        sa.Column("request_fingerprint", sa.String(64), nullable=True),
        # NULLs are distinct in both databases: orders placed without a key never collide.
        sa.UniqueConstraint("user_id", "idempotency_id", name="uq_orders_user_idempotency"),
        sa.CheckConstraint("status IN ('placed', 'cancelled')", name="ck_orders_status"),
        sa.CheckConstraint("total_cents >= 0", name="ck_orders_total_cents"),
    )
    # Serves "my orders, newest first" and its keyset continuation.
    op.create_index("ix_orders_user_created", "orders", ["user_id", "created_at", "id"])
    op.create_table(
        "order_items",
        sa.Column(
            "order_id",
            sa.String(36),
            sa.ForeignKey("orders.id", name="fk_order_items_order", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("line_no", sa.Integer, primary_key=True),
        sa.Column("sku", sa.String(64), nullable=False),
        sa.Column("quantity", sa.Integer, nullable=False),
        sa.Column("unit_price_cents", sa.BigInteger, nullable=False),
        sa.CheckConstraint("quantity BETWEEN 1 AND 1000", name="ck_order_items_quantity"),
        sa.CheckConstraint(
            "unit_price_cents BETWEEN 0 AND 1000000000", name="ck_order_items_unit_price"
        ),
    )


def downgrade() -> None:
    op.drop_table("order_items")
    op.drop_index("ix_orders_user_created", table_name="orders")
    op.drop_table("orders")
