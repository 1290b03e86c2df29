"""The repository alone, below the service: persistence with no scope check, no audit row and no
validation of its own. Writes that change nothing write nothing; a deletion takes what was derived
from the resource with it and says so."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from sqlalchemy import func, select

from app.errors import BusinessRuleViolation, Conflict, Gone, NotFound, PreconditionFailed
from app.store.models import AuditEventRow, MeasurementRow, ResourceVersion
from app.store.repository import Repository, WriteResult
from tests.conftest import load_fixture

PATIENT = {"resourceType": "Patient", "id": "p1", "identifier": [{"system": "urn:mrn", "value": "1"}]}


def _count(repository: Repository, model: type[Any]) -> int:
    with repository.session.begin():
        return int(repository.session.scalar(select(func.count()).select_from(model)) or 0)


def _put(repository: Repository, rtype: str, rid: str, data: dict[str, Any], **options: Any) -> WriteResult:
    with repository.session.begin():
        return repository.update(rtype, rid, data, **options)


def _response() -> dict[str, Any]:
    body = copy.deepcopy(load_fixture("us-core-phq9-questionnaireresponse.json"))
    body.update(id="q1", subject={"reference": "Patient/p1"}, status="completed")
    return body


@pytest.mark.parametrize("same", [True, False])
def test_update_unless_same(repository: Repository, same: bool) -> None:
    _put(repository, "Patient", "p1", PATIENT)
    body = PATIENT if same else {**PATIENT, "gender": "female"}
    result = _put(repository, "Patient", "p1", body, unless_same=True)
    assert (result.created, result.changed, result.stored.version_id) == (False, not same, 1 if same else 2)
    assert _count(repository, ResourceVersion) == (1 if same else 2)


@pytest.mark.parametrize("same", [True, False])
def test_conditional_update_unless_same(repository: Repository, same: bool) -> None:
    _put(repository, "Patient", "p1", PATIENT)
    body = {k: v for k, v in PATIENT.items() if k != "id"} | ({} if same else {"gender": "male"})
    with repository.session.begin():
        result = repository.conditional_update("Patient", "identifier=urn:mrn|1", body, unless_same=True)
    assert (result.stored.id, result.changed) == ("p1", not same)
    assert _count(repository, ResourceVersion) == (1 if same else 2)


def test_without_unless_same_an_identical_put_is_a_new_version(repository: Repository) -> None:
    _put(repository, "Patient", "p1", PATIENT)
    result = _put(repository, "Patient", "p1", PATIENT)
    assert (result.changed, result.stored.version_id) == (True, 2)


def test_the_repository_writes_no_audit_row(repository: Repository) -> None:
    _put(repository, "Patient", "p1", PATIENT)
    with repository.session.begin():
        repository.read("Patient", "p1")
        repository.search("Patient", [("identifier", "urn:mrn|1")])
    assert _count(repository, AuditEventRow) == 0


def test_create_is_idempotent_on_identifiers(repository: Repository) -> None:
    body = {k: v for k, v in PATIENT.items() if k != "id"}
    with repository.session.begin():
        first = repository.create("Patient", body)
    with repository.session.begin():
        again = repository.create("Patient", body)
    assert (first.created, again.created, again.stored.id) == (True, False, first.stored.id)
    with pytest.raises(Conflict), repository.session.begin():
        repository.create("Patient", {**body, "gender": "other"})


def test_a_write_for_an_unknown_patient_is_refused(repository: Repository) -> None:
    with pytest.raises(BusinessRuleViolation), repository.session.begin():
        repository.update("QuestionnaireResponse", "q1", _response())
    assert _count(repository, ResourceVersion) == 0


def test_delete_answers_what_went_with_it(repository: Repository) -> None:
    _put(repository, "Patient", "p1", PATIENT)
    written = _put(repository, "QuestionnaireResponse", "q1", _response())
    assert written.deleted == ()
    assert _count(repository, MeasurementRow) == 1
    with repository.session.begin():
        [score] = repository.search("Observation", [("patient", "p1")])[0]
        deleted = repository.delete("QuestionnaireResponse", "q1")
    assert deleted == [("QuestionnaireResponse", "q1"), ("Observation", score.id)]
    assert _count(repository, MeasurementRow) == 0
    with repository.session.begin():
        assert repository.delete("QuestionnaireResponse", "q1") == []  # twice is fine, nothing more
        with pytest.raises(Gone):
            repository.read("Observation", score.id)


def test_a_response_made_incomplete_reports_its_score_deleted(repository: Repository) -> None:
    _put(repository, "Patient", "p1", PATIENT)
    _put(repository, "QuestionnaireResponse", "q1", _response())
    result = _put(repository, "QuestionnaireResponse", "q1", {**_response(), "status": "in-progress"})
    assert [rtype for rtype, _ in result.deleted] == ["Observation"]


def test_another_tenants_id_is_unknown(repository: Repository) -> None:
    _put(repository, "Patient", "p1", PATIENT)
    other = Repository(repository.session, "other", repository.zone)
    with repository.session.begin():
        with pytest.raises(NotFound):
            other.read("Patient", "p1")
        with pytest.raises(NotFound):
            other.update("Patient", "p1", PATIENT)


def test_if_match_names_the_current_version(repository: Repository) -> None:
    _put(repository, "Patient", "p1", PATIENT)
    with pytest.raises(PreconditionFailed, match="current version \\(1\\)"), repository.session.begin():
        repository.update("Patient", "p1", PATIENT, if_match=2)
    assert _put(repository, "Patient", "p1", PATIENT, if_match=1).stored.version_id == 2
