"""The repository below the HTTP edge: writes that change nothing write nothing."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from app.services.uow import transact
from app.store.models import ResourceVersion
from app.store.repository import ResourceStore

PATIENT = {"resourceType": "Patient", "id": "p1", "identifier": [{"system": "urn:mrn", "value": "1"}]}


def _versions(store: ResourceStore) -> int:
    with store.session.begin():
        return int(store.session.scalar(select(func.count()).select_from(ResourceVersion)) or 0)


@pytest.mark.parametrize("same", [True, False])
def test_update_unless_same(store: ResourceStore, same: bool) -> None:
    transact(store, lambda: store.update("Patient", "p1", PATIENT))
    body = PATIENT if same else {**PATIENT, "gender": "female"}
    result = transact(store, lambda: store.update("Patient", "p1", body, unless_same=True))
    assert (result.created, result.changed, result.stored.version_id) == (False, not same, 1 if same else 2)
    assert _versions(store) == (1 if same else 2)


@pytest.mark.parametrize("same", [True, False])
def test_conditional_update_unless_same(store: ResourceStore, same: bool) -> None:
    transact(store, lambda: store.update("Patient", "p1", PATIENT))
    body = {k: v for k, v in PATIENT.items() if k != "id"} | ({} if same else {"gender": "male"})
    result = transact(
        store, lambda: store.conditional_update("Patient", "identifier=urn:mrn|1", body, unless_same=True)
    )
    assert (result.stored.id, result.changed) == ("p1", not same)
    assert _versions(store) == (1 if same else 2)


def test_without_unless_same_an_identical_put_is_a_new_version(store: ResourceStore) -> None:
    transact(store, lambda: store.update("Patient", "p1", PATIENT))
    result = transact(store, lambda: store.update("Patient", "p1", PATIENT))
    assert (result.changed, result.stored.version_id) == (True, 2)
