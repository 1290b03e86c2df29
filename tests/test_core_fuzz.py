"""Property tests of the pure core against FHIR-ish junk: it answers, or raises a ``DomainError``.

Hypothesis builds bodies that look like the resources the service ingests (QuestionnaireResponse,
Observation, Encounter, Consent, EpisodeOfCare) with the right shape most of the time and random JSON
(strings, numbers, nulls, lists, nested objects) in random places: valid and broken codings, linkIds
of every known spelling, dates in odd formats. The scoring, fact extraction and validation functions
must return normally or raise an ``app.errors.DomainError`` subclass (a 400/422 at the edge); anything
else would be a 500. The billing core gets random ``TimeEntry`` lists and must never raise (its only
documented ``ValueError``, mixed patients, is never provoked here).

The same strategies steer the schemathesis run (``tests/test_fuzz.py``) towards bodies that get past
validation. ``COCM_FUZZ_EXAMPLES`` raises the number of examples per test (default 200).
"""

from __future__ import annotations

import os
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.billing.codes import ACTIVITY_CODES, ACTIVITY_SYSTEM, CPT, HCPCS, HCPCS_HTTP
from app.billing.engine import bill_month
from app.billing.episodes import find_episodes
from app.billing.facts import (
    consent_fact,
    episode_of_care_fact,
    time_entry_from_encounter,
    visit_from_encounter,
)
from app.billing.rules import EpisodeRules
from app.domain import BillingConfig, ConsentFact, EpisodeOfCareFact, Month, TimeEntry, VisitFact
from app.errors import DomainError
from app.measures.instruments import (
    ANSWERS,
    FALLBACK_MAPS,
    INSTRUMENTS,
    LOINC_OID,
    LOINC_SYSTEM,
    QUESTIONNAIRE_MAPS,
    WEIGHT_EXTENSION_URLS,
)
from app.measures.scoring import score_observation, score_questionnaire_response
from app.resources.validation import parse_json, validate_resource

TZ = "America/Chicago"
EXAMPLES = int(os.environ.get("COCM_FUZZ_EXAMPLES", "0") or 0) or 200

FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)

# --- building blocks ---------------------------------------------------------------------------------

_INT64 = 2**63 - 1
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-_INT64 - 1, max_value=_INT64),
    st.integers(min_value=-5, max_value=5),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
)
# Any JSON value orjson can produce (no NaN/Infinity, integers within 64 bits).
junk = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


