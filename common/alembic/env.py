"""Alembic environment shared by every service: runs on the connection handed in by
common.db.migrate, so migrations use the service's own engine and transaction."""

from alembic import context

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=None,
    # SQLite alters tables by copy-and-move; Alembic's batch mode does that for us.
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
