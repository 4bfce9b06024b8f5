"""Alembic environment for recordstore's own tables (not the records' payloads).

recordstore passes an open connection in ``config.attributes["connection"]``; the
command line path (``alembic -c ...``) is supported for developers with
``sqlalchemy.url`` set.
"""

from alembic import context
from sqlalchemy import create_engine

from recordstore.tables import metadata

config = context.config


def run_with(connection) -> None:  # type: ignore[no-untyped-def]
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    run_with(connection)
else:
    engine = create_engine(config.get_main_option("sqlalchemy.url"))
    with engine.begin() as conn:
        run_with(conn)