def named(name: str, strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``strategy`` under a short repr (nested one_of reprs grow to megabytes and slow Hypothesis)."""

    @st.composite
    def draw_it(draw: st.DrawFn) -> Any:
        return draw(strategy)

    draw_it.__name__ = draw_it.__qualname__ = name
    return draw_it()


def sometimes_junk(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly ``strategy``, now and then any JSON value in its place."""
    return named("sometimes_junk", st.one_of(strategy, strategy, strategy, junk))


def optional_fields(
    required: dict[str, st.SearchStrategy[Any]], optional: dict[str, st.SearchStrategy[Any]]
) -> st.SearchStrategy[dict[str, Any]]:
    """A dict with the required keys, a random subset of the optional ones and sometimes an extra
    unknown key."""
    extras = st.one_of(
        st.just({}), st.just({}), st.dictionaries(st.text(min_size=1, max_size=8), junk, max_size=2)
    )
    return named(
        "fields",
        st.tuples(st.fixed_dictionaries(required, optional=optional), extras).map(
            lambda pair: pair[1] | pair[0]
        ),
    )


LOINC_CODES = sorted(
    {
        code
        for instrument in INSTRUMENTS.values()
        for code in (*instrument.item_codes, instrument.total, instrument.panel)
    }
    | {"69722-7", "44260-8"}
)
LINK_IDS = sorted(
    set(LOINC_CODES)
    | {f"/{code}" for code in LOINC_CODES}
    | {link for m in FALLBACK_MAPS for link in (*m.items, *m.unscored, *m.totals)}
    | {link for m in QUESTIONNAIRE_MAPS.values() for link in (*m.items, *m.unscored, *m.totals)}
)
QUESTIONNAIRES = [
    *QUESTIONNAIRE_MAPS,
    *(f"{key}|1.0" for key in QUESTIONNAIRE_MAPS),
    "http://loinc.org/q/44249-1",
    "http://loinc.org/q/69737-5",
    "http://loinc.org/q/55757-9",
    "http://hl7.org/fhir/us/core/Questionnaire/phq-9-example",
    "http://example.org/Questionnaire/69737-5",
    "Questionnaire/44249-1|2",
    "",
]
SYSTEMS = [LOINC_SYSTEM, LOINC_OID, ACTIVITY_SYSTEM, CPT, HCPCS, HCPCS_HTTP, "http://snomed.info/sct", ""]
CODES = [
    *ANSWERS,
    *LOINC_CODES,
    *ACTIVITY_CODES,
    "cocm",
    "general-bhi",
    "99213",
    "99492",
    "G0438",
    "G0556",
    "90834",
    "99211",
    "AMB",
    "IMP",
    "LA0000-0",
    "",
]

codings = optional_fields(
    {},
    {
        "system": sometimes_junk(st.sampled_from(SYSTEMS)),
        "code": sometimes_junk(st.sampled_from(CODES) | st.text(max_size=8)),
        "display": sometimes_junk(st.text(max_size=10)),
        "userSelected": sometimes_junk(st.booleans()),
    },
)
weight_extension = optional_fields(
    {"url": sometimes_junk(st.sampled_from(sorted(WEIGHT_EXTENSION_URLS)))},
    {
        "valueDecimal": sometimes_junk(
            st.sampled_from([0, 1, 2, 3, 1.5, -1, 4, 2.0]) | st.floats(allow_nan=False, allow_infinity=False)
        ),
        "valueInteger": sometimes_junk(st.integers(min_value=-3, max_value=6)),
    },
)
codings_with_weights = st.one_of(
    codings,
    st.tuples(codings, st.lists(weight_extension, max_size=2)).map(
        lambda pair: pair[0] | {"extension": pair[1]}
    ),
)
codeable_concepts = optional_fields(
    {}, {"coding": sometimes_junk(st.lists(sometimes_junk(codings), max_size=3)), "text": st.text(max_size=8)}
)


@st.composite
def dates(draw: st.DrawFn) -> Any:
    """FHIR date/dateTime strings, valid and broken, and now and then not a string at all."""
    moment = draw(
        st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59, 999999))
    )
    offset = draw(
        st.sampled_from(["Z", "+00:00", "-05:00", "+14:00", "-12:00", "+05:30", "", "-23:59", "+24:00"])
    )
    shape = draw(st.integers(min_value=0, max_value=9))
    if shape == 0:
        return moment.strftime("%Y")
    if shape == 1:
        return moment.strftime("%Y-%m")
    if shape == 2:
        return moment.date().isoformat()
    if shape == 3:
        return moment.isoformat(timespec="seconds") + offset
    if shape == 4:
        return moment.isoformat(timespec="microseconds") + offset
    if shape == 5:
        return draw(
            st.sampled_from(
                [
                    "2026-01-05T10:00:00Z",
                    "2026-03-08T02:30:00",  # in the America/Chicago spring-forward gap
                    "2026-11-01T01:30:00",  # in the fall-back fold
                    "2026-02-30",
                    "2026-13-01",
                    "2026-00",
                    "0000-01-01",
                    "0001-01-01T00:00:00+14:00",
                    "9999-12-31T23:59:59-12:00",
                    "9999-12-31",
                    "0001-01-01",
                    "0001-01-01T00:00:00Z",
                    "9999-12-31T23:59:59Z",
                    "20260105",
                    "2026-01-05T25:00:00Z",
                    "2026-01-05T10:00",
                    "2026-01-05T10",
                    "2026-01-05T10:00:00.123456789Z",
                    "2026-01-05 10:00:00Z",
                    " 2026-01-05",
                    "2026-01-05\n",
                    "T",
                    "2026-W01-1",
                    "２０２６-01-05",
                    "2026-1-5",
                    "-2026-01-05",
                    "",
                ]
            )
        )
    if shape == 6:
        return draw(st.text(max_size=20))
    if shape == 7:  # the ends of the FHIR range, where converting to UTC or to a month overflows
        return draw(
            st.sampled_from(
                [
                    "0001-01-01T00:00:00+14:00",
                    "9999-12-31T23:59:59-12:00",
                    "9999-12-31T20:00:00-05:00",
                    "9999-12-31",
                ]
            )
        )
    return draw(junk)


