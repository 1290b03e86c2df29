"""Engine and sessions: one code path for SQLite and PostgreSQL.

SQLite runs in WAL mode with a busy timeout and foreign keys on; its transactions are begun
explicitly so that SAVEPOINTs work with the pysqlite driver (SQLAlchemy docs, "Serializable
isolation / Savepoints / Transactional DDL"), and a transaction that will write begins IMMEDIATE.
PostgreSQL uses psycopg 3 with a pre-pinged pool whose size is a setting. Both hide bound
parameters from SQLAlchemy's error messages: a failed statement's values are patient data and
must not reach a log.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Dialect, Engine, String, create_engine, event
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import ORMExecuteState, Session, SessionTransaction, sessionmaker

SQLITE_BUSY_TIMEOUT_MS = 30_000
WRITE_OPTION = "cocm_write"  # execution option: this transaction will write


def make_engine(
    url: URL, *, pool_size: int = 10, max_overflow: int = 10, sqlite_synchronous: str = "NORMAL"
) -> Engine:
    """``sqlite_synchronous``: SQLite's ``synchronous`` pragma, NORMAL or FULL (``Settings``)."""
    if sqlite_synchronous not in {"NORMAL", "FULL"}:
        raise ValueError("sqlite_synchronous must be NORMAL or FULL")
    if url.get_backend_name() == "sqlite":
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 30}, hide_parameters=True
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.isolation_level = None  # we emit BEGIN ourselves
            cursor = dbapi_connection.cursor()
            if url.database and url.database != ":memory:":
                cursor.execute("PRAGMA journal_mode=WAL")
                # WAL + NORMAL: consistent after a crash, and a commit costs no fsync (SQLite docs,
                # "WAL mode"); a power cut may lose the last commits. FULL: an fsync per commit.
                cursor.execute(f"PRAGMA synchronous={sqlite_synchronous}")
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
        url,
        pool_pre_ping=True,
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_recycle=1800,
        hide_parameters=True,
    )


def write_lock(engine: Engine) -> AbstractContextManager[object]:
    """SQLite takes one writer at a time: queueing this process's writers on a lock is cheaper and
    fairer than SQLite's busy-wait sleeps (the busy timeout still covers other processes).
    PostgreSQL needs no lock: its row locks and unique keys arbitrate. Reentrant: the group commit's
    writer thread (``app.services.uow``) runs a failed group's items alone with it held."""
    return threading.RLock() if engine.dialect.name == "sqlite" else nullcontext()


def analyze(engine: Engine) -> bool:
    """Refresh the query planner's statistics (``ANALYZE``, on SQLite and PostgreSQL alike): after
    a bulk load, until autovacuum gets to it, PostgreSQL plans the new rows as if the tables were
    empty and scans where an index would do (benchmarks/RESULTS.md). An optimisation only: False,
    not an exception, when the database refuses it."""
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql("ANALYZE")
            connection.commit()
    except DBAPIError:
        return False
    return True


TRANSACTION_INFO = "cocm_transaction"  # Session.info key: state that ends with the transaction
PENDING_INSERTS = "inserts"  # in it: mapped class -> rows waiting to be inserted


def transaction_info(session: Session) -> dict[str, Any]:
    """A dict that lives as long as the session's outermost transaction: cleared when it commits
    or rolls back, so nothing learnt in a rolled-back transaction survives it."""
    info: dict[str, Any] = session.info.setdefault(TRANSACTION_INFO, {})
    return info


def insert_later(session: Session, model: type[Any], row: dict[str, Any]) -> None:
    """Queue a row for insertion. Queued rows are sent as one INSERT per table (``_RawInsert``: an
    ``executemany`` on SQLite; on PostgreSQL one statement over column arrays, every table's in one
    round trip) just before the session's next statement, or at commit, so reads in the same
    transaction always see them. This replaces the
    ORM unit of work on the write path: a row costs a dict instead of a tracked object (measured in
    benchmarks/RESULTS.md). Every row of a table must carry the same keys."""
    transaction_info(session).setdefault(PENDING_INSERTS, {}).setdefault(model, []).append(row)


