"""External identities (OpenID Connect issuer + subject -> account), sign-in flows, handoffs.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

from common.timestamps import UtcDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "external_identities",
        sa.Column("issuer", sa.String(255), primary_key=True),
        sa.Column("subject", sa.String(255), primary_key=True),
        sa.Column(
            "account_id",
            sa.String(36),
            sa.ForeignKey("accounts.id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        ),
        sa.Column("provider_id", sa.String(32), nullable=False),
        # Set only when the provider said email_verified: true; lower-cased.
        sa.Column("verified_email", sa.String(320), nullable=True, index=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("last_login_at", UtcDateTime(), nullable=True),
    )
    op.create_table(
        "oidc_flows",
        # SHA-256 of the `state` sent to the provider: the row is found by it, once.
        sa.Column("state_hash", sa.String(64), primary_key=True),
        sa.Column("provider_id", sa.String(32), nullable=False),
        sa.Column("nonce", sa.String(128), nullable=False),
        sa.Column("code_verifier", sa.String(128), nullable=False),
        sa.Column("return_to", sa.Text, nullable=False),
        sa.Column("binding_hash", sa.String(64), nullable=False),
        sa.Column("link_account_id", sa.String(36), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("expires_at", UtcDateTime(), nullable=False, index=True),
    )
    op.create_table(
        "oidc_handoffs",
        # SHA-256 of the one-time code the page exchanges for Passgate tokens.
        sa.Column("code_hash", sa.String(64), primary_key=True),
        sa.Column(
            "account_id",
            sa.String(36),
            sa.ForeignKey("accounts.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("binding_hash", sa.String(64), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("expires_at", UtcDateTime(), nullable=False, index=True),
    )


def downgrade() -> None:
    for table in ("oidc_handoffs", "oidc_flows", "external_identities"):
        op.drop_table(table)
