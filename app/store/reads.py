"""Set-based reads of the fact tables for the billing and care cores.

A month's billing for every patient, or the whole registry, is a handful of queries (one per fact
table), never one query per patient. Rows come back as the core's plain value types, grouped by
patient. Deleted patients are left out.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from sqlalchemy import ColumnElement, Row, Select, func, or_, select
from sqlalchemy.orm import Session

from app.domain import (
    ConsentFact,
    Diagnosis,
    EpisodeOfCareFact,
    Measurement,
    PatientFacts,
    Person,
    Program,
    TimeEntry,
    VisitFact,
)
from app.quality.diagnoses import person
from app.store.models import (
    Base,
    ConsentFactRow,
    DiagnosisFactRow,
    EpisodeOfCareFactRow,
    MeasurementRow,
    Resource,
    TimeEntryRow,
    VisitFactRow,
)

CHUNK = 500  # patient ids per IN (...) list: well under every driver's parameter limit


def _columns(model: type[Base]) -> Select[Any]:
    """SELECT of a table's columns as plain rows: no ORM objects to build for read-only facts."""
    return select(*(getattr(model, attr.key) for attr in model.__mapper__.column_attrs))


def _chunks(ids: Sequence[str]) -> Iterable[Sequence[str]]:
    for start in range(0, len(ids), CHUNK):
        yield ids[start : start + CHUNK]


