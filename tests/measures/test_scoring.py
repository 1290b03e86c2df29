"""Scoring QuestionnaireResponses and Observations in every encoding measures.md lists."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from fhir.resources.R4B.observation import Observation
from hypothesis import given
from hypothesis import strategies as st

from app.domain import Instrument as InstrumentName
from app.errors import BusinessRuleViolation
from app.measures.instruments import GAD7, INSTRUMENTS, PHQ2, PHQ9, linkid_map, severity
from app.measures.scoring import (
    ObservationScore,
    ScoredResponse,
    derived_observation,
    item9_observation,
    score_observation,
    score_questionnaire_response,
)
from tests.conftest import load_fixture

LOINC = "http://loinc.org"
ORDINAL = "http://hl7.org/fhir/StructureDefinition/ordinalValue"
ITEM_WEIGHT = "http://hl7.org/fhir/StructureDefinition/itemWeight"
CO_VALUE = "http://hl7.org/fhir/StructureDefinition/iso21090-CO-value"
WEIGHT_URLS = (ORDINAL, ITEM_WEIGHT, CO_VALUE)
ACCESS_PHQ9 = "http://example.org/Questionnaire/PHQ9Questionnaire"
ACCESS_GAD7 = "http://example.org/Questionnaire/GAD7Questionnaire"
MII = "https://www.medizininformatik-initiative.de/fhir/ext/modul-pro/Questionnaire/"
# Typed here on purpose (not read from the module): an independent copy of LL358-3.
CODE_FOR = {0: "LA6568-5", 1: "LA6569-3", 2: "LA6570-1", 3: "LA6571-9"}

Answer = dict[str, Any]
Encoder = Callable[[int], Answer]


# --- payload helpers -------------------------------------------------------------------------------


def as_integer(score: int) -> Answer:
    return {"valueInteger": score}


def as_decimal(score: int) -> Answer:
    return {"valueDecimal": float(score)}


def as_coding(score: int, *, system: str | None = LOINC, code: str | None = None) -> Answer:
    coding: dict[str, Any] = {"code": code or CODE_FOR[score]}
    if system is not None:
        coding["system"] = system
    return {"valueCoding": coding}


def as_bare_coding(score: int) -> Answer:
    return as_coding(score, system=None)


def as_alt_coding(score: int) -> Answer:
    """LA18938-3 ("More days than not", LHC-Forms GAD-7 item 2) for a 2."""
    return as_coding(score, code="LA18938-3" if score == 2 else None)


def weighted(
    score: int, url: str = ORDINAL, *, key: str = "valueDecimal", weight: Any = None, on_answer: bool = False
) -> Answer:
    answer = as_coding(score)
    extension = {"url": url, key: score if weight is None else weight}
    (answer if on_answer else answer["valueCoding"])["extension"] = [extension]
    return answer


def weight_only(score: int, url: str = ORDINAL) -> Answer:
    """A local answer code that only its weight scores."""
    return {
        "valueCoding": {
            "system": "http://clinic.example/answers",
            "code": f"opt-{score}",
            "extension": [{"url": url, "valueDecimal": score}],
        }
    }


def item(link_id: str, *answers: Answer, children: tuple[dict[str, Any], ...] = ()) -> dict[str, Any]:
    node: dict[str, Any] = {"linkId": link_id}
    if answers:
        node["answer"] = list(answers)
    if children:
        node["item"] = list(children)
    return node


def group(link_id: str, *children: dict[str, Any]) -> dict[str, Any]:
    return item(link_id, children=children)


def under_answer(link_id: str, *children: dict[str, Any]) -> dict[str, Any]:
    return {"linkId": link_id, "answer": [{"valueBoolean": True, "item": list(children)}]}


def qr(*items: dict[str, Any], status: str = "completed", questionnaire: str | None = None) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "QuestionnaireResponse",
        "status": status,
        "subject": {"reference": "Patient/p1"},
        "authored": "2026-01-05T10:00:00+00:00",
        "item": list(items),
    }
    if questionnaire is not None:
        resource["questionnaire"] = questionnaire
    return resource


def loinc_link(code: str, number: int) -> str:
    return code


def scored_items(
    instrument: InstrumentName,
    scores: list[int],
    encode: Encoder = as_coding,
    link: Callable[[str, int], str] = loinc_link,
) -> list[dict[str, Any]]:
    definition = INSTRUMENTS[instrument]
    return [
        item(link(it.loinc, it.number), encode(score))
        for it, score in zip(definition.items, scores, strict=True)
    ]


def score(resource: dict[str, Any]) -> ScoredResponse:
    result = score_questionnaire_response(resource)
    assert result is not None
    return result


def phq9(scores: list[int], encode: Encoder = as_coding, **kwargs: Any) -> dict[str, Any]:
    return qr(*scored_items("PHQ-9", scores, encode), **kwargs)


PHQ9_12 = [2, 2, 2, 2, 1, 1, 2, 0, 0]


def violation(call: Callable[[], object]) -> BusinessRuleViolation:
    with pytest.raises(BusinessRuleViolation) as info:
        call()
    return info.value


# --- fixtures from public IGs ----------------------------------------------------------------------


def test_us_core_fixture() -> None:
    resource = load_fixture("us-core-phq9-questionnaireresponse.json")
    result = score(resource)
    assert result.instrument == "PHQ-9"
    assert result.total == 12
    assert result.severity == "moderate"
    assert result.item9 == 0
    assert result.complete
    assert result.warnings == ()
    assert result.phq2 == 4
    assert "69722-7" not in result.item_scores and "44261-6" not in result.item_scores


def test_cms_access_fixture_scores_through_the_map() -> None:
    resource = load_fixture("cms-access-phq9-questionnaireresponse.json")
    result = score(resource)
    assert (result.instrument, result.total, result.severity, result.item9) == ("PHQ-9", 7, "mild", 0)
    assert result.item_scores == dict(zip(PHQ9.item_codes, [1, 1, 2, 1, 0, 1, 1, 0, 0], strict=True))
    assert result.warnings == ()


def test_mii_pro_phq9_fixture_scores_through_the_map() -> None:
    result = score(load_fixture("mii-pro-phq-9-response.json"))
    assert (result.instrument, result.total, result.severity, result.item9) == ("PHQ-9", 27, "severe", 3)
    assert result.warnings == ()  # its valueDecimal total 27 agrees


def test_mii_pro_gad7_fixture_leaves_the_promis_t_score_out() -> None:
    result = score(load_fixture("mii-pro-gad-7-response.json"))
    assert (result.instrument, result.total, result.severity) == ("GAD-7", 13, "moderate")
    assert list(result.item_scores.values()) == [2, 3, 2, 1, 2, 1, 2]
    assert result.warnings == ()


def test_mii_pro_observation_fixture_is_a_measurement() -> None:
    result = score_observation(load_fixture("mii-pro-phq-9-observation.json"))
    assert result is not None
    assert (result.instrument, result.score, result.effective, result.item9) == (
        "PHQ-9",
        27,
        "2023-10-01T12:00:00Z",
        None,
    )


def test_fixture_totals_are_recomputed_not_read() -> None:
    resource = load_fixture("us-core-phq9-questionnaireresponse.json")
    resource["item"][9]["answer"] = [{"valueDecimal": 13}]
    result = score(resource)
    assert result.total == 12
    assert result.warnings == (
        "total item 44261-6 says 13 but the items sum to 12; the recomputed 12 is used",
    )


# --- linkIds ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("link", [loinc_link, lambda code, n: "/" + code, lambda code, n: f" /{code} "])
def test_loinc_linkids_with_or_without_slash(link: Callable[[str, int], str]) -> None:
    result = score(qr(*scored_items("PHQ-9", PHQ9_12, link=link)))
    assert (result.total, result.warnings) == (12, ())


def test_nested_groups_and_answer_items() -> None:
    items = scored_items("PHQ-9", PHQ9_12)
    resource = qr(
        group("intro", group("page-1", *items[:3])),
        under_answer("screen", *items[3:6]),
        group("page-2", under_answer("deeper", group("inner", *items[6:]))),
    )
    result = score(resource)
    assert (result.total, result.item9, result.warnings) == (12, 0, ())


@pytest.mark.parametrize(
    ("questionnaire", "link"),
    [
        (ACCESS_PHQ9, lambda code, n: f"phq9-{n}"),
        (ACCESS_PHQ9 + "|0.9.8", lambda code, n: f"phq9-{n}"),
        (MII + "mii-qst-pro-phq-9", lambda code, n: f"phq-phq2{'abcdefghi'[n - 1]}"),
        (MII + "mii-qst-pro-phq-9|2026.4.0", lambda code, n: f"phq-phq9-q{n:02d}"),
        (MII + "mii-qst-pro-phq-9", lambda code, n: f"PHQ.{n}"),
        (None, lambda code, n: f"phq9-{n}"),
        (None, lambda code, n: f"PHQ.{n}"),
        (None, lambda code, n: f"PHQ-9.{n}"),
        ("http://unknown.example/Questionnaire/q", lambda code, n: f"PHQ.{n}"),
    ],
)
def test_own_linkids_through_maps_and_patterns(
    questionnaire: str | None, link: Callable[[str, int], str]
) -> None:
    resource = qr(*scored_items("PHQ-9", PHQ9_12, link=link), questionnaire=questionnaire)
    result = score(resource)
    assert (result.instrument, result.total, result.warnings) == ("PHQ-9", 12, ())


@pytest.mark.parametrize(
    ("questionnaire", "link", "total_link"),
    [
        (ACCESS_GAD7, lambda code, n: f"gad7-{n}", "total-score"),
        (MII + "mii-qst-pro-gad-7", lambda code, n: f"phq-phq5{'abcdefg'[n - 1]}", "phq-gad7-score-total"),
        (MII + "mii-qst-pro-gad-7", lambda code, n: f"gad7-q{n:02d}", "phq-gad7-score-total"),
        (None, lambda code, n: f"gad7-{n}", "total-score"),
        (None, loinc_link, "70274-6"),
    ],
)
def test_gad7_encodings(questionnaire: str | None, link: Callable[[str, int], str], total_link: str) -> None:
    items = scored_items("GAD-7", [3, 2, 2, 1, 0, 1, 3], as_alt_coding, link)
    resource = qr(*items, item(total_link, {"valueDecimal": 12}), questionnaire=questionnaire)
    result = score(resource)
    assert (result.instrument, result.total, result.severity, result.warnings) == (
        "GAD-7",
        12,
        "moderate",
        (),
    )
    assert result.item9 is None and result.phq2 is None


def test_mapped_total_mismatch_names_link_and_code() -> None:
    items = scored_items("PHQ-9", PHQ9_12, link=lambda code, n: f"phq9-{n}")
    result = score(qr(*items, item("total-score", {"valueInteger": 11}), questionnaire=ACCESS_PHQ9))
    assert result.warnings == (
        "total item total-score (44261-6) says 11 but the items sum to 12; the recomputed 12 is used",
    )


def test_operator_supplied_map() -> None:
    maps = {
        "http://clinic.example/Questionnaire/mood": linkid_map("PHQ-2", ["g1.q1", "g1.q2"], totals=["g1.t"])
    }
    resource = qr(
        group("g1", item("g1.q1", as_integer(2)), item("g1.q2", as_integer(1)), item("g1.t", as_integer(3))),
        questionnaire="http://clinic.example/Questionnaire/mood|3",
    )
    result = score_questionnaire_response(resource, maps)
    assert result is not None
    assert (result.instrument, result.total, result.phq2, result.severity, result.warnings) == (
        "PHQ-2",
        3,
        3,
        None,
        (),
    )
    assert score_questionnaire_response(resource) is None  # g1.q1 means nothing without the map


# --- answers ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (as_coding(0), 0),
        (as_coding(1), 1),
        (as_coding(2), 2),
        (as_coding(3), 3),
        (as_coding(2, code="LA18938-3"), 2),
        (as_bare_coding(3), 3),
        (as_coding(1, system="urn:oid:2.16.840.1.113883.6.1"), 1),
        (as_integer(0), 0),
        (as_integer(3), 3),
        (as_decimal(2), 2),
        ({"valueDecimal": Decimal("1.0")}, 1),
        (weight_only(2), 2),
        (weight_only(3, CO_VALUE), 3),
    ],
)
def test_every_answer_encoding(answer: Answer, expected: int) -> None:
    result = score(qr(item("44250-9", answer), item("44255-8", as_integer(0))))
    assert result.instrument == "PHQ-2"
    assert result.item_scores["44250-9"] == expected
    assert result.total == expected
    assert result.warnings == ()


@pytest.mark.parametrize("url", WEIGHT_URLS)
@pytest.mark.parametrize("key", ["valueDecimal", "valueInteger"])
@pytest.mark.parametrize("on_answer", [False, True])
def test_agreeing_weight_is_silent(url: str, key: str, on_answer: bool) -> None:
    result = score(phq9(PHQ9_12, lambda s: weighted(s, url, key=key, on_answer=on_answer)))
    assert (result.total, result.warnings) == (12, ())


@pytest.mark.parametrize("url", WEIGHT_URLS)
@pytest.mark.parametrize("key", ["valueDecimal", "valueInteger"])
def test_conflicting_weight_is_a_warning_and_the_code_wins(url: str, key: str) -> None:
    answers = [as_coding(s) for s in PHQ9_12]
    answers[2] = weighted(2, url, key=key, weight=3)
    resource = qr(*(item(it.loinc, a) for it, a in zip(PHQ9.items, answers, strict=True)))
    result = score(resource)
    assert result.total == 12
    name = url.rsplit("/", 1)[-1]
    assert result.warnings == (
        f"PHQ-9 item 3 (44259-0) answer LA6570-1 scores 2 but its {name} weight says 3; "
        "the LA code's 2 is used",
    )


def test_weight_only_answers_with_disagreeing_weights_warn() -> None:
    answer = weight_only(1)
    answer["valueCoding"]["extension"].append({"url": ITEM_WEIGHT, "valueInteger": 2})
    result = score(qr(item("44250-9", answer), item("44255-8", as_integer(0))))
    assert result.total == 1
    assert len(result.warnings) == 1 and "ordinalValue weight 1 but itemWeight weight 2" in result.warnings[0]


@pytest.mark.parametrize("bad", [4, -1, 27])
def test_out_of_range_integer_is_rejected_with_its_path(bad: int) -> None:
    scores = list(PHQ9_12)
    resource = phq9(scores, as_integer)
    resource["item"][3]["answer"] = [as_integer(bad)]
    error = violation(lambda: score_questionnaire_response(resource))
    assert error.issues[0].expression == ("QuestionnaireResponse.item[3].answer[0]",)
    assert "PHQ-9 item 4 (44254-1)" in error.issues[0].diagnostics
    assert error.issues[0].code == "business-rule"


def test_nested_error_path() -> None:
    resource = qr(
        group("g", item("44250-9", as_integer(1)), under_answer("x", item("44255-8", as_integer(9))))
    )
    error = violation(lambda: score_questionnaire_response(resource))
    assert error.issues[0].expression == (
        "QuestionnaireResponse.item[0].item[1].answer[0].item[0].answer[0]",
    )


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (as_coding(0, code="LA9999-9"), "LA9999-9 is not an answer of LOINC list LL358-3"),
        (as_coding(0, code="LA6573-5"), "not an answer of LOINC list LL358-3"),  # a difficulty answer
        (as_coding(0, system="http://snomed.info/sct"), "http://snomed.info/sct|LA6568-5"),
        ({"valueCoding": {"system": LOINC}}, "not an answer"),
        (weighted(1, weight=5), None),  # LA code known: the bad weight only warns
        (
            weight_only(1)
            | {"valueCoding": {"code": "x", "extension": [{"url": ORDINAL, "valueDecimal": 1.5}]}},
            "1.5",
        ),
        ({"valueDecimal": 1.5}, "outside 0-3"),
        ({"valueInteger": True}, "outside 0-3"),
        ({"valueString": "2"}, "valueString, which carries no score"),
        ({"item": []}, "without a value"),
    ],
)
def test_unscorable_answers(answer: Answer, message: str | None) -> None:
    resource = qr(item("44250-9", answer), item("44255-8", as_integer(0)))
    if message is None:
        result = score(resource)
        assert result.total == 1 and "weight says 5" in result.warnings[0]
        return
    error = violation(lambda: score_questionnaire_response(resource))
    assert message in error.issues[0].diagnostics
    assert error.issues[0].expression == ("QuestionnaireResponse.item[0].answer[0]",)


def test_two_answers_on_one_item_are_rejected() -> None:
    resource = qr(item("44250-9", as_integer(1), as_integer(2)), item("44255-8", as_integer(0)))
    error = violation(lambda: score_questionnaire_response(resource))
    assert error.issues[0].expression == ("QuestionnaireResponse.item[0].answer[1]",)


def test_an_item_answered_twice() -> None:
    same = qr(item("44250-9", as_integer(1)), item("44255-8", as_integer(0)), item("/44250-9", as_coding(1)))
    assert score(same).total == 1
    different = qr(
        item("44250-9", as_integer(1)), item("44255-8", as_integer(0)), item("/44250-9", as_coding(2))
    )
    error = violation(lambda: score_questionnaire_response(different))
    assert error.issues[0].expression == ("QuestionnaireResponse.item[2].answer[0]",)
    assert "answered twice" in error.issues[0].diagnostics


def test_difficulty_item_is_never_scored_or_checked() -> None:
    resource = phq9(PHQ9_12)
    resource["item"].append(item("69722-7", as_coding(0, code="LA6574-3")))
    resource["item"].append(item("/69722-7", {"valueString": "whatever"}))
    result = score(resource)
    assert (result.total, result.warnings) == (12, ())
    assert "69722-7" not in result.item_scores


# --- totals ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "encode",
    [
        lambda v: {"valueInteger": v},
        lambda v: {"valueDecimal": float(v)},
        lambda v: {"valueQuantity": {"value": v, "unit": "{score}"}},
    ],
)
@pytest.mark.parametrize("claimed", [12, 13, 0])
def test_total_items_are_cross_checked(encode: Callable[[int], Answer], claimed: int) -> None:
    result = score(qr(*scored_items("PHQ-9", PHQ9_12), item("/44261-6", encode(claimed))))
    assert result.total == 12
    if claimed == 12:
        assert result.warnings == ()
    else:
        assert result.warnings == (
            f"total item 44261-6 says {claimed} but the items sum to 12; the recomputed 12 is used",
        )


def test_unreadable_total_is_ignored_with_a_warning() -> None:
    result = score(qr(*scored_items("PHQ-9", PHQ9_12), item("44261-6", {"valueString": "twelve"})))
    assert result.total == 12
    assert result.warnings == ("total item 44261-6 carries no number; it is ignored",)


def test_phq2_total_inside_a_phq9() -> None:
    resource = qr(*scored_items("PHQ-9", PHQ9_12), item("55758-7", {"valueInteger": 5}))
    result = score(resource)
    assert (result.instrument, result.total, result.phq2) == ("PHQ-9", 12, 4)
    assert result.warnings == (
        "total item 55758-7 says 5 but items 1 and 2 sum to 4; the recomputed 4 is used",
    )


def test_a_total_item_without_answer_is_ignored() -> None:
    assert score(qr(*scored_items("PHQ-9", PHQ9_12), item("44261-6"))).warnings == ()


# --- completeness ----------------------------------------------------------------------------------


@pytest.mark.parametrize("status", ["in-progress", "stopped", "entered-in-error"])
def test_status_other_than_completed_gives_no_total(status: str) -> None:
    result = score(phq9([3, 3, 3, 3, 3, 3, 3, 3, 2], status=status))
    assert (result.complete, result.total, result.severity, result.phq2) == (False, None, None, None)
    assert result.item9 == 2
    assert sum(result.item_scores.values()) == 26
    assert result.warnings == (f"status is '{status}'; only a completed or amended response gets a total",)


def test_amended_counts() -> None:
    assert score(phq9(PHQ9_12, status="amended")).total == 12


def test_missing_item_gives_no_total_but_keeps_item_scores() -> None:
    resource = phq9(PHQ9_12)
    del resource["item"][8]  # item 9
    resource["item"][2].pop("answer")  # item 3 asked, not answered
    resource["item"].append(item("44261-6", {"valueInteger": 10}))
    result = score(resource)
    assert (result.complete, result.total, result.item9, result.severity) == (False, None, None, None)
    assert result.phq2 == 4
    assert len(result.item_scores) == 7
    assert result.warnings == (
        "PHQ-9 items 3 (44259-0), 9 (44260-8) are not answered; an incomplete response gets no total",
        "total item 44261-6 says 10 but the response is incomplete; no total is recorded",
    )


def test_single_missing_item_wording() -> None:
    resource = qr(*scored_items("GAD-7", [1] * 7)[:6])
    assert score(resource).warnings == (
        "GAD-7 item 7 (69736-7) is not answered; an incomplete response gets no total",
    )


# --- detection -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "resource",
    [
        qr(),
        qr(item("72166-2", as_coding(0))),  # tobacco smoking status, not an instrument
        qr(item("q1", as_integer(1)), item("g1.q1", as_integer(2))),
        qr(item("44261-6x", as_integer(1))),
        {"resourceType": "QuestionnaireResponse", "status": "completed"},
    ],
)
def test_unknown_instrument_is_none(resource: dict[str, Any]) -> None:
    assert score_questionnaire_response(resource) is None


def test_not_a_questionnaire_response() -> None:
    with pytest.raises(ValueError, match="expected a QuestionnaireResponse"):
        score_questionnaire_response({"resourceType": "Observation"})


def test_phq2_standalone() -> None:
    result = score(qr(*scored_items("PHQ-2", [3, 2]), item("55758-7", {"valueInteger": 5})))
    assert (result.instrument, result.total, result.phq2, result.severity, result.item9) == (
        "PHQ-2",
        5,
        5,
        None,
        None,
    )
    assert result.warnings == ()


@pytest.mark.parametrize(
    "canonical",
    [
        "http://loinc.org/q/44249-1",
        "http://loinc.org/q/44249-1|2.68",
        "Questionnaire/44249-1",
        "urn:x:phq44249-1",
    ],
)
def test_loinc_panel_canonical_is_a_hint(canonical: str) -> None:
    resource = qr(*scored_items("PHQ-2", [1, 1]), questionnaire=canonical, status="in-progress")
    result = score(resource)
    assert result.instrument == "PHQ-9"
    assert result.complete is False


def test_panel_hint_without_recognisable_items_is_an_incomplete_instrument() -> None:
    result = score(qr(item("q1", as_integer(1)), questionnaire="http://loinc.org/q/69737-5"))
    assert (result.instrument, result.complete, result.item_scores) == ("GAD-7", False, {})


def test_panel_hint_contradicted_by_items() -> None:
    resource = qr(*scored_items("GAD-7", [1] * 7), questionnaire="http://loinc.org/q/44249-1")
    result = score(resource)
    assert (result.instrument, result.total) == ("GAD-7", 7)
    assert result.warnings == (
        "the questionnaire http://loinc.org/q/44249-1 names the PHQ-9 panel 44249-1 "
        "but the items are those of the GAD-7; scored as the GAD-7",
    )


def test_combined_phq9_and_gad7_scores_the_phq9() -> None:
    resource = qr(*scored_items("PHQ-9", PHQ9_12), *scored_items("GAD-7", [3] * 7))
    result = score(resource)
    assert (result.instrument, result.total) == ("PHQ-9", 12)
    assert result.warnings == ("the response also carries GAD-7 items; only the PHQ-9 is scored",)


def test_partial_phq9_by_pattern_stays_phq9() -> None:
    resource = qr(item("phq9-1", as_integer(1)), item("phq9-2", as_integer(1)))
    result = score(resource)
    assert (result.instrument, result.complete, result.phq2) == ("PHQ-9", False, 2)


# --- hypothesis: any answers, any encoding ---------------------------------------------------------

ENCODERS: list[Encoder] = [
    as_integer,
    as_decimal,
    as_coding,
    as_bare_coding,
    as_alt_coding,
    *(
        lambda s, u=url, k=key: weighted(s, u, key=k)
        for url in WEIGHT_URLS
        for key in ("valueDecimal", "valueInteger")
    ),
    lambda s: weighted(s, ORDINAL, on_answer=True),
    weight_only,
]

LINK_STYLES: dict[InstrumentName, list[tuple[str | None, Callable[[str, int], str]]]] = {
    "PHQ-9": [
        (None, loinc_link),
        (None, lambda code, n: "/" + code),
        ("http://loinc.org/q/44249-1", loinc_link),
        (ACCESS_PHQ9, lambda code, n: f"phq9-{n}"),
        (MII + "mii-qst-pro-phq-9", lambda code, n: f"phq-phq2{'abcdefghi'[n - 1]}"),
        (None, lambda code, n: f"phq9-{n}"),
        (None, lambda code, n: f"PHQ.{n}"),
    ],
    "GAD-7": [
        (None, loinc_link),
        (None, lambda code, n: "/" + code),
        (ACCESS_GAD7, lambda code, n: f"gad7-{n}"),
        (MII + "mii-qst-pro-gad-7", lambda code, n: f"phq-phq5{'abcdefg'[n - 1]}"),
        (None, lambda code, n: f"gad7-{n}"),
    ],
    "PHQ-2": [(None, loinc_link), (None, lambda code, n: "/" + code)],
}


@st.composite
def responses(draw: st.DrawFn, instrument: InstrumentName) -> tuple[dict[str, Any], list[int]]:
    definition = INSTRUMENTS[instrument]
    n = len(definition.items)
    scores = draw(st.lists(st.integers(0, 3), min_size=n, max_size=n))
    encoders = draw(st.lists(st.sampled_from(ENCODERS), min_size=n, max_size=n))
    questionnaire, link = draw(st.sampled_from(LINK_STYLES[instrument]))
    placements = draw(st.lists(st.sampled_from(["top", "group", "answer"]), min_size=n, max_size=n))
    items: list[dict[str, Any]] = []
    for i, (it, value, encode, place) in enumerate(
        zip(definition.items, scores, encoders, placements, strict=True)
    ):
        node = item(link(it.loinc, it.number), encode(value))
        if place == "group":
            node = group(f"grp{i}", node)
        elif place == "answer":
            node = under_answer(f"ctx{i}", node)
        items.append(node)
    order = draw(st.permutations(range(n)))
    return qr(*(items[i] for i in order), questionnaire=questionnaire), scores


instruments = st.sampled_from(list(INSTRUMENTS))


@given(instruments.flatmap(lambda name: st.tuples(st.just(name), responses(name))))
def test_total_is_the_sum_of_items_in_any_encoding(
    case: tuple[InstrumentName, tuple[dict[str, Any], list[int]]],
) -> None:
    instrument, (resource, scores) = case
    definition = INSTRUMENTS[instrument]
    result = score(resource)
    assert result.instrument == instrument
    assert result.complete
    assert result.total == sum(scores) == sum(result.item_scores.values())
    assert result.total is not None and 0 <= result.total <= definition.max_score
    assert result.item_scores == dict(zip(definition.item_codes, scores, strict=True))
    assert result.severity == severity(instrument, result.total)
    assert result.warnings == ()
    assert result.phq2 == (None if instrument == "GAD-7" else scores[0] + scores[1])
    assert result.item9 == (scores[8] if instrument == "PHQ-9" else None)


@given(
    instruments.flatmap(lambda name: st.tuples(st.just(name), responses(name))),
    st.integers(-3, 30),
    st.sampled_from(["valueInteger", "valueDecimal", "valueQuantity"]),
)
def test_claimed_total_only_ever_warns(
    case: tuple[InstrumentName, tuple[dict[str, Any], list[int]]], claimed: int, key: str
) -> None:
    instrument, (resource, scores) = case
    value: Any = {"value": claimed} if key == "valueQuantity" else claimed
    resource["item"].append(item(INSTRUMENTS[instrument].total, {key: value}))
    result = score(resource)
    assert result.total == sum(scores)
    assert (result.warnings == ()) == (claimed == sum(scores))


@given(
    instruments.flatmap(lambda name: st.tuples(st.just(name), responses(name))),
    st.data(),
)
def test_dropping_items_leaves_no_total(
    case: tuple[InstrumentName, tuple[dict[str, Any], list[int]]], data: st.DataObject
) -> None:
    instrument, (resource, _) = case
    keep = data.draw(st.lists(st.booleans(), min_size=len(resource["item"]), max_size=len(resource["item"])))
    resource["item"] = [node for node, kept in zip(resource["item"], keep, strict=True) if kept]
    result = score_questionnaire_response(resource)
    if result is None:  # nothing left to recognise the instrument by
        assert not any(keep)
        return
    if result.instrument != instrument:
        # PHQ-9 items 1 and 2 alone, by LOINC linkId and without a canonical, are a PHQ-2.
        assert (instrument, result.instrument) == ("PHQ-9", "PHQ-2")
        assert set(result.item_scores) <= set(PHQ2.item_codes)
        assert result.complete == (len(result.item_scores) == 2)
        return
    assert result.complete == all(keep)
    assert (result.total is None) == (not all(keep))
    assert len(result.item_scores) == sum(keep)


@given(st.integers(0, 8), st.one_of(st.integers(4, 1000), st.integers(-1000, -1)))
def test_any_out_of_range_integer_is_rejected(position: int, bad: int) -> None:
    resource = phq9(PHQ9_12, as_integer)
    resource["item"][position]["answer"][0]["valueInteger"] = bad
    error = violation(lambda: score_questionnaire_response(resource))
    assert error.issues[0].expression == (f"QuestionnaireResponse.item[{position}].answer[0]",)


# --- Observations ----------------------------------------------------------------------------------


def observation(
    code: str = "44261-6", *, status: str = "final", system: str | None = LOINC, **value: Any
) -> dict[str, Any]:
    coding: dict[str, Any] = {"code": code}
    if system is not None:
        coding["system"] = system
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "status": status,
        "code": {"coding": [{"system": "http://example.org/local", "code": "x"}, coding]},
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": "2026-01-05",
    }
    resource.update(value)
    return resource


@pytest.mark.parametrize(
    "value",
    [
        {
            "valueQuantity": {
                "value": 14,
                "unit": "{score}",
                "system": "http://unitsofmeasure.org",
                "code": "{score}",
            }
        },
        {"valueQuantity": {"value": 14.0}},
        {"valueInteger": 14},
        {"valueString": " 14\n"},
        {"valueDecimal": 14.0},
        {"valueDecimal": Decimal("14")},
    ],
)
def test_observation_value_forms(value: dict[str, Any]) -> None:
    result = score_observation(observation(**value))
    assert result == ObservationScore("PHQ-9", 14, "moderate", None, "2026-01-05", None)


@pytest.mark.parametrize(
    ("code", "value", "instrument", "sev"),
    [("70274-6", 21, "GAD-7", "severe"), ("55758-7", 6, "PHQ-2", None), ("44261-6", 0, "PHQ-9", "minimal")],
)
def test_observation_instruments(code: str, value: int, instrument: str, sev: str | None) -> None:
    result = score_observation(observation(code, valueInteger=value))
    assert result is not None
    assert (result.instrument, result.score, result.severity) == (instrument, value, sev)


def test_observation_without_system_is_accepted() -> None:
    result = score_observation(observation(system=None, valueInteger=3))
    assert result is not None and (result.instrument, result.score) == ("PHQ-9", 3)


@pytest.mark.parametrize(
    "resource",
    [
        observation("72166-2", valueInteger=3),
        observation("44261-6", system="http://snomed.info/sct", valueInteger=3),
        observation("44249-1", valueInteger=3),  # the panel, not a total
        observation("55757-9", valueInteger=3),  # the PHQ-2 panel, wrongly used as a total in the wild
        {"resourceType": "Observation", "status": "final", "valueInteger": 3},
    ],
)
def test_observation_not_a_total_is_none(resource: dict[str, Any]) -> None:
    assert score_observation(resource) is None


@pytest.mark.parametrize("status", ["registered", "preliminary", "cancelled", "entered-in-error", "unknown"])
def test_observation_status_not_counted(status: str) -> None:
    assert score_observation(observation(status=status, valueInteger=3)) is None
    assert score_observation(observation(status=status)) is None  # not validated either


@pytest.mark.parametrize("status", ["final", "amended", "corrected"])
def test_observation_status_counted(status: str) -> None:
    result = score_observation(observation(status=status, valueInteger=3))
    assert result is not None and (result.instrument, result.score, result.severity) == (
        "PHQ-9",
        3,
        "minimal",
    )


@pytest.mark.parametrize(
    ("code", "value", "message"),
    [
        ("44261-6", {}, "has no value"),
        ("44261-6", {"valueInteger": 28}, "outside 0-27"),
        ("44261-6", {"valueInteger": -1}, "outside 0-27"),
        ("70274-6", {"valueInteger": 22}, "outside 0-21"),
        ("55758-7", {"valueQuantity": {"value": 7}}, "outside 0-6"),
        ("44261-6", {"valueDecimal": 12.5}, "not a whole number"),
        ("44261-6", {"valueString": "12.0"}, "not a whole number"),
        ("44261-6", {"valueString": "-3"}, "not a whole number"),
        ("44261-6", {"valueString": "twelve"}, "not a whole number"),
        ("44261-6", {"valueQuantity": {"unit": "{score}"}}, "not a whole number"),
        ("44261-6", {"valueQuantity": {"value": 20, "comparator": ">="}}, "not an exact score"),
        ("44261-6", {"valueInteger": True}, "not a whole number"),
        ("44261-6", {"valueBoolean": True}, "must be a number"),
        ("44261-6", {"valueCodeableConcept": {"text": "12"}}, "must be a number"),
    ],
)
def test_observation_bad_values(code: str, value: dict[str, Any], message: str) -> None:
    error = violation(lambda: score_observation(observation(code, **value)))
    assert message in error.issues[0].diagnostics
    assert error.issues[0].expression == ("Observation.value[x]",)


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        ("QuestionnaireResponse/abc-1", "QuestionnaireResponse/abc-1"),
        ("http://host/fhir/QuestionnaireResponse/abc", "QuestionnaireResponse/abc"),
        ("QuestionnaireResponse/abc/_history/2", "QuestionnaireResponse/abc"),
        ("Observation/abc", None),
        ("urn:uuid:1234", None),
    ],
)
def test_observation_derived_from(reference: str, expected: str | None) -> None:
    resource = observation(
        valueInteger=3, derivedFrom=[{"reference": "DocumentReference/d"}, {"reference": reference}]
    )
    result = score_observation(resource)
    assert result is not None and result.derived_from == expected


@pytest.mark.parametrize(
    ("effective", "expected"),
    [
        ({"effectiveInstant": "2026-01-05T10:00:00Z"}, "2026-01-05T10:00:00Z"),
        ({"effectivePeriod": {"start": "2026-01-04"}}, "2026-01-04"),
        ({"issued": "2026-01-06T00:00:00Z"}, "2026-01-06T00:00:00Z"),
        ({}, None),
    ],
)
def test_observation_effective(effective: dict[str, Any], expected: str | None) -> None:
    resource = observation(valueInteger=3)
    del resource["effectiveDateTime"]
    resource.update(effective)
    result = score_observation(resource)
    assert result is not None and result.effective == expected


@pytest.mark.parametrize(
    ("component_value", "expected"),
    [
        ({"valueInteger": 2}, 2),
        ({"valueQuantity": {"value": 1}}, 1),
        ({"valueCodeableConcept": {"coding": [{"system": LOINC, "code": "LA6571-9"}]}}, 3),
        ({"dataAbsentReason": {"text": "asked but declined"}}, None),
    ],
)
def test_observation_item9_component(component_value: dict[str, Any], expected: int | None) -> None:
    component = {"code": {"coding": [{"system": LOINC, "code": "44260-8"}]}, **component_value}
    result = score_observation(
        observation(valueInteger=3, component=[{"code": {"text": "other"}}, component])
    )
    assert result is not None and result.item9 == expected


def test_observation_bad_item9_component() -> None:
    component = {"code": {"coding": [{"system": LOINC, "code": "44260-8"}]}, "valueInteger": 7}
    error = violation(lambda: score_observation(observation(valueInteger=3, component=[component])))
    assert error.issues[0].expression == ("Observation.component[0].value[x]",)


def test_item9_component_ignored_outside_phq9() -> None:
    component = {"code": {"coding": [{"system": LOINC, "code": "44260-8"}]}, "valueInteger": 7}
    result = score_observation(observation("70274-6", valueInteger=3, component=[component]))
    assert result is not None and result.item9 is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"valueCodeableConcept": {"coding": [{"system": LOINC, "code": "LA6568-5"}]}}, 0),
        ({"valueCodeableConcept": {"coding": [{"code": "LA6569-3"}]}}, 1),  # system absent
        ({"valueCodeableConcept": {"coding": [{"system": "urn:x", "code": "a"}, {"code": "LA6571-9"}]}}, 3),
        ({"valueInteger": 0}, 0),
        ({"valueInteger": 3}, 3),  # the highest answer
        ({"valueDecimal": 2.0}, 2),
        ({"valueQuantity": {"value": 1}}, 1),
        ({"valueString": " 2 "}, 2),
        ({"dataAbsentReason": {"text": "asked but declined"}}, None),  # not answered
    ],
)
def test_item9_observation_values(value: dict[str, Any], expected: int | None) -> None:
    assert item9_observation(observation("44260-8", **value)) == expected


@pytest.mark.parametrize(
    "value",
    [
        {"valueInteger": 4},  # one above the highest answer
        {"valueInteger": -1},
        {"valueDecimal": 1.5},
        {"valueQuantity": {"value": 2, "comparator": ">="}},
        {"valueString": "several days"},
        {"valueCodeableConcept": {"coding": [{"system": LOINC, "code": "LA6572-7"}]}},  # a difficulty answer
        {"valueBoolean": True},
    ],
)
def test_item9_observation_refuses_what_is_not_a_score(value: dict[str, Any]) -> None:
    error = violation(lambda: item9_observation(observation("44260-8", **value)))
    assert error.issues[0].expression == ("Observation.value[x]",)
    assert "PHQ-9 item 9 (44260-8)" in error.issues[0].diagnostics


@pytest.mark.parametrize(
    ("resource", "counted"),
    [
        (observation("44260-8", valueInteger=2), True),
        (observation("44260-8", status="amended", valueInteger=2), True),
        (observation("44260-8", status="corrected", valueInteger=2), True),
        (observation("44260-8", status="preliminary", valueInteger=2), False),
        (observation("44260-8", status="entered-in-error", valueInteger=2), False),
        (observation("44260-8", system=None, valueInteger=2), True),
        (observation("44260-8", system="http://example.org/local", valueInteger=2), False),
        (observation("44261-6", valueInteger=2), False),  # a total, not the item
        (observation("44255-8", valueInteger=2), False),  # another item
    ],
)
def test_item9_observation_needs_the_code_and_a_counted_status(
    resource: dict[str, Any], counted: bool
) -> None:
    assert (item9_observation(resource) == 2) is counted


# --- the derived Observation -----------------------------------------------------------------------


def test_derived_observation_for_the_us_core_fixture_validates() -> None:
    response = load_fixture("us-core-phq9-questionnaireresponse.json")
    scored = score(response)
    derived = derived_observation("qr-1", response, scored)
    Observation.model_validate(derived)  # R4B classes accept R4 JSON (api.md)
    assert "id" not in derived
    assert derived["status"] == "final"
    assert derived["category"][0]["coding"][0] == {
        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
        "code": "survey",
        "display": "Survey",
    }
    assert derived["code"]["coding"][0]["system"] == LOINC
    assert derived["code"]["coding"][0]["code"] == "44261-6"
    assert derived["code"]["coding"][0]["display"]
    assert derived["subject"] == {"reference": "Patient/example"}
    assert derived["effectiveDateTime"] == "2022-11-29T20:50:32.718Z"
    assert derived["valueQuantity"] == {
        "value": 12,
        "unit": "{score}",
        "system": "http://unitsofmeasure.org",
        "code": "{score}",
    }
    assert derived["derivedFrom"] == [{"reference": "QuestionnaireResponse/qr-1"}]
    assert derived["interpretation"][0]["coding"][0]["code"] == "moderate"
    assert derived["interpretation"][0]["coding"][0]["display"] == "moderate"
    assert derived["component"] == [
        {
            "code": {"coding": [{"system": LOINC, "code": "44260-8"}], "text": PHQ9.items[8].text},
            "valueInteger": 0,
        }
    ]


def test_derived_observation_round_trips_as_one_measurement() -> None:
    response = phq9([3, 3, 3, 3, 3, 2, 2, 0, 1])
    response["encounter"] = {"reference": "Encounter/e1"}
    scored = score(response)
    derived = derived_observation("r9", response, scored)
    Observation.model_validate(derived)
    assert derived["interpretation"][0]["coding"][0]["code"] == "severe"
    assert derived["encounter"] == {"reference": "Encounter/e1"}
    back = score_observation(derived)
    assert back == ObservationScore(
        "PHQ-9", 20, "severe", "QuestionnaireResponse/r9", response["authored"], 1
    )


def test_derived_severity_code_has_no_blanks() -> None:
    derived = derived_observation(
        "r", phq9([2, 2, 2, 2, 2, 2, 2, 1, 0]), score(phq9([2, 2, 2, 2, 2, 2, 2, 1, 0]))
    )
    assert derived["interpretation"][0]["coding"][0]["code"] == "moderately-severe"
    assert derived["interpretation"][0]["coding"][0]["display"] == "moderately severe"


@pytest.mark.parametrize(
    ("resource", "code"),
    [
        (qr(*scored_items("GAD-7", [1, 1, 1, 1, 1, 1, 1])), GAD7.total),
        (qr(*scored_items("PHQ-2", [1, 1])), PHQ2.total),
    ],
)
def test_derived_observation_other_instruments(resource: dict[str, Any], code: str) -> None:
    scored = score(resource)
    derived = derived_observation("x", resource, scored)
    Observation.model_validate(derived)
    assert derived["code"]["coding"][0]["code"] == code
    assert "component" not in derived
    assert ("interpretation" in derived) == (scored.severity is not None)


def test_derived_observation_without_authored_or_item9() -> None:
    response = phq9(PHQ9_12)
    del response["authored"]
    scored = ScoredResponse("PHQ-9", 12, True, {}, None, "moderate", (), 4)
    derived = derived_observation("x", response, scored)
    Observation.model_validate(derived)
    assert "effectiveDateTime" not in derived and "component" not in derived


def test_derived_observation_needs_a_total() -> None:
    response = phq9(PHQ9_12, status="in-progress")
    with pytest.raises(ValueError, match="incomplete"):
        derived_observation("x", response, score(response))
