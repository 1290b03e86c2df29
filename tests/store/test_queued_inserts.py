"""Queued rows (``insert_later``) are sent as driver ``executemany`` with SQLAlchemy's own bind
processors: what lands in each table is exactly what SQLAlchemy's INSERT stores, on SQLite and on
PostgreSQL, for every column type of the schema (naive-UTC instants with and without microseconds,
dates, booleans, defaults left out)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import Boolean, Date, Engine, Integer, String, insert
from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.orm import Session

from app.store.db import flush_inserts, insert_later, make_sessionmaker
from app.store.models import Base, UTCDateTime
from tests.conftest import _empty_tables, count_rows

INSTANTS = [
    datetime(2026, 1, 5, 0, 0, tzinfo=UTC),
    datetime(2026, 1, 4, 19, 30, 15, 250, tzinfo=timezone(timedelta(hours=-5))),
]
TAGS = {"by-sqlalchemy", "queued"}  # the primary key's text columns (none is shorter)
TABLES = sorted(Base.metadata.tables.values(), key=lambda table: table.name)


def _row(table: Any, tag: str, instant: datetime) -> dict[str, Any]:
    """A value for every column, the primary key marked by ``tag``; columns with a default left
    out (the default must be filled in); an autoincrement key left to the database."""
    row: dict[str, Any] = {}
    for column in table.columns:
        if column.default is not None or _generated(column):
            continue
        kind = column.type
        if isinstance(kind, UTCDateTime):
            row[column.key] = instant
        elif isinstance(kind, Date):
            row[column.key] = instant.date() + timedelta(days=1)
        elif isinstance(kind, Boolean):
            row[column.key] = True
        elif isinstance(kind, Integer):
            row[column.key] = 7
        else:
            length = getattr(kind, "length", None)
            row[column.key] = (tag if column.primary_key else f"{column.key}-value")[:length]
    return row


def _generated(column: Any) -> bool:
    return bool(column.primary_key and isinstance(column.type, Integer) and column.autoincrement is True)


@pytest.mark.parametrize("table", TABLES, ids=lambda table: table.name)
@pytest.mark.parametrize("instant", INSTANTS, ids=["whole-second-utc", "microseconds-offset"])
def test_a_queued_row_is_stored_as_sqlalchemy_stores_it(db: Engine, table: Any, instant: datetime) -> None:
    _empty_tables(db)
    compared = [column for column in table.columns if not _generated(column)]
    with make_sessionmaker(db)() as session, session.begin():
        session.execute(insert(table), [_row(table, "by-sqlalchemy", instant)])
        model = next(mapper.class_ for mapper in Base.registry.mappers if mapper.local_table is table)
        insert_later(session, model, _row(table, "queued", instant))
    quote = db.dialect.identifier_preparer.quote
    with db.connect() as connection:  # compare the stored values as the driver returns them
        stored = connection.exec_driver_sql(
            f"SELECT {', '.join(quote(c.name) for c in compared)} FROM {table.name}"
        ).all()
    assert len(stored) == 2
    first, second = ([v for v in row if v not in TAGS] for row in stored)
    assert first == second


def test_a_refused_row_raises_sqlalchemys_integrity_error_and_nothing_stays(db: Engine) -> None:
    """Several tables queued at once (on PostgreSQL: one pipeline) and one row breaking a unique
    key: the error is SQLAlchemy's ``IntegrityError`` (what the unit of work retries on), raised
    before the commit, and the rolled-back transaction leaves no row of any table."""
    _empty_tables(db)
    instant = INSTANTS[0]
    by_table = {table.name: table for table in TABLES}
    models = {mapper.local_table.name: mapper.class_ for mapper in Base.registry.mappers}
    with make_sessionmaker(db)() as session, pytest.raises(IntegrityError), session.begin():
        insert_later(session, models["audit_event"], _row(by_table["audit_event"], "a1", instant))
        insert_later(session, models["measurement"], _row(by_table["measurement"], "m1", instant))
        insert_later(session, models["measurement"], _row(by_table["measurement"], "m1", instant))
        flush_inserts(session)  # what the group commit does before its COMMIT
    assert count_rows(db, "audit_event") == count_rows(db, "measurement") == 0


def _outcome(db: Engine, send: Any) -> str:
    """What sending a row in a transaction of its own did: stored, or the error class."""
    _empty_tables(db)
    try:
        with make_sessionmaker(db)() as session, session.begin():
            send(session)
    except DataError:
        return "DataError"
    return "stored"


def test_a_value_longer_than_its_column_fares_as_with_sqlalchemys_insert(db: Engine) -> None:
    """``VARCHAR(n)``: PostgreSQL refuses a longer value (DataError, answered 400) and SQLite keeps
    it; a queued row must fare the same, never be cut to fit."""
    table = next(t for t in TABLES if t.name == "audit_event")
    model = next(m.class_ for m in Base.registry.mappers if m.local_table is table)
    column = next(
        c for c in table.columns if isinstance(c.type, String) and c.type.length and not c.primary_key
    )
    row = {**_row(table, "long", INSTANTS[0]), column.key: "x" * (column.type.length + 5)}

    def queued(session: Session) -> None:
        insert_later(session, model, dict(row))
        flush_inserts(session)

    expected = _outcome(db, lambda session: session.execute(insert(table), [dict(row)]))
    assert expected == ("DataError" if db.dialect.name == "postgresql" else "stored")
    assert _outcome(db, queued) == expected


def test_a_row_naming_no_column_is_refused_before_anything_is_sent(db: Engine) -> None:
    _empty_tables(db)
    table = next(t for t in TABLES if t.name == "audit_event")
    model = next(m.class_ for m in Base.registry.mappers if m.local_table is table)
    with make_sessionmaker(db)() as session, session.begin():
        insert_later(session, model, {**_row(table, "a1", INSTANTS[0]), "no_such_column": 1})
        with pytest.raises(TypeError, match="no_such_column"):
            flush_inserts(session)
    assert count_rows(db, "audit_event") == 0