def references(patient_ids: list[str] | None = None) -> st.SearchStrategy[Any]:
    known = [f"Patient/{pid}" for pid in patient_ids or []] or ["Patient/example"]
    return sometimes_junk(
        optional_fields(
            {
                "reference": sometimes_junk(
                    st.sampled_from(
                        [
                            *known,
                            *(f"{ref}/_history/1" for ref in known),
                            "Patient/",
                            "Patient/does-not-exist",
                            "Group/1",
                            "urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a",
                            "#contained",
                            "http://example.org/fhir/Patient/1",
                            "Patient/" + "x" * 65,
                        ]
                    )
                )
            },
            {"display": st.text(max_size=8)},
        )
    )


quantities = optional_fields(
    {},
    {
        "value": sometimes_junk(
            st.integers(min_value=-5, max_value=10**6)
            | st.floats(allow_nan=False, allow_infinity=False)
            | st.sampled_from([0, 20, 20.5, 1e300, -0.0, 1e-300])
        ),
        "unit": sometimes_junk(st.sampled_from(["min", "minutes", " Hours ", "h", "s", "{score}", ""])),
        "code": sometimes_junk(st.sampled_from(["min", "h", "s", "{score}", ""])),
        "system": sometimes_junk(st.just("http://unitsofmeasure.org")),
        "comparator": st.sampled_from(["<", ">=", None]),
    },
)
periods = optional_fields({}, {"start": dates(), "end": dates()})


def _answers() -> st.SearchStrategy[dict[str, Any]]:
    value = st.one_of(
        st.fixed_dictionaries({"valueCoding": sometimes_junk(codings_with_weights)}),
        st.fixed_dictionaries({"valueCoding": sometimes_junk(codings_with_weights)}),
        st.fixed_dictionaries(
            {
                "valueInteger": sometimes_junk(
                    st.integers(min_value=-1, max_value=4)
                    | st.integers(min_value=-_INT64 - 1, max_value=_INT64)
                )
            }
        ),
        st.fixed_dictionaries(
            {
                "valueDecimal": sometimes_junk(
                    st.sampled_from([0, 1.0, 2, 3.0, 2.5, -0.0, 1e308])
                    | st.floats(allow_nan=False, allow_infinity=False)
                )
            }
        ),
        st.fixed_dictionaries({"valueString": st.text(max_size=5)}),
        st.fixed_dictionaries({"valueBoolean": st.booleans()}),
    )
    return st.tuples(value, st.lists(weight_extension, max_size=1)).map(
        lambda pair: pair[0] | ({"extension": pair[1]} if pair[1] else {})
    )


def _items(children: st.SearchStrategy[Any] | None) -> st.SearchStrategy[dict[str, Any]]:
    answer_forms = [_answers(), _answers()]
    optional: dict[str, st.SearchStrategy[Any]] = {"text": st.text(max_size=6)}
    if children is not None:
        answer_forms.append(
            st.tuples(_answers(), st.lists(children, max_size=2)).map(
                lambda pair: pair[0] | {"item": pair[1]}
            )
        )
        optional["item"] = st.lists(children, max_size=2)
    optional["answer"] = sometimes_junk(st.lists(st.one_of(*answer_forms), max_size=2))
    return optional_fields(
        {"linkId": sometimes_junk(st.sampled_from(LINK_IDS) | st.text(max_size=6))}, optional
    )


