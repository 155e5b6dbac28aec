"""Accounts, refresh-token families and tokens, machine clients, login failures.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

from common.timestamps import UtcDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("username", sa.String(64), nullable=False, unique=True),
        sa.Column("password_hash", sa.Text, nullable=False),
        sa.Column("role", sa.String(16), nullable=False, server_default="user"),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("password_changed_at", UtcDateTime(), nullable=False),
    )
    op.create_table(
        "refresh_families",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column(
            "account_id",
            sa.String(36),
            sa.ForeignKey("accounts.id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        ),
        sa.Column("client_id", sa.String(64), nullable=False),
        sa.Column("scope", sa.Text, nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("expires_at", UtcDateTime(), nullable=False),
        sa.Column("revoked_at", UtcDateTime(), nullable=True),
        sa.Column("revoked_reason", sa.String(32), nullable=True),
    )
    op.create_table(
        "refresh_tokens",
        # SHA-256 of the token: the token itself is never stored.
        sa.Column("token_hash", sa.String(64), primary_key=True),
        sa.Column(
            "family_id",
            sa.String(36),
            sa.ForeignKey("refresh_families.id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        ),
        sa.Column("issued_at", UtcDateTime(), nullable=False),
        sa.Column("idle_expires_at", UtcDateTime(), nullable=False),
        sa.Column("spent_at", UtcDateTime(), nullable=True),
    )
    op.create_table(
        "clients",
        sa.Column("client_id", sa.String(64), primary_key=True),
        sa.Column("secret_hash", sa.String(64), nullable=False),
        sa.Column("scope", sa.Text, nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
    )
    op.create_table(
        "login_failures",
        # SHA-256 of "account:<name>" or "address:<ip>": a password typed into the username
        # field is never stored in the clear.
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("failures", sa.Integer, nullable=False),
        sa.Column("window_started_at", UtcDateTime(), nullable=False),
        sa.Column("locked_until", UtcDateTime(), nullable=True),
    )


def downgrade() -> None:
    for table in ("login_failures", "clients", "refresh_tokens", "refresh_families", "accounts"):
        op.drop_table(table)
