"""The measures as FHIR R4 ``Measure`` resources and their results as ``MeasureReport``
(quality.md). Pure: JSON dicts out.

Report types (``$evaluate-measure``'s ``reportType``): ``summary`` (R4's ``population`` is read as
the same), ``subject-list`` (each population's ``subjectResults`` references a contained ``List``
of its patients) and ``subject`` (``type`` individual, for one ``subject``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final, Literal

from app.quality.measures import MEASURES, POPULATIONS, MeasureDefinition, MeasureResult

MEASURE_BASE: Final = "http://cocm-api.org/fhir/Measure/"
GROUP_SYSTEM: Final = "http://cocm-api.org/fhir/CodeSystem/measure-group"
POPULATION_SYSTEM: Final = "http://terminology.hl7.org/CodeSystem/measure-population"
SCORING_SYSTEM: Final = "http://terminology.hl7.org/CodeSystem/measure-scoring"
IMPROVEMENT_SYSTEM: Final = "http://terminology.hl7.org/CodeSystem/measure-improvement-notation"

ReportType = Literal["summary", "subject-list", "subject"]
REPORT_TYPES: Final[dict[str, ReportType]] = {
    "summary": "summary",
    "population": "summary",
    "subject-list": "subject-list",
    "subject": "subject",
    "individual": "subject",
}
_MEASURE_REPORT_TYPE: Final[dict[ReportType, str]] = {
    "summary": "summary",
    "subject-list": "subject-list",
    "subject": "individual",
}


def canonical(measure_id: str) -> str:
    return MEASURE_BASE + measure_id


def _concept(system: str, code: str, display: str | None = None) -> dict[str, Any]:
    coding = {"system": system, "code": code}
    if display:
        coding["display"] = display
    return {"coding": [coding]}


IMPROVEMENT = _concept(IMPROVEMENT_SYSTEM, "increase", "Increased score indicates improvement")


def _population_text(definition: MeasureDefinition, code: str, numerator: str) -> str:
    return {
        "initial-population": definition.initial_population,
        "denominator": "Equals the initial population",
        "denominator-exclusion": definition.exclusion or "None: the measure has no exclusions",
        "numerator": numerator,
    }[code]


def measure_resource(definition: MeasureDefinition) -> dict[str, Any]:
    """The ``Measure`` (read-only) of one definition."""
    groups = []
    for group in definition.groups:
        texts = {code: _population_text(definition, code, group.numerator) for code in POPULATIONS}
        populations = [
            {
                "code": _concept(POPULATION_SYSTEM, code),
                "description": text,
                "criteria": {"language": "text/plain", "expression": text},
            }
            for code, text in texts.items()
        ]
        entry: dict[str, Any] = {"description": group.title, "population": populations}
        if group.code is not None:
            entry["code"] = _concept(GROUP_SYSTEM, group.code, group.title)
        groups.append(entry)
    return {
        "resourceType": "Measure",
        "id": definition.id,
        "url": canonical(definition.id),
        "version": "1",
        "name": "".join(part.capitalize() for part in definition.id.split("-")),
        "title": definition.title,
        "status": "active",
        "experimental": False,
        "publisher": "cocm-api",
        "description": definition.description,
        "subjectCodeableConcept": _concept("http://hl7.org/fhir/resource-types", "Patient"),
        "relatedArtifact": [{"type": "derived-from", "display": definition.follows}],
        "scoring": _concept(SCORING_SYSTEM, "proportion"),
        "improvementNotation": IMPROVEMENT,
        "group": groups,
    }


MEASURE_RESOURCES: Final[dict[str, dict[str, Any]]] = {
    mid: measure_resource(m) for mid, m in MEASURES.items()
}


def measure_report(
    result: MeasureResult, report_type: ReportType, generated: datetime, subject: str | None = None
) -> dict[str, Any]:
    """The ``MeasureReport`` of ``result``; ``subject`` ("Patient/{id}") for an individual report."""
    report: dict[str, Any] = {
        "resourceType": "MeasureReport",
        "status": "complete",
        "type": _MEASURE_REPORT_TYPE[report_type],
        "measure": canonical(result.measure.id),
        "date": generated.isoformat(),
        "period": {"start": result.period.start.isoformat(), "end": result.period.end.isoformat()},
        "improvementNotation": IMPROVEMENT,
    }
    if report_type == "subject" and subject is not None:
        report["subject"] = {"reference": subject}
    contained: list[dict[str, Any]] = []
    groups = []
    for position, (group, definition) in enumerate(zip(result.groups, result.measure.groups, strict=True)):
        populations = []
        for code in POPULATIONS:
            population: dict[str, Any] = {
                "code": _concept(POPULATION_SYSTEM, code),
                "count": group.count(code),
            }
            if report_type == "subject-list":
                list_id = f"group-{position}-{code}"
                contained.append(
                    {
                        "resourceType": "List",
                        "id": list_id,
                        "status": "current",
                        "mode": "snapshot",
                        "title": f"{definition.title}: {code}",
                        **(
                            {
                                "entry": [
                                    {"item": {"reference": f"Patient/{pid}"}} for pid in group.subjects[code]
                                ]
                            }
                            if group.subjects[code]
                            else {
                                "emptyReason": _concept(
                                    "http://terminology.hl7.org/CodeSystem/list-empty-reason", "nilknown"
                                )
                            }
                        ),
                    }
                )
                population["subjectResults"] = {"reference": f"#{list_id}"}
            populations.append(population)
        entry: dict[str, Any] = {"population": populations}
        if definition.code is not None:
            entry["code"] = _concept(GROUP_SYSTEM, definition.code, definition.title)
        if group.score is not None:
            entry["measureScore"] = {"value": float(group.score)}
        groups.append(entry)
    if contained:
        report["contained"] = contained
    report["group"] = groups
    return report