def flush_inserts(session: Session) -> None:
    pending: dict[type[Any], list[dict[str, Any]]] | None = transaction_info(session).pop(
        PENDING_INSERTS, None
    )
    if not pending:
        return
    connection = session.connection()  # a Connection: its statements skip the hook below
    statements = [
        (_raw_insert(model, tuple(rows[0]), connection.dialect), rows) for model, rows in pending.items()
    ]
    if len(statements) == 1 or not statements[0][0].by_column:  # by column: PostgreSQL
        for statement, rows in statements:  # the schema has no foreign keys: any order is valid
            statement.execute(connection, rows)
        return
    # psycopg's pipeline mode: every table's INSERT sent at once, one round trip for all. An error
    # arrives at the sync, outside SQLAlchemy's execute: it is raised as SQLAlchemy would raise it.
    driver = connection.connection.driver_connection
    assert driver is not None
    try:
        with driver.pipeline():
            for statement, rows in statements:
                statement.execute(connection, rows)
    except connection.dialect.loaded_dbapi.Error as exc:
        lost = connection.dialect.is_disconnect(exc, driver, None)
        if lost:
            connection.invalidate(exc)
        raise DBAPIError.instance(
            "INSERT (pipeline)",
            None,
            exc,
            connection.dialect.loaded_dbapi.Error,
            hide_parameters=True,
            connection_invalidated=lost,
            dialect=connection.dialect,
        ) from exc


@dataclass(frozen=True)
class _RawInsert:
    """An INSERT built once per table, column set and dialect, with each column's bind processor
    (``UTCDateTime``, SQLite's date and boolean forms) and scalar default, so that queued rows
    become driver parameters without SQLAlchemy building each row's anew. SQLite takes them as one
    ``executemany`` (one statement prepared, rebound per row, in C). PostgreSQL takes one statement
    whatever the number of rows, ``INSERT ... SELECT * FROM unnest(column arrays)``: one parameter per
    column, so the text never changes and psycopg parses it once and has the server prepare it
    (psycopg's ``executemany`` spends more per row in Python than the row costs the server, and a
    multi-row VALUES list is parsed anew for each row count). Measured in benchmarks/RESULTS.md."""

    sql: str
    keys: tuple[str, ...]  # in column order
    processors: tuple[Callable[[Any], Any] | None, ...]
    defaults: dict[str, Any]  # for the columns a row leaves out
    by_column: bool  # PostgreSQL: one array per column

    def parameters(self, row: dict[str, Any]) -> tuple[Any, ...]:
        if self.defaults:
            row = {**self.defaults, **row}
        return tuple(
            row[key] if process is None else process(row[key])
            for key, process in zip(self.keys, self.processors, strict=True)
        )

    def execute(self, connection: Connection, rows: list[dict[str, Any]]) -> None:
        parameters = [self.parameters(row) for row in rows]
        if self.by_column:
            connection.exec_driver_sql(
                self.sql, tuple(list(column) for column in zip(*parameters, strict=True))
            )
        else:
            connection.exec_driver_sql(self.sql, parameters)


_RAW_INSERTS: dict[tuple[type[Any], tuple[str, ...], str], _RawInsert] = {}


def _raw_insert(model: type[Any], keys: tuple[str, ...], dialect: Dialect) -> _RawInsert:
    cache_key = (model, keys, dialect.name)
    statement = _RAW_INSERTS.get(cache_key)
    if statement is None:
        table = model.__table__
        unknown = set(keys) - set(table.columns.keys())
        if unknown:
            raise TypeError(f"rows of {model.__name__} name no column {sorted(unknown)}")
        columns = [c for c in table.columns if c.key in keys or c.default is not None]
        defaults = {c.key: c.default for c in columns if c.key not in keys}
        if not all(default.is_scalar for default in defaults.values()):
            raise TypeError(f"rows of {model.__name__} leave out a column with no scalar default")
        quote = dialect.identifier_preparer.quote
        head = f"INSERT INTO {quote(table.name)} ({', '.join(quote(c.name) for c in columns)}) "
        by_column = dialect.name == "postgresql"
        if by_column:
            # Text arrays for text columns: the INSERT's own cast to VARCHAR(n) refuses a longer
            # value (DataError), as SQLAlchemy's INSERT does, where an explicit cast would cut it.
            arrays = ", ".join(
                f"%b::{'TEXT' if isinstance(c.type, String) else c.type.compile(dialect=dialect)}[]"
                for c in columns
            )
            sql = f"{head}SELECT * FROM unnest({arrays})"  # noqa: S608 (schema names only)
        else:
            sql = f"{head}VALUES ({', '.join('?' * len(columns))})"
        statement = _RAW_INSERTS[cache_key] = _RawInsert(
            sql,
            tuple(c.key for c in columns),
            tuple(c.type.dialect_impl(dialect).bind_processor(dialect) for c in columns),
            {key: default.arg for key, default in defaults.items()},
            by_column,
        )
    return statement


def _flush_before_statement(state: ORMExecuteState) -> None:
    flush_inserts(state.session)


def _end_of_transaction(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None:  # the outermost transaction: commit flushed, rollback drops
        session.info.pop(TRANSACTION_INFO, None)


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    factory = sessionmaker(engine, expire_on_commit=False, autoflush=False)
    event.listen(factory, "do_orm_execute", _flush_before_statement)
    event.listen(factory, "before_commit", flush_inserts)
    event.listen(factory, "after_transaction_end", _end_of_transaction)
    return factory
