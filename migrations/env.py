"""Alembic environment: the URL comes from the app's config, the metadata from its models (each package's)."""
from __future__ import annotations

from logging.config import fileConfig

from alembic import context
from sqlalchemy import create_engine, text

from app.accounts import models as accounts_models  # noqa: F401 - every package's tables join Base.metadata
from app.core.config import load_config
from app.core.models import Base
from app.leaderboards import models as leaderboards_models  # noqa: F401
from app.quiz import models as quiz_models  # noqa: F401

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = Base.metadata


def database_url() -> str:
    return config.attributes.get("database_url") or load_config().database_url


def run_migrations_offline() -> None:
    context.configure(url=database_url(), target_metadata=target_metadata, literal_binds=True,
                      transaction_per_migration=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = create_engine(database_url())
    with engine.connect() as connection:
        # Never hold a lock on a live table for long: fail fast and retry the deploy instead.
        connection.execute(text("SET lock_timeout = '5s'"))
        connection.execute(text("SET statement_timeout = '10min'"))
        # Partitions (of `events`, migration 0005) are the partitioned table's storage, made by the
        # relay as days go by: not tables of the models, so autogenerate must not compare them.
        partitions = set(connection.execute(text(
            "SELECT relname FROM pg_class WHERE relispartition AND relkind IN ('r', 'p')")).scalars())
        connection.commit()

        def include_name(name, type_, parent_names):
            return not (type_ == "table" and name in partitions)

        context.configure(connection=connection, target_metadata=target_metadata,
                          transaction_per_migration=True, compare_type=True, include_name=include_name)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
