"""The resource service, below the HTTP edge: it checks the caller's scopes, validates, audits
each interaction (and each failed one) and leaves persistence to the repository."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from app.domain import Actor
from app.errors import Forbidden, InvalidInput
from app.services.resources import ResourceService
from app.services.uow import transact
from app.store.models import AuditEventRow, Resource
from tests.conftest import load_fixture
from tests.notifications.support import subscription_body

PATIENT = {"resourceType": "Patient", "id": "p1"}


def _trail(service: ResourceService) -> list[tuple[str, str, str | None, str | None, str]]:
    with service.session.begin():
        rows = service.session.scalars(select(AuditEventRow).order_by(AuditEventRow.recorded))
        return [(r.action, r.interaction, r.entity_type, r.entity_id, r.outcome) for r in rows]


def _ids(service: ResourceService) -> list[str]:
    with service.session.begin():
        return list(service.session.scalars(select(Resource.id)))


def _response() -> dict[str, Any]:
    body = load_fixture("us-core-phq9-questionnaireresponse.json")
    body.update(id="q1", subject={"reference": "Patient/p1"}, status="completed")
    return body


def test_the_scope_check_is_the_predicate_the_service_was_given(service: ResourceService) -> None:
    service = ResourceService(
        service.session,
        "default",
        service.zone,
        Actor("client-a"),
        permits=lambda rtype, interaction: rtype != "Patient" or interaction != "c",
    )
    with pytest.raises(Forbidden) as denied:
        transact(service, lambda: service.create("Patient", {"resourceType": "Patient"}))
    assert denied.value.required_scope == "system/Patient.c"
    assert _ids(service) == []
    # the failed attempt is audited in its own transaction: outcome 4, the client's error
    assert _trail(service) == [("C", "failed", "Patient", None, "4")]


def test_invalid_content_is_refused_before_the_repository(service: ResourceService) -> None:
    with pytest.raises(InvalidInput):
        transact(service, lambda: service.update("Patient", "p1", {**PATIENT, "gender": 7}))
    assert _ids(service) == []
    assert _trail(service) == [("U", "failed", "Patient", "p1", "4")]


def test_each_interaction_is_audited_and_derived_deletions_too(service: ResourceService) -> None:
    transact(service, lambda: service.update("Patient", "p1", PATIENT))
    transact(service, lambda: service.update("QuestionnaireResponse", "q1", _response()))
    [score] = transact(service, lambda: service.search("Observation", [("patient", "p1")]))[0]
    transact(service, lambda: service.read("Patient", "p1"))
    transact(service, lambda: service.delete("QuestionnaireResponse", "q1"))
    assert _trail(service) == [
        ("C", "update", "Patient", "p1", "0"),
        ("C", "update", "QuestionnaireResponse", "q1", "0"),
        ("E", "search-type", "Patient", "p1", "0"),
        ("R", "read", "Patient", "p1", "0"),
        ("D", "delete", "QuestionnaireResponse", "q1", "0"),
        ("D", "delete", "Observation", score.id, "0"),
    ]


def test_full_resource_needs_read_scope_on_what_it_carries(service: ResourceService) -> None:
    """notifications.md Security: a subscriber gets no more than it may read."""

    def without_response_reads(rtype: str, interaction: str) -> bool:
        return not (rtype == "QuestionnaireResponse" and interaction == "r")

    limited = ResourceService(
        service.session,
        "default",
        service.zone,
        permits=without_response_reads,
        allowed_hosts=frozenset({"127.0.0.1"}),
    )
    full = subscription_body("http://127.0.0.1:9/hook", content="full-resource")
    with pytest.raises(Forbidden) as denied:
        transact(limited, lambda: limited.create("Subscription", full))
    assert denied.value.required_scope == "system/QuestionnaireResponse.r"
    id_only = subscription_body("http://127.0.0.1:9/hook", content="id-only")
    assert transact(limited, lambda: limited.create("Subscription", id_only)).created
