"""Tests of app/resources/validation.py: parsing, model validation, required bindings, references."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.errors import BusinessRuleViolation, InvalidInput
from app.resources.bindings import R4_RESOURCE_TYPES, REQUIRED_BINDINGS
from app.resources.validation import (
    PATIENT_REFERENCE_ELEMENTS,
    SUPPORTED_TYPES,
    bound_paths,
    check_reference_shapes,
    parse_json,
    patient_reference,
    validate_resource,
)
from tests.conftest import fixture_files

SUBJECT = {"reference": "Patient/p1"}
DIV = '<div xmlns="http://www.w3.org/1999/xhtml">text</div>'

# Minimal valid resources of each stored type.
BASE: dict[str, dict[str, Any]] = {
    "Patient": {"resourceType": "Patient"},
    "Practitioner": {"resourceType": "Practitioner"},
    "Organization": {"resourceType": "Organization", "name": "Clinic"},
    "Condition": {
        "resourceType": "Condition",
        "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "F32.1"}]},
        "subject": {"reference": "Patient/p1"},
    },
    "Subscription": {
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "safety alerts",
        "criteria": "http://cocm-api.org/fhir/SubscriptionTopic/safety-risk",
        "channel": {"type": "rest-hook", "endpoint": "https://hooks.example.org/cocm"},
    },
    "QuestionnaireResponse": {
        "resourceType": "QuestionnaireResponse",
        "status": "completed",
        "subject": SUBJECT,
    },
    "Observation": {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "x"},
        "subject": SUBJECT,
    },
    "Encounter": {
        "resourceType": "Encounter",
        "status": "finished",
        "class": {"code": "AMB"},
        "subject": SUBJECT,
    },
    "EpisodeOfCare": {"resourceType": "EpisodeOfCare", "status": "active", "patient": SUBJECT},
    "Consent": {
        "resourceType": "Consent",
        "status": "active",
        "scope": {"text": "treatment"},
        "category": [{"text": "consent"}],
        "patient": SUBJECT,
    },
}

C = "<CODE>"  # placeholder replaced by the code under test


def _fill(fragment: Any, code: str) -> Any:
    if fragment == C:
        return code
    if isinstance(fragment, dict):
        return {key: _fill(value, code) for key, value in fragment.items()}
    if isinstance(fragment, list):
        return [_fill(value, code) for value in fragment]
    return fragment


def _resource(resource_type: str, fragment: dict[str, Any], code: str) -> dict[str, Any]:
    return {**copy.deepcopy(BASE[resource_type]), **_fill(fragment, code)}


def _issues(exc: pytest.ExceptionInfo[Any]) -> list[tuple[str, tuple[str, ...]]]:
    return [(issue.code, issue.expression) for issue in exc.value.issues]


# (resource type, fragment with the placeholder, expected expression, a valid code)
BINDING_ROWS: list[tuple[str, dict[str, Any], str, str]] = [
    ("Patient", {"gender": C}, "Patient.gender", "female"),
    ("Patient", {"contact": [{"gender": C}]}, "Patient.contact[0].gender", "unknown"),
    (
        "Patient",
        {"link": [{"other": {"reference": "Patient/p2"}, "type": C}]},
        "Patient.link[0].type",
        "seealso",
    ),
    ("Practitioner", {"gender": C}, "Practitioner.gender", "other"),
    ("QuestionnaireResponse", {"status": C}, "QuestionnaireResponse.status", "stopped"),
    ("Observation", {"status": C}, "Observation.status", "corrected"),
    ("Encounter", {"status": C}, "Encounter.status", "onleave"),
    ("EpisodeOfCare", {"status": C}, "EpisodeOfCare.status", "waitlist"),
    ("Consent", {"status": C}, "Consent.status", "proposed"),
    (
        "Encounter",
        {"statusHistory": [{"status": C, "period": {"start": "2026-01-05"}}]},
        "Encounter.statusHistory[0].status",
        "arrived",
    ),
    (
        "EpisodeOfCare",
        {"statusHistory": [{"status": C, "period": {"start": "2026-01-05"}}]},
        "EpisodeOfCare.statusHistory[0].status",
        "onhold",
    ),
    (
        "Encounter",
        {"location": [{"location": {"reference": "Location/l1"}, "status": C}]},
        "Encounter.location[0].status",
        "reserved",
    ),
    ("Patient", {"identifier": [{"use": C, "value": "1"}]}, "Patient.identifier[0].use", "official"),
    ("Organization", {"identifier": [{"use": C}]}, "Organization.identifier[0].use", "secondary"),
    ("Observation", {"identifier": [{"use": C}]}, "Observation.identifier[0].use", "temp"),
    ("Patient", {"name": [{"use": C}]}, "Patient.name[0].use", "maiden"),
    ("Patient", {"contact": [{"name": {"use": C}}]}, "Patient.contact[0].name.use", "nickname"),
    ("Patient", {"telecom": [{"system": C}]}, "Patient.telecom[0].system", "sms"),
    ("Patient", {"telecom": [{"use": C}]}, "Patient.telecom[0].use", "mobile"),
    ("Practitioner", {"telecom": [{"system": "phone", "use": C}]}, "Practitioner.telecom[0].use", "work"),
    ("Patient", {"contact": [{"telecom": [{"use": C}]}]}, "Patient.contact[0].telecom[0].use", "home"),
    ("Patient", {"address": [{"use": C}]}, "Patient.address[0].use", "billing"),
    ("Patient", {"address": [{"type": C}]}, "Patient.address[0].type", "both"),
    ("Organization", {"address": [{"type": C}]}, "Organization.address[0].type", "postal"),
    (
        "Observation",
        {"valueQuantity": {"value": 5, "comparator": C}},
        "Observation.valueQuantity.comparator",
        "<=",
    ),
    (
        "Encounter",
        {"length": {"value": 25, "unit": "min", "comparator": C}},
        "Encounter.length.comparator",
        ">",
    ),
    (
        "Observation",
        {"component": [{"code": {"text": "c"}, "valueQuantity": {"comparator": C}}]},
        "Observation.component[0].valueQuantity.comparator",
        ">=",
    ),
    (
        "QuestionnaireResponse",
        {"item": [{"linkId": "1", "answer": [{"valueQuantity": {"value": 1, "comparator": C}}]}]},
        "QuestionnaireResponse.item[0].answer[0].valueQuantity.comparator",
        "<",
    ),
    (
        "QuestionnaireResponse",
        {
            "item": [
                {"linkId": "1", "item": [{"linkId": "1.1", "answer": [{"valueQuantity": {"comparator": C}}]}]}
            ]
        },
        "QuestionnaireResponse.item[0].item[0].answer[0].valueQuantity.comparator",
        "<",
    ),
    (
        "Patient",
        {"extension": [{"url": "http://example.org/age", "valueAge": {"value": 40, "comparator": C}}]},
        "Patient.extension[0].valueAge.comparator",
        "<",
    ),
    (
        "Patient",
        {"_gender": {"extension": [{"url": "http://example.org/q", "valueQuantity": {"comparator": C}}]}},
        "Patient._gender.extension[0].valueQuantity.comparator",
        ">",
    ),
    (
        "Observation",
        {"effectiveTiming": {"repeat": {"periodUnit": C}}},
        "Observation.effectiveTiming.repeat.periodUnit",
        "wk",
    ),
    (
        "Observation",
        {"effectiveTiming": {"repeat": {"dayOfWeek": ["mon", C]}}},
        "Observation.effectiveTiming.repeat.dayOfWeek[1]",
        "sun",
    ),
    (
        "Observation",
        {"effectiveTiming": {"repeat": {"when": [C]}}},
        "Observation.effectiveTiming.repeat.when[0]",
        "HS",
    ),
    ("Patient", {"text": {"status": C, "div": DIV}}, "Patient.text.status", "generated"),
    ("Consent", {"provision": {"type": C}}, "Consent.provision.type", "permit"),
    ("Consent", {"provision": {"provision": [{"type": C}]}}, "Consent.provision.provision[0].type", "deny"),
    (
        "Consent",
        {"provision": {"data": [{"meaning": C, "reference": {"reference": "Observation/o1"}}]}},
        "Consent.provision.data[0].meaning",
        "authoredby",
    ),
    (
        "Patient",
        {"contained": [{"resourceType": "Observation", "id": "o1", "status": C, "code": {"text": "x"}}]},
        "Patient.contained[0].status",
        "final",
    ),
]


@pytest.mark.parametrize(("resource_type", "fragment", "expression", "valid"), BINDING_ROWS)
def test_required_binding_accepts_valid_code(
    resource_type: str, fragment: dict[str, Any], expression: str, valid: str
) -> None:
    resource = _resource(resource_type, fragment, valid)
    assert validate_resource(resource, resource_type) is resource


@pytest.mark.parametrize(("resource_type", "fragment", "expression", "valid"), BINDING_ROWS)
def test_required_binding_rejects_bogus_code(
    resource_type: str, fragment: dict[str, Any], expression: str, valid: str
) -> None:
    with pytest.raises(InvalidInput) as exc:
        validate_resource(_resource(resource_type, fragment, "bogus"), resource_type)
    assert _issues(exc) == [("code-invalid", (expression,))]
    assert exc.value.issues[0].diagnostics.startswith(f"{expression}: 'bogus' is not one of ")


def test_bad_code_diagnostics_list_the_allowed_codes() -> None:
    with pytest.raises(InvalidInput) as exc:
        validate_resource({"resourceType": "Patient", "gender": "bogus"})
    assert (
        exc.value.issues[0].diagnostics
        == "Patient.gender: 'bogus' is not one of male, female, other, unknown"
    )


def test_bad_code_that_does_not_look_like_a_code_is_not_echoed() -> None:
    with pytest.raises(InvalidInput) as exc:
        validate_resource({"resourceType": "Patient", "gender": "Jane Q. Public, born 1980"})
    assert "Jane" not in exc.value.issues[0].diagnostics


def test_every_binding_row_is_reached_by_the_compiled_schemas() -> None:
    # A typo in a definition path would silently check nothing.
    assert bound_paths() == frozenset(REQUIRED_BINDINGS)


def test_every_stored_status_is_bound() -> None:
    for resource_type in ("QuestionnaireResponse", "Observation", "Encounter", "EpisodeOfCare", "Consent"):
        assert f"{resource_type}.status" in REQUIRED_BINDINGS


def test_all_problems_are_reported_at_once() -> None:
    body = {"resourceType": "Patient", "gender": "bogus", "foo": 1, "identifier": [{"use": "nope"}]}
    with pytest.raises(InvalidInput) as exc:
        validate_resource(body)
    assert set(_issues(exc)) == {
        ("code-invalid", ("Patient.gender",)),
        ("structure", ("Patient.foo",)),
        ("code-invalid", ("Patient.identifier[0].use",)),
    }


# --- model validation --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expression"),
    [
        ({"resourceType": "Patient", "foo": 1}, "Patient.foo"),
        ({"resourceType": "Patient", "name": [{"family": "x", "nickname": "y"}]}, "Patient.name[0].nickname"),
    ],
)
def test_unknown_element_is_a_structure_issue_with_its_path(body: dict[str, Any], expression: str) -> None:
    with pytest.raises(InvalidInput) as exc:
        validate_resource(body)
    assert _issues(exc) == [("structure", (expression,))]
    leaf = expression.rsplit(".", 1)[1]
    assert exc.value.issues[0].diagnostics == f"Unknown element '{leaf}' at {expression}"


@pytest.mark.parametrize(
    ("body", "expression"),
    [
        ({"resourceType": "Observation", "status": "final", "subject": SUBJECT}, "Observation.code"),
        ({"resourceType": "Observation", "code": {"text": "x"}, "subject": SUBJECT}, "Observation.status"),
        ({"resourceType": "Patient", "link": [{"type": "seealso"}]}, "Patient.link[0].other"),
    ],
)
def test_missing_required_element_is_a_required_issue(body: dict[str, Any], expression: str) -> None:
    with pytest.raises(InvalidInput) as exc:
        validate_resource(body)
    assert ("required", (expression,)) in _issues(exc)


@pytest.mark.parametrize(
    ("body", "expression"),
    [
        ({"resourceType": "Patient", "active": "true"}, "Patient.active"),
        ({"resourceType": "Patient", "multipleBirthInteger": "3"}, "Patient.multipleBirthInteger"),
        ({"resourceType": "Patient", "telecom": [{"rank": 2.0}]}, "Patient.telecom[0].rank"),
        ({"resourceType": "Patient", "meta": '{"versionId": "1"}'}, "Patient.meta"),
        ({"resourceType": "Patient", "name": ['{"family": "x"}']}, "Patient.name[0]"),
        ({"resourceType": "Patient", "meta": {"lastUpdated": 1700000000}}, "Patient.meta.lastUpdated"),
        (
            {"resourceType": "Observation", "status": "final", "code": {}, "valueQuantity": {"value": "5"}},
            "Observation.valueQuantity.value",
        ),
    ],
)
def test_json_kind_that_pydantic_coerces_is_a_structure_issue(body: dict[str, Any], expression: str) -> None:
    with pytest.raises(InvalidInput) as exc:
        validate_resource(body)
    assert ("structure", (expression,)) in _issues(exc)


def test_bad_value_is_a_value_issue_with_its_path() -> None:
    with pytest.raises(InvalidInput) as exc:
        validate_resource({"resourceType": "Patient", "birthDate": "1990-13-45"})
    assert _issues(exc) == [("value", ("Patient.birthDate",))]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"gender": "male"}, None),
        ({"resourceType": "Bogus"}, None),
        ({"resourceType": "Identifier"}, None),  # a datatype, not a resource
        ({"resourceType": "PatientContact"}, None),  # a backbone element class of fhir.resources
        ({"resourceType": ["Patient"]}, None),
        ({"resourceType": "Observation", "status": "final", "code": {}}, "Patient"),
    ],
)
def test_wrong_resource_type_points_at_resource_type(body: dict[str, Any], expected: str | None) -> None:
    with pytest.raises(InvalidInput) as exc:
        validate_resource(body, expected)
    assert [issue.expression for issue in exc.value.issues] == [("resourceType",)]


@pytest.mark.parametrize(
    "contained", [{"resourceType": "Bogus"}, {"resourceType": ["x"]}, {"id": "x"}, "text", 5]
)
def test_contained_resource_without_a_known_type_is_invalid_input(contained: Any) -> None:
    with pytest.raises(InvalidInput):
        validate_resource({"resourceType": "Patient", "contained": [contained]})


def test_contained_resource_cannot_contain_resources() -> None:
    inner = {"resourceType": "Patient", "id": "c1", "contained": [{"resourceType": "Patient", "id": "c2"}]}
    with pytest.raises(InvalidInput) as exc:
        validate_resource({"resourceType": "Patient", "contained": [inner]})
    assert ("structure", ("Patient.contained[0].contained",)) in _issues(exc)


@pytest.mark.parametrize("name", fixture_files(), ids=lambda path: path.name)
def test_published_fixture_validates_unchanged(name: Path) -> None:
    body = name.read_bytes()
    data = parse_json(body)
    original = json.loads(body)
    rtype = data["resourceType"]
    assert validate_resource(data, rtype) is data
    assert data == original
    check_reference_shapes(data)
    result = patient_reference(data)
    assert result is not None
    assert result[0] == f"{rtype}.subject"


def test_supported_types_are_the_stored_types() -> None:
    assert set(SUPPORTED_TYPES) == set(BASE)
    for resource_type in SUPPORTED_TYPES:
        validate_resource(copy.deepcopy(BASE[resource_type]), resource_type)


def test_resource_types_table_is_r4() -> None:
    assert len(R4_RESOURCE_TYPES) == 146
    assert {"Patient", "MedicinalProduct", "RiskEvidenceSynthesis"} <= R4_RESOURCE_TYPES
    assert "Citation" not in R4_RESOURCE_TYPES  # R4B only


# --- parse_json --------------------------------------------------------------------------------


def _nested(levels: int) -> bytes:
    """A body whose total nesting (objects and arrays) is ``levels``."""
    return b'{"a":' + b"[" * (levels - 1) + b"]" * (levels - 1) + b"}"


def test_nesting_of_64_levels_is_accepted() -> None:
    data = parse_json(_nested(64))
    assert isinstance(data["a"], list)


def test_nesting_of_65_levels_is_invalid_input() -> None:
    with pytest.raises(InvalidInput) as exc:
        parse_json(_nested(65))
    assert exc.value.issues[0].code == "structure"
    assert "64" in exc.value.issues[0].diagnostics


@pytest.mark.parametrize("body", [b"[" * 100_000, _nested(100_000), b'{"a":' + b'{"a":' * 100_000])
def test_very_deep_nesting_is_invalid_input_not_recursion_error(body: bytes) -> None:
    with pytest.raises(InvalidInput) as exc:
        parse_json(body)
    assert exc.value.issues[0].code == "structure"


def test_custom_max_depth() -> None:
    parse_json(_nested(3), max_depth=3)
    with pytest.raises(InvalidInput):
        parse_json(_nested(4), max_depth=3)


@pytest.mark.parametrize(
    "body",
    [b'{"name": "caf\xe9"}', b"\xff\xfe{\x00}\x00", b'{"a": "\xed\xa0\x80"}'],
)
def test_non_utf8_body_is_invalid_input(body: bytes) -> None:
    with pytest.raises(InvalidInput) as exc:
        parse_json(body)
    assert exc.value.issues[0].code == "structure"
    assert "UTF-8" in exc.value.issues[0].diagnostics


@pytest.mark.parametrize("body", [b"", b"{", b'{"a": 1,}', b'{"a": NaN}', b"{'a': 1}", b'{"a": 1} x'])
def test_invalid_json_is_invalid_input(body: bytes) -> None:
    with pytest.raises(InvalidInput) as exc:
        parse_json(body)
    assert exc.value.issues[0].code == "structure"


@pytest.mark.parametrize("body", [b"[]", b'"Patient"', b"1", b"null", b"true"])
def test_top_level_that_is_not_an_object_is_invalid_input(body: bytes) -> None:
    with pytest.raises(InvalidInput) as exc:
        parse_json(body)
    assert "object" in exc.value.issues[0].diagnostics


def test_utf8_byte_order_mark_is_accepted() -> None:
    assert parse_json(b'\xef\xbb\xbf{"resourceType": "Patient"}') == {"resourceType": "Patient"}


def test_json_error_does_not_echo_the_body() -> None:
    with pytest.raises(InvalidInput) as exc:
        parse_json(b'{"name": [{"family": "Zqxsmith"}] "birthDate": "1961-02-03"}')
    diagnostics = exc.value.issues[0].diagnostics
    assert "Zqxsmith" not in diagnostics
    assert "1961" not in diagnostics
    assert "line 1 column" in diagnostics


# --- references --------------------------------------------------------------------------------

GOOD_REFERENCES = [
    "Practitioner/123",
    "Practitioner/a.b-C9",
    "Practitioner/" + "x" * 64,
    "Practitioner/1/_history/2",
    "MedicinalProduct/1",  # an R4 type that R4B dropped is still an R4 reference
    "http://ehr.example.org/fhir/Practitioner/9",
    "https://ehr.example.org/fhir/Practitioner/9/_history/1",
    "#p1",
    "#",
    "urn:uuid:1f3a4b6c-0d2e-4f5a-8b9c-0123456789ab",
    "urn:oid:2.16.840.1.113883.4.642",
]
BAD_REFERENCES = [
    "Practitioner",
    "Practitioner/",
    "practitioner/1",
    "Bogus/1",
    "Practitioner/1 2",
    "Practitioner/" + "x" * 65,
    "Practitioner/1/_history/",
    "Practitioner/1/extra",
    "/Practitioner/1",
    " Practitioner/1",
    "ftp://example.org/Practitioner/1",
    "http://",
    "urn:uuid:not-a-uuid",
    "urn:oid:abc",
    "#has space",
]


def _observation_with_performer(reference: str) -> dict[str, Any]:
    return {**copy.deepcopy(BASE["Observation"]), "performer": [{"reference": reference}]}


@pytest.mark.parametrize("reference", GOOD_REFERENCES)
def test_reference_shape_accepted(reference: str) -> None:
    resource = _observation_with_performer(reference)
    check_reference_shapes(resource)
    validate_resource(resource, "Observation")


@pytest.mark.parametrize("reference", BAD_REFERENCES)
def test_reference_shape_rejected_with_its_path(reference: str) -> None:
    resource = _observation_with_performer(reference)
    with pytest.raises(InvalidInput) as exc:
        check_reference_shapes(resource)
    assert _issues(exc) == [("value", ("Observation.performer[0].reference",))]
    with pytest.raises(InvalidInput):
        validate_resource(resource, "Observation")


def test_reference_shapes_are_checked_inside_contained_and_extensions() -> None:
    resource = {
        "resourceType": "Patient",
        "extension": [{"url": "http://example.org/x", "valueReference": {"reference": "Bad Ref"}}],
        "contained": [
            {"resourceType": "Observation", "status": "final", "code": {}, "subject": {"reference": "x"}}
        ],
    }
    with pytest.raises(InvalidInput) as exc:
        check_reference_shapes(resource)
    assert {issue.expression for issue in exc.value.issues} == {
        ("Patient.extension[0].valueReference.reference",),
        ("Patient.contained[0].subject.reference",),
    }


# --- patient reference -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("resource_type", "element"),
    sorted(PATIENT_REFERENCE_ELEMENTS.items()),
)
def test_patient_reference_of_each_patient_linked_type(resource_type: str, element: str) -> None:
    resource = copy.deepcopy(BASE[resource_type])
    resource[element] = {"reference": "Patient/p-1.a"}
    assert patient_reference(resource) == (f"{resource_type}.{element}", "p-1.a")


def test_versioned_patient_reference_gives_the_id() -> None:
    resource = {**BASE["Observation"], "subject": {"reference": "Patient/p1/_history/3"}}
    assert patient_reference(resource) == ("Observation.subject", "p1")


@pytest.mark.parametrize("resource_type", ["Patient", "Practitioner", "Organization"])
def test_types_without_a_patient_have_no_patient_reference(resource_type: str) -> None:
    assert patient_reference(BASE[resource_type]) is None


@pytest.mark.parametrize(
    ("resource_type", "element"),
    sorted(PATIENT_REFERENCE_ELEMENTS.items()),
)
def test_missing_patient_reference_breaks_a_business_rule(resource_type: str, element: str) -> None:
    resource = {key: value for key, value in BASE[resource_type].items() if key != element}
    with pytest.raises(BusinessRuleViolation) as exc:
        patient_reference(resource)
    assert exc.value.issues[0].expression == (f"{resource_type}.{element}",)


@pytest.mark.parametrize(
    "subject",
    [
        {"reference": "Group/1"},
        {"reference": "http://other.example.org/fhir/Patient/1"},
        {"reference": "#p1"},
        {"reference": "urn:uuid:1f3a4b6c-0d2e-4f5a-8b9c-0123456789ab"},
        {"identifier": {"system": "urn:mrn", "value": "123"}},
        {"display": "somebody"},
    ],
)
def test_subject_that_is_not_a_local_patient_breaks_a_business_rule(subject: dict[str, Any]) -> None:
    with pytest.raises(BusinessRuleViolation) as exc:
        patient_reference({**BASE["Encounter"], "subject": subject})
    assert exc.value.issues[0].expression == ("Encounter.subject",)


# --- no patient data in diagnostics ------------------------------------------------------------

SECRET = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")),
    min_size=1,
    max_size=40,
).map(lambda text: "Zq" + text)  # "Zq" never occurs in the service's own sentences

BODIES_WITH_A_SECRET = [
    lambda s: {"name": [{"family": s, "given": [s], "use": "bogus"}]},
    lambda s: {"name": [{"family": s, "text": s}], "birthDate": "not-a-date"},
    lambda s: {"name": [{"family": s, "unknownElement": s}]},
    lambda s: {"name": [{"given": s}]},
    lambda s: {"birthDate": s},
    lambda s: {"name": [{"family": s, "period": {"start": s}}]},
    lambda s: {"telecom": [{"value": s, "rank": s}]},
    lambda s: {"name": [{"family": s}], "deceasedBoolean": True, "deceasedDateTime": s},
    lambda s: {"contact": [{"name": {"family": s}, "gender": "bogus"}], "multipleBirthInteger": s},
    lambda s: {"name": [{"family": s}], "managingOrganization": {"reference": s}},
    lambda s: {"identifier": [{"value": s, "use": "nope"}], "active": s},
]


@settings(max_examples=60, deadline=None)
@given(secret=SECRET, variant=st.integers(min_value=0, max_value=len(BODIES_WITH_A_SECRET) - 1))
def test_diagnostics_never_contain_patient_values(secret: str, variant: int) -> None:
    body = {"resourceType": "Patient", **BODIES_WITH_A_SECRET[variant](secret)}
    with pytest.raises(InvalidInput) as exc:
        validate_resource(body, "Patient")
    for issue in exc.value.issues:
        assert "Zq" not in issue.diagnostics
        assert all("Zq" not in part for part in issue.expression)
    assert "Zq" not in str(exc.value)


@settings(max_examples=30, deadline=None)
@given(secret=SECRET)
def test_json_diagnostics_never_contain_patient_values(secret: str) -> None:
    body = json.dumps({"resourceType": "Patient", "name": [{"family": secret}]}).encode()[:-1]  # truncated
    with pytest.raises(InvalidInput) as exc:
        parse_json(body)
    assert "Zq" not in exc.value.issues[0].diagnostics
