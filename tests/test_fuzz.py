"""Schemathesis against the app's own OpenAPI: no request, however odd, gets a 5xx.

Every operation of ``app.openapi()`` is called with generated path parameters, query strings,
headers and bodies (valid and invalid: schemathesis' ``mode = "all"``) through the ASGI app, with an
API key. The one property checked is ``not_a_server_error``. The schema-conformance checks are left
out on purpose: the FHIR routes read raw bodies and raw query strings, so their OpenAPI body is a
generic object and their FHIR errors (400 OperationOutcomes, 404/405/410/412/415) are not declared
responses; those checks would only restate that.

Plain schemathesis data mostly dies at the first 404 (a random ``rtype``) or 400 (a random body), so
each case is steered part of the time (the choice itself is drawn, so Hypothesis shrinks it): known
resource types, ids of resources seeded before the run (some deleted), FHIR search parameters with
valid-looking and broken values, conditional headers, and FHIR-ish bodies from
``tests.test_core_fuzz`` that reference the seeded Patient.

Examples per operation: 25 (derandomized: the same cases every run), ``COCM_FUZZ_EXAMPLES=500``
for a longer run.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from sqlalchemy import Engine

from app.main import app as _openapi_source
from app.main import create_app
from app.resources.validation import SUPPORTED_TYPES
from app.settings import Settings
from app.store.models import Base
from tests.conftest import FHIR_JSON, load_fixture
from tests.test_core_fuzz import RESOURCE_STRATEGIES, dates, junk, patients, resources

API_KEY = "fuzz-key"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
EXAMPLES = int(os.environ.get("COCM_FUZZ_EXAMPLES", "0") or 0) or 25
TYPES = list(SUPPORTED_TYPES)

schema = schemathesis.openapi.from_dict(
    _openapi_source.openapi(),  # the routes do not depend on settings: any instance has this schema
    config=SchemathesisConfig.from_dict(
        {
            "seed": 20260105,
            "generation": {
                "mode": "all",
                "max-examples": EXAMPLES,
                "deterministic": True,
                "database": "none",
            },
            "phases": {"stateful": {"enabled": False}, "examples": {"enabled": False}},
        }
    ),
)

# Filled by the ``fuzz_app`` fixture before the first case runs: resource type -> ids on the server.
SEEDED: dict[str, list[str]] = {}


def _empty(engine: Engine) -> None:
    with engine.begin() as conn:
        for table in reversed(Base.metadata.sorted_tables):
            conn.execute(table.delete())


def _seed(client: TestClient) -> None:
    SEEDED.clear()

    def create(body: dict[str, Any]) -> str:
        response = client.post(
            f"/fhir/{body['resourceType']}", json=body, headers={"Content-Type": FHIR_JSON}
        )
        assert response.status_code in (200, 201), response.text
        rid = str(response.json()["id"])
        SEEDED.setdefault(body["resourceType"], []).append(rid)
        return rid

    pid = create({"resourceType": "Patient", "identifier": [{"system": "urn:mrn", "value": "fuzz-1"}]})
    subject = {"reference": f"Patient/{pid}"}
    create({"resourceType": "Patient", "gender": "female", "birthDate": "1970-01-01"})
    gone = create({"resourceType": "Patient"})
    assert client.delete(f"/fhir/Patient/{gone}").status_code in (200, 204)
    create(load_fixture("us-core-phq9-questionnaireresponse.json") | {"subject": subject})
    create(
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "70274-6"}]},
            "subject": subject,
            "effectiveDateTime": "2026-01-10T09:00:00Z",
            "valueInteger": 11,
        }
    )
    for start in ("2026-01-05T10:00:00-06:00", "2026-02-03T15:00:00Z"):
        create(
            {
                "resourceType": "Encounter",
                "status": "finished",
                "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
                "type": [
                    {
                        "coding": [
                            {
                                "system": "http://cocm-api.org/fhir/CodeSystem/cocm-activity",
                                "code": "follow-up",
                            }
                        ]
                    }
                ],
                "subject": subject,
                "period": {"start": start},
                "length": {"value": 45, "unit": "min", "system": "http://unitsofmeasure.org", "code": "min"},
            }
        )
    create(
        {
            "resourceType": "Encounter",
            "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
            "type": [{"coding": [{"system": "http://www.ama-assn.org/go/cpt", "code": "99213"}]}],
            "subject": subject,
            "period": {"start": "2025-12-20"},
        }
    )
    create(
        {
            "resourceType": "EpisodeOfCare",
            "status": "active",
            "type": [
                {"coding": [{"system": "http://cocm-api.org/fhir/CodeSystem/cocm-activity", "code": "cocm"}]}
            ],
            "patient": subject,
            "period": {"start": "2026-01-02"},
        }
    )
    create(
        {
            "resourceType": "Consent",
            "status": "active",
            "scope": {
                "coding": [
                    {"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "treatment"}
                ]
            },
            "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
            "patient": subject,
            "dateTime": "2026-01-02",
        }
    )
    create({"resourceType": "Practitioner", "name": [{"family": "Fuzz"}]})
    create({"resourceType": "Organization", "name": "Fuzz clinic"})


@pytest.fixture(scope="module")
def fuzz_app(database_url: str, migrated_engine: Engine) -> Iterator[FastAPI]:
    """The app on the test database with an API key, seeded; tables emptied before and after."""
    _empty(migrated_engine)
    app = create_app(Settings(database_url=database_url, api_keys=API_KEY, timezone="America/Chicago"))
    with TestClient(app, headers=AUTH) as client:
        _seed(client)
    yield app
    _empty(migrated_engine)


# --- steering -----------------------------------------------------------------------------------------

_text = st.text(max_size=12)
_odd = st.sampled_from(
    ["", " ", "\x00", "%", "é", "a" * 300, "-1", "0", "1e9", "99999999999999999999", "null"]
)


def _ids(rtype: str | None) -> list[str]:
    known = SEEDED.get(rtype or "", []) or [i for ids in SEEDED.values() for i in ids]
    return [*known, "does-not-exist", "x" * 65, "a/b", "..", "%00"]


def _patient_values() -> st.SearchStrategy[str]:
    pids = SEEDED.get("Patient", []) or ["p"]
    return st.sampled_from([*pids, *(f"Patient/{p}" for p in pids), "Patient/", "Group/1", ""])


_EDGE_DATES = [
    "9999-12-31T23:59:59-12:00",
    "0001-01-01T00:00:00+14:00",
    "9999-12-31",
    "9999-12",
    "9999",
    "0001-01-01",
    "0001",
    "2026-03-08T02:30:00",
    "2026-13",
    "2026-02-30",
]


def _search_params() -> st.SearchStrategy[dict[str, str]]:
    generic = st.one_of(_text, _odd)
    prefixed_dates = st.tuples(
        st.sampled_from(["", "eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap", "xx"]),
        st.one_of(dates(), st.sampled_from(_EDGE_DATES)),
    ).map(lambda pair: f"{pair[0]}{pair[1]}")
    numbers = st.one_of(
        st.integers(min_value=-2, max_value=600).map(str),
        st.sampled_from(["9" * 30, "1e3", " 5", "٣"]),
        _text,
    )
    tokens = st.one_of(
        st.sampled_from(
            [
                "http://loinc.org|44261-6",
                "|44261-6",
                "http://loinc.org|",
                "urn:mrn|fuzz-1",
                "urn:mrn|\x00",
                "finished,in-progress",
                "a,,b",
                ",",
                "QuestionnaireResponse/x",
                "Patient/x",
                "C",
                "C,R,U,D,E",
            ]
        ),
        generic,
    )
    values: dict[str, st.SearchStrategy[str]] = {
        "_id": st.one_of(st.sampled_from(_ids(None)), generic),
        "_lastUpdated": prefixed_dates,
        "_count": numbers,
        "_cursor": generic,
        "_offset": numbers,
        "_sort": generic,
        "identifier": tokens,
        "patient": st.one_of(_patient_values(), generic),
        "subject": st.one_of(_patient_values(), generic),
        "date": prefixed_dates,
        "status": tokens,
        "code": tokens,
        "derived-from": tokens,
        "questionnaire": tokens,
        "occurrence": st.one_of(
            st.sampled_from(["2026-01", "9999-12", "0001-01", "2026-1", "2026"]), prefixed_dates
        ),
        "action": tokens,
        "agent": tokens,
        "entity": tokens,
        "type": tokens,
        "month": st.one_of(st.sampled_from(["2026-01", "9999-12", "0001-01", "2026-1", "2026"]), generic),
        "as_of": st.one_of(st.sampled_from(_EDGE_DATES), dates().map(str), generic),
        "unknown-param": generic,
    }
    pair = st.sampled_from(sorted(values)).flatmap(lambda name: st.tuples(st.just(name), values[name]))
    return st.lists(pair, max_size=4).map(dict)


def _headers(method: str) -> st.SearchStrategy[dict[str, str]]:
    choices: dict[str, st.SearchStrategy[str]] = {
        "Prefer": st.sampled_from(
            ["return=OperationOutcome", "return=representation", "return=minimal", "handling=strict", "x"]
        ),
        "Content-Type": st.sampled_from(
            [
                FHIR_JSON,
                "application/json",
                "application/fhir+json; charset=utf-8",
                "text/plain",
                "application/xml",
            ]
        ),
    }
    if method in {"PUT", "DELETE"}:
        choices["If-Match"] = st.sampled_from(
            ['W/"1"', '"1"', 'W/"2"', "*", 'W/"x"', "W/", 'W/"99999999999999999999"']
        )
    if method == "POST":
        choices["If-None-Exist"] = st.sampled_from(
            [
                "identifier=urn:mrn|fuzz-1",
                "identifier=urn:mrn|none",
                "identifier=",
                "_id=x",
                "x",
                "identifier=|",
            ]
        )
    return st.fixed_dictionaries({}, optional=choices)


def _body(rtype: str | None) -> st.SearchStrategy[Any]:
    pids = SEEDED.get("Patient", [])
    if rtype in RESOURCE_STRATEGIES:
        return RESOURCE_STRATEGIES[rtype](pids)
    if rtype == "Patient":
        return patients()
    return resources(pids)


def _bundle() -> st.SearchStrategy[dict[str, Any]]:
    pids = SEEDED.get("Patient", [])
    entry = st.fixed_dictionaries(
        {"resource": resources(pids)},
        optional={
            "fullUrl": st.sampled_from(
                [
                    "urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a",
                    "urn:uuid:0b3a6a1e-9d1c-4a54-9a53-7cb1c4c9e1aa",
                    "x",
                ]
            ),
            "request": st.fixed_dictionaries(
                {
                    "method": st.sampled_from(["POST", "PUT", "GET", "DELETE", "PATCH", "post"]),
                    "url": st.one_of(st.sampled_from([*TYPES, *(f"Patient/{p}" for p in pids)]), _text, _odd),
                },
                optional={"ifNoneExist": st.sampled_from(["identifier=urn:mrn|fuzz-1", "x"])},
            ),
        },
    )
    return st.fixed_dictionaries(
        {
            "resourceType": st.just("Bundle"),
            "type": st.one_of(st.sampled_from(["transaction", "batch", "collection", "searchset"]), junk),
            "entry": st.one_of(st.lists(entry, max_size=4), junk),
        }
    )


def steer(case: Any, data: st.DataObject) -> None:
    """Now and then replace generated parts of ``case`` by values that reach deeper code."""
    method = case.operation.method.upper()
    path = case.operation.path
    params = case.path_parameters
    if params:
        params = dict(params)
        if "rtype" in params and data.draw(st.booleans(), label="known rtype"):
            params["rtype"] = data.draw(
                st.sampled_from([*TYPES, "Bundle", "AuditEvent", "Basic"]), label="rtype"
            )
        for name in ("rid", "patient_id"):
            if name in params and data.draw(st.booleans(), label=f"known {name}"):
                kind = "Patient" if name == "patient_id" else params.get("rtype")
                params[name] = data.draw(st.sampled_from(_ids(kind)), label=name)
        if "vid" in params and data.draw(st.booleans(), label="known vid"):
            params["vid"] = data.draw(st.sampled_from(["1", "2", "0", "-1", "9" * 25, "x"]), label="vid")
        case.path_parameters = params
    if method == "GET" and data.draw(st.booleans(), label="search params"):
        case.query = {**(case.query or {}), **data.draw(_search_params(), label="query")}
    if method == "PUT" and path == "/fhir/{rtype}":
        case.query = {**(case.query or {}), **data.draw(_search_params(), label="query")}
    if data.draw(st.booleans(), label="headers"):
        case.headers = {**(case.headers or {}), **data.draw(_headers(method), label="headers")}
    if method in {"POST", "PUT"} and data.draw(st.booleans(), label="fhir body"):
        rtype = (params or {}).get("rtype")
        body = data.draw(_bundle() if path == "/fhir" else _body(rtype), label="body")
        body = copy.deepcopy(body)
        if path == "/fhir/{rtype}/{rid}" and data.draw(st.booleans(), label="body id"):
            body["id"] = params["rid"]
        case.body = body
        case.media_type = FHIR_JSON


@schema.parametrize()
@schema.given(data=st.data())
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_no_server_error(case: Any, data: st.DataObject, fuzz_app: FastAPI) -> None:
    steer(case, data)
    # An unhandled exception propagates out of the ASGI app (Starlette re-raises after its 500) and
    # fails the test with its traceback and schemathesis' curl reproducer; a 5xx answered by a handler
    # (503 included: the database is up) fails the check.
    response = case.call(app=fuzz_app, headers=AUTH)
    case.validate_response(response, checks=[not_a_server_error])
