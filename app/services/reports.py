"""The read side: billing months, care statuses and the registry, computed from the fact tables by
the pure cores, with the scope checks and audit of each read and a per-process cache per data
version.

Used by every edge: the dashboard JSON (``app.api.routes``), the FHIR views (``app.fhir.views``),
the registry pages (``app.web``) and the ``cocm billing`` command. Query parameters are parsed at
the edge (``app.api.params``) and results rendered there (``app.api.render``).

Choices:
- ``GET /api/v1/billing`` lists the patients with counted minutes in the month (api.md: "only
  patients with minutes that month"; ``minutes`` is the counted minutes). A patient whose only time
  did not count is left out there but answers on the per-patient route, with notes saying why.
- The registry lists every live patient with something the registry tracks (a time entry, an
  EpisodeOfCare or a measurement); a Patient with none of these is not part of the caseload.
- "today" is the date in the clinic time zone (``COCM_TIMEZONE``).
- With a read replica (``COCM_DATABASE_READ_URL``) the month-wide reads (the billing month and
  its CSV, the registry) read the replica and may lag it; one patient's billing or care status
  reads the primary, so a client that has just written sees its write there.
"""

from __future__ import annotations

import gc
import threading
from bisect import bisect_right
from collections import Counter, OrderedDict
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Generic, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from app import picture
from app.care.registry import SortedRegistry
from app.care.status import CareStatus
from app.domain import BillingMonth, Month, PatientFacts
from app.errors import NotFound
from app.metrics import BILLING_RUNS
from app.notifications.subscriptions import SAFETY_RISK
from app.services.resources import ResourceService
from app.settings import Settings
from app.store import outbox
from app.store.models import Resource
from app.store.reads import CHUNK, FactReader

T = TypeVar("T")


def today(settings: Settings) -> date:
    return datetime.now(settings.zone).date()


def month_window(month: Month, settings: Settings) -> tuple[datetime, datetime]:
    """The month's first and next month's first instant in the clinic time zone."""
    first, following = month.first_day, month.next().first_day
    zone = settings.zone
    return (
        datetime(first.year, first.month, first.day, tzinfo=zone),
        datetime(following.year, following.month, following.day, tzinfo=zone),
    )


# The resource types billing, care status and the registry are computed from (and expose).
FACT_TYPES = (
    "Patient",
    "QuestionnaireResponse",
    "Observation",
    "Encounter",
    "EpisodeOfCare",
    "Consent",
    "Condition",
)


def require_facts(service: ResourceService, *extra: str) -> None:
    """Dashboard reads need read scopes on every type they are computed from (issue: scopes)."""
    for rtype in FACT_TYPES:
        service.require(rtype, "r", *extra)


