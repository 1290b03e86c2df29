"""The dashboard JSON (api.md, "JSON API for dashboards") as Pydantic models, for the OpenAPI
document that integrators code against. The routes build their JSON directly (no per-request model
round trip on the billing and registry pages); ``tests/api/test_schemas.py`` validates every
route's real responses against these models with unknown fields forbidden, so the document and
the wire format cannot drift apart."""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from app.care.status import Flag, Status

MONTH_PATTERN = r"^\d{4}-\d{2}$"


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CodeUnitsOut(_Out):
    code: str = Field(description="CPT or HCPCS code, e.g. 99492, G2214")
    units: int = Field(ge=1)


class BillingMonthOut(_Out):
    """One patient's calendar month (api.md, "Billing month")."""

    patient_id: str
    month: str = Field(pattern=MONTH_PATTERN)
    setting: Literal["physician", "fqhc_rhc"]
    month_kind: Literal["initial", "subsequent"] | None = Field(description="null: no episode that month")
    episode_start: date | None
    minutes: int = Field(ge=0, description="counted care-manager minutes in the month")
    codes: list[CodeUnitsOut] = Field(description="[] when nothing is supported")
    billable: bool
    blockers: list[str] = Field(description="consent_missing, initiating_visit_missing, month_open")
    notes: list[str] = Field(description="sentences for a biller explaining the result")


class BillingPageOut(_Out):
    month: str = Field(pattern=MONTH_PATTERN)
    items: list[BillingMonthOut] = Field(description="patients with counted minutes, in patient-id order")
    totals: dict[str, int] = Field(description="units per code over all pages, blocked months included")
    next_cursor: str | None


class ScorePointOut(_Out):
    score: int
    date: date


class MeasureOut(_Out):
    baseline: ScorePointOut
    latest: ScorePointOut
    change_percent: float | None = Field(description="(latest - baseline) / baseline * 100, one decimal")
    response: bool
    remission: bool
    severity: str | None
    count: int = Field(ge=1)


class DiagnosisOut(_Out):
    system: Literal["http://hl7.org/fhir/sid/icd-10-cm"]
    code: str = Field(description="ICD-10-CM with its dot (a SNOMED CT code is shown mapped)")
    display: str | None
    category: Literal["depression", "exclusion"] = Field(description="the quality value set it is in")


class CareStatusOut(_Out):
    """A patient's care status as of a date (api.md, "Care status")."""

    patient_id: str
    as_of: date
    status: Status
    episode_start: date | None
    weeks_in_treatment: int | None
    last_contact: date | None
    measures: dict[Literal["PHQ-9", "GAD-7"], MeasureOut | None]
    flags: list[Flag] = Field(description="in the order of measures.md's table")
    diagnoses: list[DiagnosisOut] = Field(description="active CoCM diagnoses as of as_of (quality.md)")


class RegistryItemOut(CareStatusOut):
    name: str | None = Field(description="the Patient's display name")


class RegistryPageOut(_Out):
    as_of: date
    items: list[RegistryItemOut] = Field(description="most urgent first")
    next_cursor: str | None


class PopulationOut(_Out):
    code: Literal["initial-population", "denominator", "denominator-exclusion", "numerator"]
    count: int = Field(ge=0)


class GroupOut(_Out):
    code: str | None = Field(
        description="follow-up, remission or response (depression-response-6m); else null"
    )
    populations: list[PopulationOut]
    score: float | None = Field(
        description="numerator / (denominator - exclusions), 4 places; null when 0 / 0"
    )
    target: float | None = Field(description="the program's target (COCM_TARGET_<ID>), when set")


class MeasureResultOut(_Out):
    id: str
    title: str
    follows: str
    groups: list[GroupOut]


class QualityPeriodOut(_Out):
    period_start: date
    period_end: date
    measures: list[MeasureResultOut]


class QualityOut(QualityPeriodOut):
    """quality.md, "Dashboard JSON": the period and each of its calendar quarters."""

    quarters: list[QualityPeriodOut] = Field(
        description="the calendar quarters the period touches, cut to it"
    )


class ErrorOut(_Out):
    error: str = Field(description="a FHIR issue-type code, e.g. invalid, not-found, login")
    detail: str


def documented(model: type[BaseModel], *errors: int) -> dict[int | str, dict[str, object]]:
    """The ``responses`` of a dashboard route: its 200 model and the JSON error of each status."""
    described = {
        400: "malformed parameter",
        401: "no valid credentials",
        403: "insufficient scope",
        404: "unknown patient",
    }
    return {
        200: {"model": model},
        **{status: {"model": ErrorOut, "description": described[status]} for status in (401, 403, *errors)},
    }
