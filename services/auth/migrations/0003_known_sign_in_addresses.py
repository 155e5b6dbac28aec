"""Known sign-in addresses: (account, address) pairs with a recent correct login.

An address locked out for failed logins (password spraying) still lets these pairs sign
in, so people behind one NAT are not locked out by someone else's failures.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

from common.timestamps import UtcDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "known_sign_in_addresses",
        # SHA-256 of "pair:<name>|<address>": neither is stored in the clear.
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("expires_at", UtcDateTime(), nullable=False, index=True),
    )


def downgrade() -> None:
    op.drop_table("known_sign_in_addresses")