@contextmanager
def collector_paused() -> Iterator[None]:
    """Pause Python's cycle collector while a whole-tenant computation builds its many small,
    acyclic objects: its generation-2 passes rescan the growing heap and made the 4,000-patient
    month 20% slower than four 1,000-patient months (benchmarks/RESULTS.md). Reference counting
    still frees everything; the collector resumes (if it was on) afterwards."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


class ResultCache(Generic[T]):
    """A small per-process cache of whole-tenant computations (a month's billing, the registry),
    each stored with the tenant's data version it was computed at: walking the pages of a
    4,000-patient month computes it once, not once per page. Any write to a fact-bearing resource
    changes the version, so a hit is always what a fresh computation would give, and a result of
    an older version is replaced, not kept beside the new one (versions only move forward): brought
    up to date by recomputing only the patients written since (``refresh``), not the whole tenant.
    Several workers each keep their own."""

    def __init__(self, size: int = 8) -> None:
        self.size = size
        self.entries: OrderedDict[Hashable, tuple[Hashable, T]] = OrderedDict()
        self.lock = threading.Lock()

    def get(
        self,
        key: Hashable,
        version: Hashable,
        compute: Callable[[], T],
        refresh: Callable[[T, Any], T | None] | None = None,
    ) -> T:
        """The result at ``version``: the cached one, else ``refresh(older result, its version)``
        (the older result brought up to date, or None), else ``compute()``."""
        with self.lock:
            entry = self.entries.get(key)
            if entry is not None and entry[0] == version:
                self.entries.move_to_end(key)
                return entry[1]
        with collector_paused():
            refreshed = refresh(entry[1], entry[0]) if entry is not None and refresh is not None else None
            value = compute() if refreshed is None else refreshed
        with self.lock:
            self.entries[key] = (version, value)
            self.entries.move_to_end(key)
            while len(self.entries) > self.size:
                self.entries.popitem(last=False)
        return value


MONTHS: ResultCache[MonthRun] = ResultCache()
REGISTRIES: ResultCache[SortedRegistry] = ResultCache()


@contextmanager
def month_wide_reads(service: ResourceService) -> Iterator[Session]:
    """The session for month-wide billing and registry reads: the read replica's, in a read
    transaction of its own that ends with the block, when ``COCM_DATABASE_READ_URL`` is set; else
    the request's own session (its transaction, which also holds the audit row)."""
    if service.reads is service.session:
        yield service.session
        return
    with service.reads.begin():
        yield service.reads


def patient_names(service: ResourceService, patient_ids: list[str]) -> dict[str, str | None]:
    """Display names for a page of rows (month-wide reads)."""
    with month_wide_reads(service) as session:
        return FactReader(session, service.tenant).patient_names(patient_ids)


def patients_facts(
    service: ResourceService, patient_ids: list[str]
) -> tuple[dict[str, str | None], dict[str, PatientFacts]]:
    """Names and every fact of a page of patients (the registry page's trend and minutes)."""
    with month_wide_reads(service) as session:
        reader = FactReader(session, service.tenant)
        return reader.patient_names(patient_ids), dict(reader.facts(patient_ids))


def data_version(session: Session, tenant: str) -> tuple[Any, ...]:
    """The latest change to each fact-bearing type of the tenant (one index probe per type; a
    delete changes it too, being a new version). Read where the facts are read, so that a replica's
    results are cached under the replica's version."""
    return tuple(
        session.scalar(
            select(Resource.last_updated)
            .where(Resource.tenant == tenant, Resource.type == rtype)
            .order_by(Resource.last_updated.desc())
            .limit(1)
        )
        for rtype in FACT_TYPES
    )


def _bill(patient_id: str, facts: PatientFacts, month: Month, settings: Settings, on: date) -> BillingMonth:
    return picture.billing_month(patient_id, facts, month, settings.billing, on)


def patient_billing(
    service: ResourceService, settings: Settings, patient_id: str, month: Month
) -> BillingMonth:
    facts = _patient_facts(service, patient_id, "billing")
    BILLING_RUNS.labels("patient").inc()
    return _bill(patient_id, facts, month, settings, today(settings))


def _patient_facts(service: ResourceService, patient_id: str, interaction: str) -> PatientFacts:
    """One live patient's facts, read from the primary after the scope checks, audited as a read
    (``interaction``) of the patient."""
    require_facts(service)
    reader = FactReader(service.session, service.tenant)
    service.audit("R", interaction, "Patient", patient_id)
    if not reader.live_patient_ids([patient_id]):
        raise NotFound(f"Patient/{patient_id} is not known")
    return reader.facts([patient_id]).get(patient_id, PatientFacts())


@dataclass(frozen=True)
class MonthRun:
    """A month's billing for the tenant, with what every page needs computed once."""

    months: list[BillingMonth]  # ordered by patient id
    patient_ids: list[str]
    totals: dict[str, int]  # units per code over all patients (all pages, blocked included)

    @classmethod
    def of(cls, months: list[BillingMonth]) -> MonthRun:
        totals: Counter[str] = Counter()
        for month in months:
            for code in month.codes:
                totals[code.code] += code.units
        return cls(months, [m.patient_id for m in months], dict(sorted(totals.items())))

    def page_after(self, patient_id: str | None, limit: int) -> tuple[list[BillingMonth], str | None]:
        """The page after ``patient_id`` and the id to continue after (None on the last page)."""
        start = 0 if patient_id is None else bisect_right(self.patient_ids, patient_id)
        page = self.months[start : start + limit]
        return page, page[-1].patient_id if start + limit < len(self.months) else None


def month_billing(service: ResourceService, settings: Settings, month: Month) -> list[BillingMonth]:
    """Every patient with counted minutes in the month, ordered by patient id."""
    return month_billing_run(service, settings, month).months


def begin_month_billing(service: ResourceService) -> None:
    """What every month-wide billing read does first: the scope checks, the audit row, the metric."""
    require_facts(service, "s")
    service.audit("E", "billing-month")
    BILLING_RUNS.labels("month").inc()


def month_billing_run(service: ResourceService, settings: Settings, month: Month) -> MonthRun:
    """The month with its totals and page index (cached per data version, see ResultCache)."""
    begin_month_billing(service)
    on = today(settings)
    with month_wide_reads(service) as session:
        reader = FactReader(session, service.tenant)

        def compute() -> MonthRun:
            return MonthRun.of(list(_billed_months(reader, settings, month, on)))

        version = CachedVersion.read(session, service.tenant)

        def refresh(old: MonthRun, old_version: CachedVersion) -> MonthRun | None:
            changed = _changed_since(reader, old_version, version, settings)
            if changed is None:
                return None
            start, end = month_window(month, settings)
            billed = set(reader.patients_with_entries(start, end)) & changed
            facts = reader.facts(sorted(billed))
            fresh = [_bill(pid, facts.get(pid, PatientFacts()), month, settings, on) for pid in billed]
            months = [m for m in old.months if m.patient_id not in changed] + [
                m for m in fresh if m.minutes > 0
            ]
            return MonthRun.of(sorted(months, key=lambda m: m.patient_id))

        key = (service.tenant, str(month), on)
        return MONTHS.get(key, version, compute, refresh)


@dataclass(frozen=True)
class CachedVersion:
    """A ``data_version`` with the moment it was read (not part of its identity)."""

    latest: tuple[Any, ...]
    read_at: datetime = field(compare=False)

    @classmethod
    def read(cls, session: Session, tenant: str) -> CachedVersion:
        read_at = datetime.now(UTC)  # taken before the reads
        return cls(data_version(session, tenant), read_at)


def _changed_since(
    reader: FactReader, version: CachedVersion, now: CachedVersion, settings: Settings
) -> set[str] | None:
    """The patients written since ``version`` was read (``now``: the current version): per type,
    whatever is newer than what ``version`` saw, and anything stamped within
    ``COCM_CACHE_REFRESH_MARGIN_SECONDS`` before it was read (a transaction commits after it
    stamps its writes, so such a write may have committed after the read). None (recompute
    everything) when the data went back (a replica behind, a restored backup) or the patients
    written are more than half the tenant's."""
    pairs = zip(version.latest, now.latest, strict=True)
    if any(old is not None and (new is None or new < old) for old, new in pairs):
        return None
    horizon = version.read_at - timedelta(seconds=settings.cache_refresh_margin_seconds)
    since = [
        (rtype, None if at is None else min(at, horizon))
        for rtype, at in zip(FACT_TYPES, version.latest, strict=True)
    ]
    changed = reader.changed_patients(since)
    return None if 2 * len(changed) > reader.patient_total() else changed


def stream_month_billing(
    sessions: sessionmaker[Session], tenant: str, settings: Settings, month: Month
) -> Iterator[BillingMonth]:
    """The month's billing patient by patient, ordered by patient id, computed ``CHUNK`` patients
    at a time in a read transaction of its own (a snapshot on PostgreSQL too): memory stays flat
    however many patients the month has (the CSV export). The caller has run
    ``begin_month_billing`` in the request's transaction."""
    with sessions() as session, session.begin():
        if session.get_bind().dialect.name == "postgresql":
            session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        yield from _billed_months(FactReader(session, tenant), settings, month, today(settings), chunk=CHUNK)


def _billed_months(
    reader: FactReader, settings: Settings, month: Month, on: date, *, chunk: int | None = None
) -> Iterator[BillingMonth]:
    """Every patient with counted minutes in the month, ordered by patient id; facts read for
    ``chunk`` patients at a time (all at once by default)."""
    start, end = month_window(month, settings)
    patient_ids = reader.patients_with_entries(start, end)
    size = chunk or max(len(patient_ids), 1)
    for first in range(0, len(patient_ids), size):
        some = patient_ids[first : first + size]
        facts = reader.facts(some)
        for patient_id in some:
            billed = _bill(patient_id, facts.get(patient_id, PatientFacts()), month, settings, on)
            if billed.minutes > 0:
                yield billed


def _status(patient_id: str, facts: PatientFacts, as_of: date, settings: Settings) -> CareStatus:
    return picture.status(patient_id, facts, as_of, settings.billing, settings.care)


def patient_care_status(
    service: ResourceService, settings: Settings, patient_id: str, as_of: date
) -> CareStatus:
    return _status(patient_id, _patient_facts(service, patient_id, "care-status"), as_of, settings)


def sorted_registry(service: ResourceService, settings: Settings, as_of: date) -> SortedRegistry:
    """Care status of every patient in care, in urgency order (audited as one registry read)."""
    require_facts(service, "s")
    service.audit("E", "registry")
    with month_wide_reads(service) as session:
        reader = FactReader(session, service.tenant)

        def compute() -> SortedRegistry:
            patient_ids = reader.patients_in_care()
            facts = reader.facts(patient_ids)
            return SortedRegistry(
                _status(pid, facts.get(pid, PatientFacts()), as_of, settings) for pid in patient_ids
            )

        version = CachedVersion.read(session, service.tenant)

        def refresh(old: SortedRegistry, old_version: CachedVersion) -> SortedRegistry | None:
            changed = _changed_since(reader, old_version, version, settings)
            if changed is None:
                return None
            in_care = set(reader.patients_in_care()) & changed
            facts = reader.facts(sorted(in_care))
            kept = [item for item in old.items if item.patient_id not in changed]
            fresh = [_status(pid, facts.get(pid, PatientFacts()), as_of, settings) for pid in in_care]
            return SortedRegistry(kept + fresh)

        key = (service.tenant, as_of)
        return REGISTRIES.get(key, version, compute, refresh)


def safety_alerts(
    service: ResourceService, patient_ids: list[str]
) -> dict[str, tuple[datetime, datetime | None]]:
    """Per patient, when the last safety-risk alert was raised and first delivered (None: not yet);
    patients without one are absent (notifications.md; the registry page shows it). A caller who
    may not read Subscriptions sees none (the page does not need them)."""
    if not patient_ids or not service.permits("Subscription", "r"):
        return {}
    return outbox.latest_alerts(service.session, service.tenant, SAFETY_RISK, patient_ids)
