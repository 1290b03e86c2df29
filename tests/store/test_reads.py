"""FactReader: the two ways of reading a set of patients' facts (IN lists, or one pass over the
tenant's rows) give the same facts, of exactly the patients asked for."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, event
from sqlalchemy.orm import Session

from app.domain import PatientFacts
from app.store import reads
from app.store.reads import FactReader
from tests.api.scenario import Clinic


def _facts(db: Engine, ids: list[str], *, tenant_pass: bool) -> dict[str, PatientFacts]:
    with Session(db) as session:
        reader = FactReader(session, "default")
        live = reader.live_patient_ids()  # learns how many patients the tenant has
        assert reader.patient_count == len(live)
        if not tenant_pass:
            reader.patient_count = 10 * len(ids)  # a tenant ten times larger: IN lists
        return dict(reader.facts(ids))


@pytest.mark.parametrize("asked", [1, 3, 4, 6])
def test_in_lists_and_one_pass_read_the_same_facts(
    clinic: Clinic, db: Engine, monkeypatch: pytest.MonkeyPatch, asked: int
) -> None:
    monkeypatch.setattr(reads, "CHUNK", 2)
    pids = [clinic.enrolled(family=f"R{i}") for i in range(6)]
    for number, pid in enumerate(pids):
        clinic.minutes(pid, "2026-01-05T10:00:00Z", 20 + number)
        clinic.score(pid, "2026-01-06T10:00:00Z", 10 + number)
    ids = pids[:asked]
    chunked = _facts(db, ids, tenant_pass=False)
    one_pass = _facts(db, ids, tenant_pass=True)
    assert chunked == one_pass
    assert set(one_pass) == set(ids)  # nobody else's facts
    for number, pid in enumerate(ids):
        facts = one_pass[pid]
        assert [e.seconds for e in facts.entries] == [(20 + number) * 60]
        assert [m.score for m in facts.measurements] == [10 + number]
        assert len(facts.consents) == 1 and len(facts.visits) == 1


def test_one_pass_only_when_most_of_the_tenant_is_asked_for(
    clinic: Clinic, db: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three of eight patients (more than CHUNK, less than half): IN lists, so a month with few
    patients in a tenant with a long history does not read the whole history."""
    monkeypatch.setattr(reads, "CHUNK", 2)
    pids = [clinic.enrolled(family=f"S{i}") for i in range(8)]
    statements: list[str] = []
    with Session(db) as session:
        reader = FactReader(session, "default")
        reader.live_patient_ids()

        def seen(conn: object, cursor: object, statement: str, *args: object) -> None:
            statements.append(statement)

        event.listen(db, "before_cursor_execute", seen)
        try:
            reader.facts(pids[:3])
            few = len(statements)
            statements.clear()
            reader.facts(pids[:5])
            most = len(statements)
        finally:
            event.remove(db, "before_cursor_execute", seen)
    assert few == 6 * 2  # six tables, two IN lists each (chunks of 2)
    assert most == 6  # six tables, one pass each


def test_the_tenant_size_is_counted_when_not_yet_known(
    clinic: Clinic, db: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """facts() decides the same way whether or not the live patients were listed before it."""
    monkeypatch.setattr(reads, "CHUNK", 2)
    pids = [clinic.enrolled(family=f"T{i}") for i in range(8)]
    statements: list[str] = []

    def seen(conn: object, cursor: object, statement: str, *args: object) -> None:
        statements.append(statement)

    with Session(db) as session:
        reader = FactReader(session, "default")
        event.listen(db, "before_cursor_execute", seen)
        try:
            reader.facts(pids[:5])
        finally:
            event.remove(db, "before_cursor_execute", seen)
    assert reader.patient_count == 8
    selects = [s for s in statements if s.startswith("SELECT")]  # SQLite also sends its BEGIN
    assert len(selects) == 1 + 6  # the count, then six tables in one pass each
