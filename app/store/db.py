"""Engine and sessions: one code path for SQLite and PostgreSQL.

SQLite runs in WAL mode with a busy timeout and foreign keys on; its transactions are begun
explicitly so that SAVEPOINTs work with the pysqlite driver (SQLAlchemy docs, "Serializable
isolation / Savepoints / Transactional DDL"), and a transaction that will write begins IMMEDIATE. PostgreSQL uses psycopg 3 with a
pre-pinged pool whose size is a setting.
"""

from __future__ import annotations

import threading
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session, sessionmaker

SQLITE_BUSY_TIMEOUT_MS = 30_000
WRITE_OPTION = "cocm_write"  # execution option: this transaction will write


def make_engine(url: URL, *, pool_size: int = 10, max_overflow: int = 10) -> Engine:
    if url.get_backend_name() == "sqlite":
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.isolation_level = None  # we emit BEGIN ourselves
            cursor = dbapi_connection.cursor()
            if url.database and url.database != ":memory:":
                cursor.execute("PRAGMA journal_mode=WAL")
                # WAL + NORMAL: consistent after a crash, and a commit costs no fsync (SQLite docs,
                # "WAL mode"); a power cut may lose the last commits. Production runs PostgreSQL.
                cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Any) -> None:
            # A write takes the write lock up front: a deferred transaction that reads and then
            # writes fails at once (SQLITE_BUSY, no busy wait) when another writer got in between.
            conn.exec_driver_sql(
                "BEGIN IMMEDIATE" if conn.get_execution_options().get(WRITE_OPTION) else "BEGIN"
            )

        return engine
    return create_engine(
        url, pool_pre_ping=True, pool_size=pool_size, max_overflow=max_overflow, pool_recycle=1800
    )


def write_lock(engine: Engine) -> AbstractContextManager[object]:
    """SQLite takes one writer at a time: queueing this process's writers on a lock is cheaper and
    fairer than SQLite's busy-wait sleeps (the busy timeout still covers other processes).
    PostgreSQL needs no lock: its row locks and unique keys arbitrate."""
    return threading.Lock() if engine.dialect.name == "sqlite" else nullcontext()


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False, autoflush=False)
