"""``facts.extract`` plans without writing (it takes no session), and the repository applies the
plan: direct tests of both, below the HTTP edge."""

from __future__ import annotations

import copy
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from app.measures.instruments import ANSWERS, PHQ9
from app.store import facts
from app.store.models import MeasurementRow, Resource
from app.store.repository import Repository
from tests.conftest import load_fixture

UTC = ZoneInfo("UTC")


def response(patient: str = "p1", *, status: str = "completed") -> dict[str, Any]:
    body = copy.deepcopy(load_fixture("us-core-phq9-questionnaireresponse.json"))
    body.update(id="q1", subject={"reference": f"Patient/{patient}"}, status=status)
    body["meta"] = {"lastUpdated": "2026-01-05T10:00:00Z"}
    return body


def plan_of(
    data: dict[str, Any],
    derived_ids: tuple[str, ...] = (),
    scored: bool = False,
    previous: facts.Previous = None,
) -> facts.FactPlan:
    return facts.extract(
        data["resourceType"],
        data.get("id", "x1"),
        "p1",
        data,
        UTC,
        "default",
        derived_ids=list(derived_ids),
        response_scored=lambda _: scored,
        previous=previous,
    )


def test_a_scored_response_plans_one_measurement_and_a_derived_observation() -> None:
    plan = plan_of(response())
    [(model, row)] = plan.rows
    assert (model, row["score"], row["item9"], row["instrument"]) == (MeasurementRow, 12, 0, "PHQ-9")
    assert plan.derived is not None and plan.derived["valueQuantity"]["value"] == 12
    assert plan.derived_id is not None  # a new id: the event raised for it names it
    assert (plan.derived_exists, plan.derived_deletes, plan.warnings) == (False, [], [])


def test_a_rescored_response_updates_its_first_derived_observation_and_drops_the_rest() -> None:
    plan = plan_of(response(), derived_ids=("o1", "o2", "o3"))
    assert (plan.derived_id, plan.derived_exists, plan.derived_deletes) == ("o1", True, ["o2", "o3"])


def test_an_incomplete_response_plans_no_score_and_drops_every_derived_observation() -> None:
    plan = plan_of(response(status="in-progress"), derived_ids=("o1", "o2"))
    assert (plan.rows, plan.derived, plan.derived_deletes) == ([], None, ["o1", "o2"])
    assert any("only a completed or amended response gets a total" in w.diagnostics for w in plan.warnings)


@pytest.mark.parametrize(("scored", "rows"), [(True, 0), (False, 1)])
def test_a_total_derived_from_a_scored_response_is_the_same_measurement(scored: bool, rows: int) -> None:
    observation = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": PHQ9.total}]},
        "effectiveDateTime": "2026-01-05",
        "valueInteger": 12,
        "derivedFrom": [{"reference": "QuestionnaireResponse/q1"}],
    }
    assert len(plan_of(observation, scored=scored).rows) == rows


def test_without_a_patient_nothing_is_planned() -> None:
    plan = facts.extract(
        "QuestionnaireResponse",
        "q1",
        None,
        response(),
        UTC,
        "default",
        derived_ids=["o1"],
        response_scored=bool,
    )
    assert plan == facts.FactPlan()


# --- the events a write raises (notifications.md Topics) ----------------------------------------------

AT = datetime(2022, 11, 29, 20, 50, 32, 718000, tzinfo=ZoneInfo("UTC"))  # the example's authored


def with_item9(answer: int) -> dict[str, Any]:
    """The US Core example (total 12, item 9 = 0) with item 9 answered ``answer``."""
    body = response()
    code = next(a.code for a in ANSWERS.values() if a.score == answer)  # LL358-3
    [item9] = [item for item in body["item"] if item["linkId"] == "/44260-8"]
    item9["answer"] = [{"valueCoding": {"system": "http://loinc.org", "code": code}}]
    return body


@pytest.mark.parametrize(
    ("answer", "previous", "topics"),
    [
        (0, None, ["measurement-recorded"]),  # a new score, item 9 = 0
        (1, None, ["safety-risk", "measurement-recorded"]),  # item 9 at the threshold
        (2, None, ["safety-risk", "measurement-recorded"]),
        (1, ("PHQ-9", 12, 0, AT), ["safety-risk", "measurement-recorded"]),  # 0 -> 1, score 12 -> 13
        (1, ("PHQ-9", 13, None, AT), ["safety-risk"]),  # absent -> 1, the same score
        (1, ("PHQ-9", 13, 1, AT), []),  # a retry: nothing changed
        (2, ("PHQ-9", 13, 1, AT), ["measurement-recorded"]),  # already at risk; the score moved
        (0, ("PHQ-9", 12, 0, AT), []),
        (0, ("PHQ-9", 12, 0, AT.replace(day=4)), ["measurement-recorded"]),  # another time
    ],
)
def test_events_follow_what_changed(answer: int, previous: facts.Previous, topics: list[str]) -> None:
    plan = plan_of(with_item9(answer), previous=previous)
    assert plan.rows[0][1]["item9"] == answer
    assert [event.topic.rsplit("/", 1)[1] for event in plan.events] == topics
    for event in plan.events:
        if event.topic.endswith("safety-risk"):
            assert (event.focus, event.context) == (("QuestionnaireResponse", "q1"), ("Patient/p1",))
        else:
            assert event.focus == ("Observation", plan.derived_id)
            assert event.context == ("Patient/p1", "QuestionnaireResponse/q1")


def test_an_incomplete_response_raises_nothing() -> None:
    assert plan_of(response(status="in-progress")).events == []


# --- the repository applies the plan ---------------------------------------------------------------


def _derived(repository: Repository) -> list[tuple[str, bool]]:
    with repository.session.begin():
        rows = repository.session.execute(
            select(Resource.id, Resource.deleted).where(Resource.type == "Observation").order_by(Resource.id)
        )
        return [(rid, deleted) for rid, deleted in rows]


def _scores(repository: Repository) -> list[int | None]:
    with repository.session.begin():
        return list(repository.session.scalars(select(MeasurementRow.score)))


def test_the_repository_writes_what_was_planned(repository: Repository) -> None:
    def put(rtype: str, rid: str, data: dict[str, Any]) -> None:
        with repository.session.begin():
            repository.update(rtype, rid, data)

    put("Patient", "p1", {"resourceType": "Patient", "id": "p1"})
    put("QuestionnaireResponse", "q1", response())
    [(oid, deleted)] = _derived(repository)
    assert not deleted
    assert _scores(repository) == [12]
    # the response becomes incomplete: its measurement and its derived Observation go
    put("QuestionnaireResponse", "q1", response(status="in-progress"))
    assert _derived(repository) == [(oid, True)]
    assert _scores(repository) == []
