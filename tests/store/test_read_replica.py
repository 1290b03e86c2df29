"""``COCM_DATABASE_READ_URL``: the month-wide billing and registry reads go to the read replica,
everything else (writes, audit rows, one patient's reads) to the primary.

The replica is a second real database migrated like the primary; "replication" is a copy of every
table, as a streaming replica would deliver it. Until the copy the replica is behind: the
month-wide reads show nothing while the per-patient reads (primary) already show the minutes.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from app.settings import Settings
from app.store.db import make_engine
from app.store.migrate import upgrade
from app.store.models import AuditEventRow, Base
from tests.api.scenario import Clinic
from tests.conftest import Fhir, _empty_tables, count_rows, new_database

MONTH = "2026-01"


@pytest.fixture
def replica(tmp_path: Path) -> Iterator[tuple[str, Engine]]:
    with new_database(tmp_path) as url:
        engine = make_engine(Settings(database_url=url).sqlalchemy_url)
        upgrade(engine)
        try:
            yield url, engine
        finally:
            engine.dispose()


def replicate(primary: Engine, replica: Engine) -> None:
    """Make the replica a copy of the primary, table by table."""
    _empty_tables(replica)
    with primary.connect() as source, replica.begin() as target:
        for table in Base.metadata.sorted_tables:
            rows = [dict(row._mapping) for row in source.execute(select(table))]
            if rows:
                target.execute(table.insert(), rows)


def month_wide(client: TestClient) -> tuple[list[str], list[str], list[str]]:
    """Patient ids of the billing month, its CSV and the registry."""
    billing = client.get("/api/v1/billing", params={"month": MONTH}).json()["items"]
    csv_text = client.get("/api/v1/billing.csv", params={"month": MONTH}).content.decode("utf-8-sig")
    registry = client.get("/api/v1/registry", params={"as_of": "2026-01-31"}).json()["items"]
    return (
        [i["patient_id"] for i in billing],
        [r["patient_id"] for r in csv.DictReader(io.StringIO(csv_text))],
        [i["patient_id"] for i in registry],
    )


def test_month_wide_reads_go_to_the_replica(
    make_client: Callable[..., TestClient], db: Engine, replica: tuple[str, Engine]
) -> None:
    replica_url, replica_engine = replica
    client = make_client(database_read_url=replica_url)
    assert client.get("/ready").status_code == 200
    clinic = Clinic(Fhir(client))
    pid = clinic.enrolled()
    clinic.minutes(pid, "2026-01-05T10:00:00Z", 40)

    # The replica has not caught up: month-wide reads see nothing, the patient's own reads (primary) do.
    assert month_wide(client) == ([], [], [])
    own = client.get(f"/api/v1/patients/{pid}/billing", params={"month": MONTH}).json()
    assert own["minutes"] == 40
    assert count_rows(replica_engine, "resource") == 0  # nothing was written to the replica

    replicate(db, replica_engine)
    assert month_wide(client) == ([pid], [pid], [pid])

    # The audit rows of those reads were written to the primary only.
    with db.connect() as conn:
        on_primary = conn.scalars(select(AuditEventRow.interaction)).all()
    assert on_primary.count("billing-month") == 4 and on_primary.count("registry") == 2
    with replica_engine.connect() as conn:
        on_replica = conn.scalars(select(AuditEventRow.interaction)).all()
    assert on_replica.count("billing-month") == 2  # the ones copied before the second look


def test_an_unreachable_replica_makes_the_service_unready(
    make_client: Callable[..., TestClient], tmp_path: Path
) -> None:
    missing = f"sqlite:///{tmp_path / 'no-such-dir' / 'replica.db'}"
    client = make_client(database_read_url=missing)
    ready = client.get("/ready")
    assert ready.status_code == 503
    assert ready.json()["database"] == "unreachable"


def test_without_a_replica_everything_reads_the_primary(client: TestClient, clinic: Clinic) -> None:
    pid = clinic.enrolled()
    clinic.minutes(pid, "2026-01-05T10:00:00Z", 40)
    assert month_wide(client) == ([pid], [pid], [pid])