items = st.recursive(_items(None), _items, max_leaves=12)


def questionnaire_responses(patient_ids: list[str] | None = None) -> st.SearchStrategy[dict[str, Any]]:
    return optional_fields(
        {"resourceType": st.just("QuestionnaireResponse")},
        {
            "status": sometimes_junk(
                st.sampled_from(["completed", "amended", "in-progress", "stopped", "entered-in-error"])
            ),
            "questionnaire": sometimes_junk(st.sampled_from(QUESTIONNAIRES)),
            "subject": references(patient_ids),
            "authored": dates(),
            "item": sometimes_junk(st.lists(sometimes_junk(items), max_size=11)),
        },
    )


def observations(patient_ids: list[str] | None = None) -> st.SearchStrategy[dict[str, Any]]:
    total_codes = [i.total for i in INSTRUMENTS.values()]
    return optional_fields(
        {"resourceType": st.just("Observation")},
        {
            "status": sometimes_junk(
                st.sampled_from(["final", "amended", "corrected", "preliminary", "entered-in-error"])
            ),
            "code": sometimes_junk(
                optional_fields(
                    {
                        "coding": st.lists(
                            optional_fields(
                                {},
                                {
                                    "system": sometimes_junk(st.sampled_from([LOINC_SYSTEM, LOINC_OID, ""])),
                                    "code": sometimes_junk(st.sampled_from(total_codes)),
                                },
                            ),
                            max_size=2,
                        )
                    },
                    {"text": st.text(max_size=5)},
                )
            ),
            "subject": references(patient_ids),
            "effectiveDateTime": dates(),
            "effectivePeriod": periods,
            "issued": dates(),
            "valueQuantity": sometimes_junk(quantities),
            "valueInteger": sometimes_junk(st.integers(min_value=-2, max_value=30)),
            "valueString": sometimes_junk(
                st.sampled_from(["12", " 7 ", "٣", "1.0", "", "-1", "99999999999999"])
            ),
            "valueDecimal": sometimes_junk(st.sampled_from([12, 12.0, 12.5, 1e20, -0.0])),
            "derivedFrom": sometimes_junk(
                st.lists(
                    optional_fields(
                        {},
                        {
                            "reference": sometimes_junk(
                                st.sampled_from(
                                    [
                                        "QuestionnaireResponse/abc",
                                        "QuestionnaireResponse/abc/_history/2",
                                        "http://x/QuestionnaireResponse/a.b",
                                        "QuestionnaireResponse/",
                                    ]
                                )
                            )
                        },
                    ),
                    max_size=2,
                )
            ),
            "component": sometimes_junk(
                st.lists(
                    optional_fields(
                        {
                            "code": sometimes_junk(
                                st.just({"coding": [{"system": LOINC_SYSTEM, "code": "44260-8"}]})
                            )
                        },
                        {
                            "valueInteger": sometimes_junk(st.integers(min_value=-1, max_value=4)),
                            "valueCodeableConcept": codeable_concepts,
                            "valueQuantity": quantities,
                        },
                    ),
                    max_size=2,
                )
            ),
        },
    )


def _typed(codes: list[str], systems: list[str]) -> st.SearchStrategy[Any]:
    return sometimes_junk(
        st.lists(
            sometimes_junk(
                st.fixed_dictionaries(
                    {
                        "coding": st.lists(
                            optional_fields(
                                {},
                                {
                                    "system": sometimes_junk(st.sampled_from(systems)),
                                    "code": sometimes_junk(st.sampled_from(codes)),
                                },
                            ),
                            max_size=2,
                        )
                    }
                )
            ),
            max_size=3,
        )
    )


