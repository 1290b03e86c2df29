"""Real FHIR client libraries against the running service over real HTTP.

fhirpy (``SyncFHIRClient``) and SMART on FHIR's ``fhirclient`` talk to the app served by uvicorn
on a free 127.0.0.1 port in a background thread: create, read, search, update and delete, the
derived PHQ-9 score found with ``derived-from``, and a care-manager time entry (Encounter).
"""

from __future__ import annotations

import copy
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import uvicorn
from fhirclient import client as smart_client
from fhirclient.models.encounter import Encounter
from fhirclient.models.patient import Patient
from fhirpy import SyncFHIRClient
from fhirpy.base.exceptions import ResourceNotFound
from sqlalchemy import Engine

from app.main import create_app
from app.settings import Settings
from tests.conftest import _empty_tables, load_fixture

ACTIVITY = "http://cocm-api.org/fhir/CodeSystem/cocm-activity"
MRN = "urn:oid:1.2.36.146.595.217.0.1"


@pytest.fixture(scope="module")
def server_url(database_url: str, migrated_engine: Engine) -> Iterator[str]:
    """The app served by uvicorn in a thread; yields ``http://127.0.0.1:<port>``."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))  # a free port, held from here on: no race with other processes
    port = sock.getsockname()[1]
    app = create_app(Settings(database_url=database_url))
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@pytest.fixture
def base(server_url: str, migrated_engine: Engine) -> str:
    """The FHIR base URL, with every table emptied first (as conftest's make_client does)."""
    _empty_tables(migrated_engine)
    return f"{server_url}/fhir"


@pytest.fixture
def fhirpy_client(base: str) -> SyncFHIRClient:
    # As shipped: fhirpy sends bodies as application/json (accepted by api.md) and Accept fhir+json.
    return SyncFHIRClient(base)


@pytest.fixture
def smart(base: str) -> smart_client.FHIRClient:
    return smart_client.FHIRClient(settings={"app_id": "cocm-api-tests", "api_base": base})


def _mrn() -> str:
    return f"mrn-{uuid.uuid4().hex[:10]}"


# --- fhirpy -------------------------------------------------------------------------------------


def test_fhirpy_patient_create_read_search_update_delete(fhirpy_client: SyncFHIRClient) -> None:
    mrn = _mrn()
    patient = fhirpy_client.resource(
        "Patient",
        identifier=[{"system": MRN, "value": mrn}],
        name=[{"family": "Chalmers", "given": ["Peter"]}],
        gender="male",
        birthDate="1974-12-25",
    )
    patient.save()
    pid = patient.id
    assert pid
    assert patient["meta"]["versionId"] == "1"

    read = fhirpy_client.reference("Patient", pid).to_resource()
    assert read["identifier"] == [{"system": MRN, "value": mrn}]
    assert read["name"][0]["family"] == "Chalmers"

    found = fhirpy_client.resources("Patient").search(identifier=f"{MRN}|{mrn}").fetch()
    assert [p.id for p in found] == [pid]
    assert fhirpy_client.resources("Patient").search(identifier=f"{MRN}|no-such").fetch() == []

    read["active"] = True
    read.save()
    assert read["meta"]["versionId"] == "2"
    again = fhirpy_client.reference("Patient", pid).to_resource()
    assert again["active"] is True
    assert again["meta"]["versionId"] == "2"

    read.delete()
    with pytest.raises(ResourceNotFound):  # 410 Gone
        fhirpy_client.reference("Patient", pid).to_resource()
    assert fhirpy_client.resources("Patient").search(identifier=f"{MRN}|{mrn}").fetch() == []


def test_fhirpy_phq9_response_and_its_derived_score(fhirpy_client: SyncFHIRClient) -> None:
    patient = fhirpy_client.resource("Patient", identifier=[{"system": MRN, "value": _mrn()}])
    patient.save()

    body: dict[str, Any] = copy.deepcopy(load_fixture("us-core-phq9-questionnaireresponse.json"))
    body.pop("id")
    body.pop("resourceType")
    body["subject"] = {"reference": f"Patient/{patient.id}"}
    response = fhirpy_client.resource("QuestionnaireResponse", **body)
    response.save()
    qid = response.id
    assert qid
    assert response["item"][0]["linkId"] == "/44250-9"  # stored as sent

    derived = (
        fhirpy_client.resources("Observation")
        .search(**{"derived-from": f"QuestionnaireResponse/{qid}"})
        .fetch()
    )
    assert len(derived) == 1
    [score] = derived
    assert score["valueQuantity"]["value"] == 12
    assert score["code"]["coding"][0]["code"] == "44261-6"
    assert score["subject"]["reference"] == f"Patient/{patient.id}"
    by_patient = fhirpy_client.resources("Observation").search(patient=patient.id).fetch()
    assert [o.id for o in by_patient] == [score.id]

    response.delete()  # the derived score goes with its response
    assert (
        fhirpy_client.resources("Observation")
        .search(**{"derived-from": f"QuestionnaireResponse/{qid}"})
        .fetch()
        == []
    )


def test_fhirpy_conditional_create_update_and_paging(fhirpy_client: SyncFHIRClient) -> None:
    mrn = _mrn()
    by_mrn = fhirpy_client.resources("Patient").search(identifier=f"{MRN}|{mrn}")
    body = {"identifier": [{"system": MRN, "value": mrn}], "gender": "female"}

    # fhirpy's get_or_create POSTs with the search as query parameters (not If-None-Exist); the
    # identifier's idempotency answers the repeat with 200 and the stored resource.
    first, created = by_mrn.get_or_create(fhirpy_client.resource("Patient", **body))
    assert created
    again, created_again = by_mrn.get_or_create(fhirpy_client.resource("Patient", **body))
    assert not created_again
    assert again.id == first.id

    # Conditional update: PUT /fhir/Patient?identifier=sys|val.
    updated, created = by_mrn.update(fhirpy_client.resource("Patient", **body, active=True))
    assert not created
    assert updated.id == first.id
    assert updated["meta"]["versionId"] == "2"
    new_mrn = _mrn()
    upserted, created = (
        fhirpy_client.resources("Patient")
        .search(identifier=f"{MRN}|{new_mrn}")
        .update(fhirpy_client.resource("Patient", identifier=[{"system": MRN, "value": new_mrn}]))
    )
    assert created
    assert upserted.id != first.id

    for _ in range(3):
        fhirpy_client.resource("Patient", identifier=[{"system": MRN, "value": _mrn()}]).save()
    everyone = fhirpy_client.resources("Patient").limit(2).fetch_all()  # follows absolute next links
    assert len(everyone) == 5
    assert len({p.id for p in everyone}) == 5


# --- fhirclient (SMART on FHIR) -----------------------------------------------------------------


def test_fhirclient_reads_the_capability_statement(smart: smart_client.FHIRClient) -> None:
    smart.server.get_capability(force=True)  # GET /fhir/metadata, parsed by fhirclient's strict models
    statement = smart.server.capabilityStatement
    assert statement.kind == "instance"
    assert statement.fhirVersion == "4.0.1"
    resources = {r.type: r for rest in statement.rest for r in rest.resource or []}
    assert {"Patient", "QuestionnaireResponse", "Observation", "Encounter"} <= set(resources)
    patient_interactions = {i.code for i in resources["Patient"].interaction}
    assert {"create", "read", "update", "delete", "search-type"} <= patient_interactions


def test_fhirclient_patient_and_time_entry(smart: smart_client.FHIRClient) -> None:
    server = smart.server
    mrn = _mrn()
    created = Patient(
        {
            "resourceType": "Patient",
            "identifier": [{"system": MRN, "value": mrn}],
            "name": [{"family": "Nguyen", "given": ["Linh"]}],
            "gender": "female",
        }
    ).create(server)
    assert created is not None  # the body of the 201
    pid = created["id"]
    assert created["meta"]["versionId"] == "1"

    patient = Patient.read(pid, server)
    assert patient.id == pid
    assert patient.identifier[0].value == mrn
    assert patient.name[0].family == "Nguyen"

    found = list(Patient.where(struct={"identifier": f"{MRN}|{mrn}"}).perform_resources_iter(server))
    assert [p.id for p in found] == [pid]
    assert isinstance(found[0], Patient)

    encounter = Encounter(
        {
            "resourceType": "Encounter",
            "status": "finished",
            "class": {
                "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                "code": "AMB",
                "display": "ambulatory",
            },
            "type": [{"coding": [{"system": ACTIVITY, "code": "follow-up"}]}],
            "subject": {"reference": f"Patient/{pid}"},
            "period": {"start": "2026-01-06T10:00:00-05:00"},
            "length": {"value": 20, "unit": "min", "system": "http://unitsofmeasure.org", "code": "min"},
        }
    )
    stored = encounter.create(server)
    assert stored is not None
    eid = stored["id"]

    entries = list(Encounter.where(struct={"patient": pid}).perform_resources_iter(server))
    assert [e.id for e in entries] == [eid]
    [entry] = entries
    assert entry.class_fhir.code == "AMB"
    assert entry.type[0].coding[0].code == "follow-up"
    assert entry.length.value == 20
    assert entry.subject.reference == f"Patient/{pid}"
    assert Encounter.read(eid, server).status == "finished"

    stored_patient = Patient.read(pid, server)
    stored_patient.active = True
    assert stored_patient.update(server)["meta"]["versionId"] == "2"
    assert Patient.read(pid, server).active is True


def test_fhirclient_paging_and_delete(smart: smart_client.FHIRClient) -> None:
    server = smart.server
    ids = [Patient({"identifier": [{"system": MRN, "value": _mrn()}]}).create(server)["id"] for _ in range(5)]
    pages = list(Patient.where(struct={"_count": "2"}).perform_iter(server))
    assert [len(page.entry) for page in pages] == [2, 2, 1]
    assert pages[0].total == 5
    found = [e.resource.id for page in pages for e in page.entry]
    assert sorted(found) == sorted(ids)

    Patient.read(ids[0], server).delete(server)
    with pytest.raises(requests.HTTPError) as gone:
        Patient.read(ids[0], server)
    assert gone.value.response.status_code == 410
