"""Builders for clinic scenarios sent through the FHIR API (real payload shapes)."""

from __future__ import annotations

from typing import Any

from app.measures.instruments import ANSWERS, PHQ9
from tests.conftest import Fhir

ACTIVITY = "http://cocm-api.org/fhir/CodeSystem/cocm-activity"
CPT = "http://www.ama-assn.org/go/cpt"


def observation(pid: str, when: str, code: str, **value: Any) -> dict[str, Any]:
    """A survey Observation with a LOINC ``code`` for ``pid`` at ``when``, valued by ``value``
    (``valueInteger=12``, ``valueCodeableConcept=...``, ``component=[...]``)."""
    return {
        "resourceType": "Observation",
        "status": "final",
        "category": [
            {
                "coding": [
                    {"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "survey"}
                ]
            }
        ],
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "subject": {"reference": f"Patient/{pid}"},
        "effectiveDateTime": when,
        **value,
    }


def phq9_response(pid: str, when: str, answers: list[int], **extra: Any) -> dict[str, Any]:
    """A PHQ-9 QuestionnaireResponse with LOINC linkIds and LA answer codes (LL358-3)."""
    codes = [next(a.code for a in ANSWERS.values() if a.score == score) for score in range(4)]
    return {
        "resourceType": "QuestionnaireResponse",
        "status": "completed",
        "subject": {"reference": f"Patient/{pid}"},
        "authored": when,
        "item": [
            {"linkId": link, "answer": [{"valueCoding": {"system": "http://loinc.org", "code": codes[a]}}]}
            for link, a in zip(PHQ9.item_codes, answers, strict=True)
        ],
        **extra,
    }


class Clinic:
    def __init__(self, fhir: Fhir) -> None:
        self.fhir = fhir

    def patient(self, family: str = "Rivera", given: str = "Ana") -> str:
        return self.fhir.patient(name=[{"family": family, "given": [given]}])

    def consent(self, pid: str, on: str = "2026-01-02") -> str:
        return str(
            self.fhir.create(
                {
                    "resourceType": "Consent",
                    "status": "active",
                    "scope": {
                        "coding": [
                            {
                                "system": "http://terminology.hl7.org/CodeSystem/consentscope",
                                "code": "treatment",
                            }
                        ]
                    },
                    "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
                    "patient": {"reference": f"Patient/{pid}"},
                    "dateTime": on,
                }
            )["id"]
        )

    def visit(self, pid: str, on: str = "2026-01-02", code: str = "99214") -> str:
        return str(
            self.fhir.create(
                {
                    "resourceType": "Encounter",
                    "status": "finished",
                    "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
                    "type": [{"coding": [{"system": CPT, "code": code}]}],
                    "subject": {"reference": f"Patient/{pid}"},
                    "period": {"start": f"{on}T09:00:00Z", "end": f"{on}T09:30:00Z"},
                }
            )["id"]
        )

    def minutes(
        self,
        pid: str,
        start: str,
        minutes: float,
        activity: str = "follow-up",
        status: str = "finished",
        **extra: Any,
    ) -> dict[str, Any]:
        return self.fhir.create(
            {
                "resourceType": "Encounter",
                "status": status,
                "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
                "type": [{"coding": [{"system": ACTIVITY, "code": activity}]}],
                "subject": {"reference": f"Patient/{pid}"},
                "period": {"start": start},
                "length": {
                    "value": minutes,
                    "unit": "min",
                    "system": "http://unitsofmeasure.org",
                    "code": "min",
                },
                **extra,
            }
        )

    def score(self, pid: str, when: str, value: int, code: str = "44261-6") -> dict[str, Any]:
        return self.fhir.create(observation(pid, when, code, valueInteger=value))

    def phq9(self, pid: str, when: str, answers: list[int]) -> dict[str, Any]:
        return self.fhir.create(phq9_response(pid, when, answers))

    def enrolled(self, family: str = "Rivera", on: str = "2026-01-02") -> str:
        """A patient with consent and an initiating visit on ``on``."""
        pid = self.patient(family)
        self.consent(pid, on)
        self.visit(pid, on)
        return pid