def encounters(patient_ids: list[str] | None = None) -> st.SearchStrategy[dict[str, Any]]:
    codes = [*ACTIVITY_CODES, "99213", "G0438", "G0556", "90834", "99211", "unknown-activity"]
    return optional_fields(
        {"resourceType": st.just("Encounter")},
        {
            "status": sometimes_junk(st.sampled_from(["finished", "in-progress", "planned", "cancelled"])),
            "class": sometimes_junk(
                st.fixed_dictionaries(
                    {
                        "system": st.just("http://terminology.hl7.org/CodeSystem/v3-ActCode"),
                        "code": sometimes_junk(st.sampled_from(["AMB", "IMP", "VR", "OBSENC"])),
                    }
                )
            ),
            "type": _typed(codes, [ACTIVITY_SYSTEM, CPT, HCPCS, HCPCS_HTTP, ""]),
            "serviceType": sometimes_junk(
                st.fixed_dictionaries({"coding": st.lists(sometimes_junk(codings), max_size=2)})
            ),
            "subject": references(patient_ids),
            "period": sometimes_junk(periods),
            "length": sometimes_junk(quantities),
        },
    )


def consents(patient_ids: list[str] | None = None) -> st.SearchStrategy[dict[str, Any]]:
    return optional_fields(
        {"resourceType": st.just("Consent")},
        {
            "status": sometimes_junk(st.sampled_from(["active", "inactive", "proposed", "rejected"])),
            "scope": codeable_concepts,
            "category": st.lists(codeable_concepts, max_size=2),
            "patient": references(patient_ids),
            "dateTime": dates(),
        },
    )


def episodes_of_care(patient_ids: list[str] | None = None) -> st.SearchStrategy[dict[str, Any]]:
    return optional_fields(
        {"resourceType": st.just("EpisodeOfCare")},
        {
            "status": sometimes_junk(
                st.sampled_from(["active", "finished", "cancelled", "entered-in-error", "waitlist", "onhold"])
            ),
            "type": _typed(["cocm", "general-bhi", "other"], [ACTIVITY_SYSTEM, ""]),
            "patient": references(patient_ids),
            "period": sometimes_junk(periods),
        },
    )


def patients() -> st.SearchStrategy[dict[str, Any]]:
    return optional_fields(
        {"resourceType": st.just("Patient")},
        {
            "identifier": sometimes_junk(
                st.lists(
                    st.fixed_dictionaries(
                        {"system": st.just("urn:mrn"), "value": st.text(min_size=1, max_size=6)}
                    ),
                    max_size=2,
                )
            ),
            "gender": sometimes_junk(st.sampled_from(["male", "female", "other", "unknown", "x"])),
            "birthDate": dates(),
            "active": sometimes_junk(st.booleans()),
        },
    )


def resources(patient_ids: list[str] | None = None) -> st.SearchStrategy[dict[str, Any]]:
    """Any of the ingested resource types, FHIR-ish with junk in random places."""
    return st.one_of(
        questionnaire_responses(patient_ids),
        observations(patient_ids),
        encounters(patient_ids),
        consents(patient_ids),
        episodes_of_care(patient_ids),
        patients(),
    )


RESOURCE_STRATEGIES = {
    "QuestionnaireResponse": questionnaire_responses,
    "Observation": observations,
    "Encounter": encounters,
    "Consent": consents,
    "EpisodeOfCare": episodes_of_care,
}


def _only_domain_errors(call: Any, *args: Any) -> Any:
    """``call(*args)``; a ``DomainError`` is an answer, anything else fails with the input in the
    message (schemathesis' pytest plugin blanks Hypothesis's own "Failing test case" printout)."""
    try:
        return call(*args)
    except DomainError:
        return None
    except Exception as exc:
        raise AssertionError(f"{call.__name__} raised {type(exc).__name__}: {exc} on {args!r}") from exc


# --- scoring -----------------------------------------------------------------------------------------