class FactReader:
    def __init__(self, session: Session, tenant: str) -> None:
        self.session = session
        self.tenant = tenant
        self.patient_count: int | None = None  # live patients of the tenant, once known

    def _rows(self, model: type[Base], patient_ids: Sequence[str]) -> Iterator[Row[Any]]:
        """The rows of ``model`` for ``patient_ids``: ``IN`` lists of up to ``CHUNK`` patients, or,
        when more than ``CHUNK`` patients making at least half of the tenant are asked for (the
        month-end run, the registry), the tenant's rows in one pass, kept when their patient is
        asked for. One read per table then costs less than many ``IN`` lists, reads at most twice
        the rows needed, and does not depend on the planner: PostgreSQL planned long ``IN`` lists
        as scans until its statistics were gathered (benchmarks/RESULTS.md)."""
        query = _columns(model).where(model.tenant == self.tenant)  # type: ignore[attr-defined]
        patient = model.patient_id  # type: ignore[attr-defined]
        if len(patient_ids) > CHUNK and 2 * len(patient_ids) >= self._patient_count():
            wanted = set(patient_ids)
            for row in self.session.execute(query):
                if row.patient_id in wanted:
                    yield row
            return
        for chunk in _chunks(patient_ids):
            yield from self.session.execute(query.where(patient.in_(chunk)))

    def _live_patients(self) -> tuple[ColumnElement[bool], ...]:
        return (Resource.tenant == self.tenant, Resource.type == "Patient", Resource.deleted.is_(False))

    def _patient_count(self) -> int:
        if self.patient_count is None:
            counted = select(func.count()).select_from(Resource).where(*self._live_patients())
            self.patient_count = self.session.scalar(counted) or 0
        return self.patient_count

    def patient_total(self) -> int:
        """How many live patients the tenant has."""
        return self._patient_count()

    def live_patient_ids(self, ids: Sequence[str] | None = None) -> list[str]:
        """Patients of the tenant that exist and are not deleted (all, or those of ``ids``)."""
        query = select(Resource.id).where(*self._live_patients())
        if ids is None or len(ids) > CHUNK:
            live = self.session.scalars(query).all()
            self.patient_count = len(live)
            return sorted(live if ids is None else set(live).intersection(ids))
        return sorted(self.session.scalars(query.where(Resource.id.in_(ids))).all()) if ids else []

    def changed_patients(self, since: Sequence[tuple[str, datetime | None]]) -> set[str]:
        """Patients with a resource written after ``since`` (per type: written after the instant, or
        any when None): a Patient's own id, else the patient it refers to."""
        conditions = [
            (Resource.type == rtype) & (Resource.last_updated > instant)
            if instant is not None
            else Resource.type == rtype
            for rtype, instant in since
        ]
        rows = self.session.execute(
            select(Resource.type, Resource.id, Resource.patient_id).where(
                Resource.tenant == self.tenant, or_(*conditions)
            )
        )
        changed: set[str] = set()
        for rtype, rid, patient in rows:
            if rtype == "Patient":
                changed.add(rid)
            elif patient is not None:
                changed.add(patient)
        return changed

    def patients_with_entries(self, start: datetime, end: datetime) -> list[str]:
        """Patients with a time entry starting in [start, end)."""
        ids = self.session.scalars(
            select(TimeEntryRow.patient_id)
            .where(TimeEntryRow.tenant == self.tenant, TimeEntryRow.start >= start, TimeEntryRow.start < end)
            .distinct()
        ).all()
        return self.live_patient_ids(list(ids))

    def patients_in_care(self) -> list[str]:
        """Patients with anything the registry tracks: a time entry, an episode or a measurement."""
        ids: set[str] = set()
        for column, table in (
            (TimeEntryRow.patient_id, TimeEntryRow),
            (EpisodeOfCareFactRow.patient_id, EpisodeOfCareFactRow),
            (MeasurementRow.patient_id, MeasurementRow),
        ):
            ids.update(
                self.session.scalars(select(column).where(table.tenant == self.tenant).distinct()).all()
            )
        return self.live_patient_ids(sorted(ids))

    def facts(self, patient_ids: Sequence[str]) -> dict[str, PatientFacts]:
        """Every fact of the given patients, grouped by patient (one query per table, or per table
        and chunk of patients; see ``_rows``)."""
        out: dict[str, PatientFacts] = defaultdict(PatientFacts)
        ids = list(patient_ids)
        for e in self._rows(TimeEntryRow, ids):
            out[e.patient_id].entries.append(
                TimeEntry(
                    e.patient_id, e.start, e.seconds, e.activity, f"Encounter/{e.encounter_id}", e.excluded
                )
            )
        for p in self._rows(EpisodeOfCareFactRow, ids):
            program: Program = "general-bhi" if p.program == "general-bhi" else "cocm"
            out[p.patient_id].episodes_of_care.append(
                EpisodeOfCareFact(
                    p.patient_id, p.start, p.end, p.finished, program, f"EpisodeOfCare/{p.episode_id}"
                )
            )
        for c in self._rows(ConsentFactRow, ids):
            out[c.patient_id].consents.append(
                ConsentFact(c.patient_id, c.active, c.on_date, f"Consent/{c.consent_id}")
            )
        for v in self._rows(VisitFactRow, ids):
            out[v.patient_id].visits.append(
                VisitFact(v.patient_id, v.on_date, v.system, v.code, f"Encounter/{v.encounter_id}")
            )
        for m in self._rows(MeasurementRow, ids):
            out[m.patient_id].measurements.append(
                Measurement(
                    m.patient_id,
                    m.instrument,
                    m.score,
                    m.effective,
                    f"{m.source_type}/{m.source_id}",
                    m.item9,
                    tuple(orjson.loads(m.warnings)),
                )
            )
        for d in self._rows(DiagnosisFactRow, ids):
            out[d.patient_id].diagnoses.append(
                Diagnosis(
                    d.patient_id,
                    d.code,
                    d.display,
                    "exclusion" if d.category == "exclusion" else "depression",
                    d.onset,
                    d.abatement,
                    d.clinically_active,
                    d.refuted,
                    f"Condition/{d.condition_id}",
                )
            )
        return out

    def people(self, patient_ids: Sequence[str], zone: ZoneInfo) -> dict[str, Person]:
        """Birth and death of each patient, from the stored Patient JSON (the quality measures);
        read like ``_rows``: by chunks, or the whole tenant in one pass when most of it is asked for."""
        query = select(Resource.id, Resource.content).where(*self._live_patients())
        wanted = set(patient_ids)
        if len(patient_ids) > CHUNK and 2 * len(patient_ids) >= self._patient_count():
            found = [(rid, content) for rid, content in self.session.execute(query) if rid in wanted]
        else:
            found = [
                (rid, content)
                for chunk in _chunks(sorted(wanted))
                for rid, content in self.session.execute(query.where(Resource.id.in_(chunk)))
            ]
        return {rid: person(orjson.loads(content), zone) for rid, content in found}

    def patient_names(self, patient_ids: Sequence[str]) -> dict[str, str | None]:
        """A display name per patient from the stored Patient JSON (only for a page of rows)."""
        names: dict[str, str | None] = {}
        for chunk in _chunks(list(patient_ids)):
            for rid, content in self.session.execute(
                select(Resource.id, Resource.content).where(
                    Resource.tenant == self.tenant, Resource.type == "Patient", Resource.id.in_(chunk)
                )
            ):
                names[rid] = display_name(orjson.loads(content))
        return names


def display_name(patient: dict[str, Any]) -> str | None:
    """HumanName as people read it: the ``official``/``usual`` name first, its text or given+family."""
    names = [n for n in patient.get("name") or [] if isinstance(n, dict)]
    names.sort(key=lambda n: {"official": 0, "usual": 1}.get(str(n.get("use")), 2))
    for name in names:
        if name.get("text"):
            return str(name["text"])
        parts = [*(name.get("given") or []), name.get("family") or ""]
        text = " ".join(str(p) for p in parts if p)
        if text:
            return text
    return None
