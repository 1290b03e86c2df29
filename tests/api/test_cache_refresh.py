"""Cached month-wide results brought up to date by recomputing only the patients written since
(``ResultCache.get``'s ``refresh``): after every kind of write the refreshed billing month and
registry equal a computation from scratch, and the patients nobody wrote to are reused as they
were."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.services.reports import MONTHS, REGISTRIES
from tests.api.scenario import Clinic
from tests.conftest import Fhir

MONTH = {"month": "2026-01", "limit": 500}
AS_OF = {"as_of": "2026-01-31", "limit": 500}


def _views(client: TestClient) -> tuple[Any, Any]:
    billing = client.get("/api/v1/billing", params=MONTH)
    registry = client.get("/api/v1/registry", params=AS_OF)
    assert billing.status_code == registry.status_code == 200, (billing.text, registry.text)
    return billing.json(), registry.json()


@pytest.fixture
def setup(make_client: Any) -> tuple[TestClient, Clinic, list[str]]:
    client = make_client(cache_refresh_margin_seconds=0)  # only what was written since counts as changed
    clinic = Clinic(Fhir(client))
    pids = [clinic.enrolled(family=f"R{n}") for n in range(6)]
    for n, pid in enumerate(pids):
        clinic.minutes(pid, "2026-01-05T10:00:00Z", 20 + 10 * n)
        clinic.phq9(pid, "2026-01-06T10:00:00Z", [n % 4] * 9)
    return client, clinic, pids


def _writes(client: TestClient, clinic: Clinic, pids: list[str]) -> list[tuple[str, Callable[[], Any]]]:
    encounter = clinic.minutes(pids[1], "2026-01-07T10:00:00Z", 45)["id"]
    return [
        ("minutes added", lambda: clinic.minutes(pids[0], "2026-01-08T10:00:00Z", 50)),
        ("time entry deleted", lambda: client.delete(f"/fhir/Encounter/{encounter}")),
        ("patient deleted", lambda: client.delete(f"/fhir/Patient/{pids[2]}")),
        (
            "new patient with minutes",
            lambda: clinic.minutes(clinic.enrolled(family="New"), "2026-01-09T10:00:00Z", 70),
        ),
        ("score that raises a flag", lambda: clinic.phq9(pids[3], "2026-01-20T10:00:00Z", [3] * 9)),
        ("minutes in another month", lambda: clinic.minutes(pids[4], "2026-02-02T10:00:00Z", 30)),
    ]


def test_refreshed_results_equal_a_computation_from_scratch(
    setup: tuple[TestClient, Clinic, list[str]],
) -> None:
    client, clinic, pids = setup
    for name, write in _writes(client, clinic, pids):
        MONTHS.entries.clear()
        REGISTRIES.entries.clear()
        _views(client)  # cached at the version before the write
        [(_, (_, run))] = MONTHS.entries.items()
        [(_, (_, registry))] = REGISTRIES.entries.items()
        untouched = next(m for m in run.months if m.patient_id == pids[5])
        untouched_status = next(s for s in registry.items if s.patient_id == pids[5])
        write()
        refreshed = _views(client)
        [(_, (_, run_after))] = MONTHS.entries.items()
        [(_, (_, registry_after))] = REGISTRIES.entries.items()
        assert any(m is untouched for m in run_after.months), name  # reused, not recomputed
        assert any(s is untouched_status for s in registry_after.items), name
        MONTHS.entries.clear()
        REGISTRIES.entries.clear()
        assert refreshed == _views(client), name
