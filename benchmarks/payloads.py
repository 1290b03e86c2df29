"""The request bodies of the benchmark: a 9-item PHQ-9 QuestionnaireResponse (the US Core example's
nine scored items) and transaction Bundles of clinic data, as an EHR or integration engine sends them.

Per patient a load Bundle carries 8 entries: Patient (with an MRN identifier), an active treatment
Consent, an initiating-visit Encounter (99214), four care-manager time-entry Encounters of 20
minutes in the billed month and a PHQ-9 total-score Observation.
"""

from __future__ import annotations

import random
import uuid
from typing import Any

LOINC = "http://loinc.org"
ACTIVITY = "http://cocm-api.org/fhir/CodeSystem/cocm-activity"
CPT = "http://www.ama-assn.org/go/cpt"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
MRN = "urn:oid:2.16.840.1.113883.3.4242.1"

BILLED_MONTH = "2026-10"  # a past month on the benchmark's clock
ENROLLED_ON = "2026-09-02"
REGISTRY_AS_OF = "2026-10-31"
ENTRIES_PER_PATIENT = 8
TIME_ENTRIES_PER_PATIENT = 4

_PHQ9_ITEMS = [
    ("44250-9", "Little interest or pleasure in doing things?"),
    ("44255-8", "Feeling down, depressed, or hopeless?"),
    ("44259-0", "Trouble falling or staying asleep, or sleeping too much"),
    ("44254-1", "Feeling tired or having little energy"),
    ("44251-7", "Poor appetite or overeating"),
    (
        "44258-2",
        "Feeling bad about yourself-or that you are a failure or have let yourself or your family down",
    ),
    ("44252-5", "Trouble concentrating on things, such as reading the newspaper or watching television"),
    (
        "44253-3",
        "Moving or speaking so slowly that other people could have noticed. Or the opposite-being so "
        "fidgety or restless that you have been moving around a lot more than usual",
    ),
    ("44260-8", "Thoughts that you would be better off dead, or of hurting yourself in some way"),
]
_ANSWERS = [
    ("LA6568-5", "Not at all"),
    ("LA6569-3", "Several days"),
    ("LA6570-1", "More than half the days"),
    ("LA6571-9", "Nearly every day"),
]
PHQ9_ANSWERS = [2, 2, 2, 2, 1, 1, 2, 0, 0]  # total 12, item 9 = 0


def phq9_response(patient_ref: str) -> dict[str, Any]:
    """The 9-item PHQ-9 QuestionnaireResponse of the US Core example (total 12)."""
    return {
        "resourceType": "QuestionnaireResponse",
        "meta": {
            "profile": ["http://hl7.org/fhir/us/core/StructureDefinition/us-core-questionnaireresponse"]
        },
        "questionnaire": "http://hl7.org/fhir/us/core/Questionnaire/phq-9-example",
        "status": "completed",
        "subject": {"reference": patient_ref},
        "authored": "2026-10-15T20:50:32.718Z",
        "author": {"reference": "Practitioner/practitioner-1"},
        "item": [
            {
                "linkId": f"/{link}",
                "text": text,
                "answer": [
                    {
                        "valueCoding": {
                            "system": LOINC,
                            "code": _ANSWERS[a][0],
                            "display": _ANSWERS[a][1],
                        }
                    }
                ],
            }
            for (link, text), a in zip(_PHQ9_ITEMS, PHQ9_ANSWERS, strict=True)
        ],
    }


def _entry(resource: dict[str, Any]) -> dict[str, Any]:
    return {
        "fullUrl": f"urn:uuid:{uuid.uuid4()}",
        "resource": resource,
        "request": {"method": "POST", "url": resource["resourceType"]},
    }


def patient_entries(
    rng: random.Random, number: int | None, month: str = BILLED_MONTH
) -> list[dict[str, Any]]:
    """The 8 entries of one enrolled patient; ``number`` gives the Patient an MRN (None: no
    identifier, so that re-posting the same Bundle creates new resources)."""
    patient: dict[str, Any] = {
        "resourceType": "Patient",
        "name": [{"use": "official", "family": f"Family{rng.randrange(10**6):06d}", "given": ["Alex"]}],
        "gender": rng.choice(["female", "male"]),
        "birthDate": f"{rng.randrange(1940, 2005)}-{rng.randrange(1, 13):02d}-{rng.randrange(1, 28):02d}",
    }
    if number is not None:
        patient["identifier"] = [{"system": MRN, "value": f"MRN{number:08d}"}]
    p = _entry(patient)
    ref = {"reference": p["fullUrl"]}
    consent = {
        "resourceType": "Consent",
        "status": "active",
        "scope": {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "treatment"}]
        },
        "category": [{"coding": [{"system": LOINC, "code": "59284-0"}]}],
        "patient": ref,
        "dateTime": ENROLLED_ON,
    }
    visit = {
        "resourceType": "Encounter",
        "status": "finished",
        "class": {"system": ACT_CODE, "code": "AMB"},
        "type": [{"coding": [{"system": CPT, "code": "99214"}]}],
        "subject": ref,
        "period": {"start": f"{ENROLLED_ON}T09:00:00Z", "end": f"{ENROLLED_ON}T09:30:00Z"},
    }
    entries = [p, _entry(consent), _entry(visit)]
    for k in range(TIME_ENTRIES_PER_PATIENT):
        day = 3 + 6 * k + rng.randrange(3)
        entries.append(
            _entry(
                {
                    "resourceType": "Encounter",
                    "status": "finished",
                    "class": {"system": ACT_CODE, "code": "AMB"},
                    "type": [{"coding": [{"system": ACTIVITY, "code": "follow-up"}]}],
                    "subject": ref,
                    "period": {"start": f"{month}-{day:02d}T15:00:00Z"},
                    "length": {
                        "value": 20,
                        "unit": "min",
                        "system": "http://unitsofmeasure.org",
                        "code": "min",
                    },
                }
            )
        )
    entries.append(
        _entry(
            {
                "resourceType": "Observation",
                "status": "final",
                "category": [
                    {
                        "coding": [
                            {
                                "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                "code": "survey",
                            }
                        ]
                    }
                ],
                "code": {"coding": [{"system": LOINC, "code": "44261-6"}]},
                "subject": ref,
                "effectiveDateTime": f"{month}-{10 + rng.randrange(10):02d}T10:00:00Z",
                "valueInteger": rng.randrange(5, 27),
            }
        )
    )
    return entries


def transaction(entries: list[dict[str, Any]]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def throughput_bundle(size: int = 250, seed: int = 7) -> dict[str, Any]:
    """A transaction of exactly ``size`` entries without identifiers (31 patients x 8 entries and
    a Patient + Consent for 250), so that posting it again creates everything again."""
    rng = random.Random(seed)
    entries: list[dict[str, Any]] = []
    while len(entries) + ENTRIES_PER_PATIENT <= size:
        entries += patient_entries(rng, None, month="2026-08")
    if len(entries) < size:
        entries += patient_entries(rng, None, month="2026-08")[: size - len(entries)]
    return transaction(entries)


def load_bundles(first: int, count: int, per_bundle: int = 31, seed: int = 1) -> list[dict[str, Any]]:
    """Transactions that enroll patients ``first`` .. ``first + count - 1`` (``per_bundle`` patients,
    248 entries, per Bundle)."""
    rng = random.Random(seed * 1_000_003 + first)
    bundles = []
    for start in range(first, first + count, per_bundle):
        entries: list[dict[str, Any]] = []
        for number in range(start, min(start + per_bundle, first + count)):
            entries += patient_entries(rng, number)
        bundles.append(transaction(entries))
    return bundles