@FUZZ_SETTINGS
@given(questionnaire_responses())
def test_score_questionnaire_response_raises_only_domain_errors(resource: dict[str, Any]) -> None:
    _only_domain_errors(score_questionnaire_response, resource)


@FUZZ_SETTINGS
@given(observations())
def test_score_observation_raises_only_domain_errors(resource: dict[str, Any]) -> None:
    _only_domain_errors(score_observation, resource)


# --- facts -------------------------------------------------------------------------------------------


@FUZZ_SETTINGS
@given(encounters())
def test_encounter_facts_raise_only_domain_errors(resource: dict[str, Any]) -> None:
    _only_domain_errors(time_entry_from_encounter, resource, "e1", "p1", TZ)
    _only_domain_errors(visit_from_encounter, resource, "e1", "p1", TZ)


@FUZZ_SETTINGS
@given(consents())
def test_consent_fact_raises_only_domain_errors(resource: dict[str, Any]) -> None:
    _only_domain_errors(consent_fact, resource, "c1", "p1", TZ)


@FUZZ_SETTINGS
@given(episodes_of_care())
def test_episode_of_care_fact_raises_only_domain_errors(resource: dict[str, Any]) -> None:
    _only_domain_errors(episode_of_care_fact, resource, "eoc1", "p1", TZ)


# --- validation --------------------------------------------------------------------------------------


@FUZZ_SETTINGS
@given(st.one_of(resources(), junk.filter(lambda value: isinstance(value, dict))))
def test_validate_resource_raises_only_domain_errors(resource: dict[str, Any]) -> None:
    _only_domain_errors(validate_resource, resource)


@FUZZ_SETTINGS
@given(
    st.one_of(
        st.binary(max_size=64),
        resources().map(orjson.dumps),
        junk.map(orjson.dumps),
        st.text(max_size=40).map(lambda text: text.encode("utf-8", "surrogatepass")),
        st.integers(min_value=1, max_value=200).map(lambda depth: b"[" * depth + b"]" * depth),
        st.integers(min_value=1, max_value=200).map(lambda depth: b'{"a":' * depth + b"1" + b"}" * depth),
        st.sampled_from([b"\xef\xbb\xbf{}", b"{}\x00", b'{"a":1e999}', b'{"a":' + b"9" * 40 + b"}", b"NaN"]),
    )
)
def test_parse_json_raises_only_domain_errors(body: bytes) -> None:
    parsed = _only_domain_errors(parse_json, body)
    if parsed is not None:
        _only_domain_errors(validate_resource, parsed)


# --- billing core ------------------------------------------------------------------------------------

_zones = st.sampled_from(
    [UTC, timezone(timedelta(hours=14)), timezone(timedelta(hours=-12)), timezone(timedelta(minutes=330))]
)
_moments = st.datetimes(
    min_value=datetime(1990, 1, 1), max_value=datetime(2100, 12, 31, 23, 59, 59), timezones=_zones
)
_activities = st.sampled_from([*sorted(ACTIVITY_CODES), "unknown-activity", ""])
_exclusions = st.sampled_from([None, None, None, "not_finished", "inpatient", "separately_billed", "other"])


def time_entries(patient_id: str = "p1") -> st.SearchStrategy[TimeEntry]:
    return st.builds(
        TimeEntry,
        patient_id=st.just(patient_id),
        start=_moments,
        seconds=st.integers(min_value=0, max_value=10**6),
        activity=_activities,
        source=st.integers(min_value=0, max_value=30).map(lambda n: f"Encounter/e{n}"),
        excluded=_exclusions,
    )


