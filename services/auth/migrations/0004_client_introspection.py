"""Machine clients that may introspect tokens (RFC 7662): resource servers.

A flag on the client rather than a scope: introspection is something a client may ask of
auth, not a permission its own access tokens should carry to the gateway and backends.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("clients") as batch:
        batch.add_column(
            sa.Column("may_introspect", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    with op.batch_alter_table("clients") as batch:
        batch.drop_column("may_introspect")
