"""Alembic environment: the engine comes from the caller's settings, never from an ini file."""

from alembic import context

config = context.config
connection = config.attributes["connection"]
# Domain packages own their tables; the caller passes their metadata so autogenerate can compare.
target_metadata = config.attributes.get("target_metadata")

context.configure(
    connection=connection,
    target_metadata=target_metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