_dates = st.dates(min_value=date(1990, 1, 1), max_value=date(2100, 12, 31))
configs = st.builds(
    BillingConfig,
    timezone=st.sampled_from(["UTC", TZ, "Pacific/Kiritimati", "Etc/GMT+12"]),
    setting=st.sampled_from(["physician", "fqhc_rhc"]),
    count_consultant_time=st.booleans(),
    fallback_covered=st.booleans(),
    add_on_cap=st.one_of(st.none(), st.integers(min_value=0, max_value=5)),
    apcm_addons=st.booleans(),
    fqhc_g0511_transition=st.booleans(),
)
episode_facts = st.builds(
    EpisodeOfCareFact,
    patient_id=st.just("p1"),
    start=st.one_of(st.none(), _dates),
    end=st.one_of(st.none(), _dates),
    finished=st.booleans(),
    program=st.sampled_from(["cocm", "general-bhi"]),
    source=st.integers(min_value=0, max_value=5).map(lambda n: f"EpisodeOfCare/{n}"),
).filter(
    # What episode_of_care_fact can produce: an end only when finished, never before the start.
    lambda fact: (
        (fact.end is None or fact.finished)
        and (fact.start is None or fact.end is None or fact.start <= fact.end)
    )
)
consent_facts = st.builds(
    ConsentFact,
    patient_id=st.just("p1"),
    active=st.booleans(),
    on=st.one_of(st.none(), _dates),
    source=st.integers(min_value=0, max_value=5).map(lambda n: f"Consent/{n}"),
)
visit_facts = st.builds(
    VisitFact,
    patient_id=st.just("p1"),
    on=_dates,
    system=st.sampled_from([CPT, HCPCS]),
    code=st.sampled_from(["99213", "99492", "G0438", "G0556", "G0558", "90834"]),
    source=st.integers(min_value=0, max_value=5).map(lambda n: f"Encounter/v{n}"),
)
months = st.builds(Month, year=st.integers(min_value=1990, max_value=2100), month=st.integers(1, 12))


@FUZZ_SETTINGS
@given(
    month=months,
    entries=st.lists(time_entries(), max_size=12),
    eocs=st.lists(episode_facts, max_size=3, unique_by=lambda fact: fact.source),
    consent_list=st.lists(consent_facts, max_size=2),
    visits=st.lists(visit_facts, max_size=3),
    config=configs,
    today=_dates,
)
def test_bill_month_never_raises(
    month: Month,
    entries: list[TimeEntry],
    eocs: list[EpisodeOfCareFact],
    consent_list: list[ConsentFact],
    visits: list[VisitFact],
    config: BillingConfig,
    today: date,
) -> None:
    args = (month, entries, eocs, consent_list, visits, config, today)
    result = _only_domain_errors(bill_month, "p1", *args)
    assert result is not None, f"bill_month raised a DomainError on {args!r}"
    assert result.minutes >= 0
    assert result.billable == (bool(result.codes) and not result.blockers)
    # Input order never matters (engine docstring).
    again = bill_month(
        "p1", month, entries[::-1], eocs[::-1], consent_list[::-1], visits[::-1], config, today
    )
    assert again == result, f"input order changed the result for {args!r}"


@FUZZ_SETTINGS
@given(
    entries=st.lists(time_entries(), max_size=15),
    eocs=st.lists(episode_facts, max_size=3, unique_by=lambda fact: fact.source),
    config=configs,
    as_of=_dates,
    lapse=st.integers(min_value=1, max_value=12),
)
def test_find_episodes_never_raises(
    entries: list[TimeEntry], eocs: list[EpisodeOfCareFact], config: BillingConfig, as_of: date, lapse: int
) -> None:
    args = (entries, eocs, config, as_of, EpisodeRules(lapse))
    found = _only_domain_errors(find_episodes, *args)
    assert found is not None, f"find_episodes raised a DomainError on {args!r}"
    # Input order never matters (episodes docstring).
    reversed_args = (entries[::-1], eocs[::-1], config, as_of, EpisodeRules(lapse))
    assert found == find_episodes(*reversed_args), f"order matters for {args!r}"
    for episode in found:
        assert episode.end is None or episode.start <= episode.end, (
            f"{episode} ends before it starts: {args!r}"
        )
