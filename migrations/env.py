"""Alembic environment: the URL comes from the service's settings (COCM_DATABASE_URL), or from a
connection handed in by ``app.store.migrate`` (tests and ``cocm migrate``)."""

from __future__ import annotations

from logging.config import fileConfig

from alembic import context

import app.auth.models  # noqa: F401  (registers smart_jti on the metadata)
from app.settings import load_settings
from app.store.db import make_engine
from app.store.models import Base, UTCDateTime

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = Base.metadata


def render_item(type_: str, obj: object, autogen_context: object) -> str | bool:
    """Render our UTC column type as the plain DateTime it stores, so migrations import nothing
    from the app."""
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime()"
    return False


OPTIONS = {"target_metadata": target_metadata, "compare_type": True, "render_item": render_item}


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(connection=connection, **OPTIONS)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = make_engine(load_settings().sqlalchemy_url)
    with engine.connect() as conn:
        context.configure(connection=conn, **OPTIONS)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline migrations are not supported; run against a database")
run_migrations_online()
