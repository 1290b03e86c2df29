"""The resource service: what every way in (FHIR routes, Bundles, imports, the demo, reports)
does to read or write a resource, above the repository.

It checks the caller's scopes (403 naming the missing scope), validates the body against the R4
model, records the audit trail (one row per interaction, in the same transaction; a failed one in
its own, see ``audit_failure``) and counts what was ingested. The repository below it persists;
``app.services.uow.transact`` is the unit of work around it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from app.domain import SYSTEM_ACTOR, Actor, BillingConfig, CareConfig, PatientFacts
from app.errors import BusinessRuleViolation, Forbidden, Issue
from app.metrics import INGESTED, SCORING_WARNINGS
from app.notifications.derived import raised_flags, threshold_reached
from app.notifications.subscriptions import (
    BILLING_THRESHOLD_REACHED,
    CARE_FLAG_RAISED,
    TOPICS,
    RaisedEvent,
    check_scheme,
    parse_subscription,
)
from app.resources.validation import patient_reference, validate_resource
from app.services.endpoints import endpoint_problem
from app.store import audit_trail
from app.store.db import WRITE_OPTION
from app.store.models import AuditEventRow
from app.store.repository import Repository, Stored, WriteResult
from app.store.search import reference_id

if TYPE_CHECKING:
    from app.services.uow import WriteGroup

log = logging.getLogger("cocm.audit")

# notifications.md Topics raised by what a write changes in the patient's whole picture.
WATCHED_TOPICS: dict[str, tuple[str, ...]] = {
    "QuestionnaireResponse": (CARE_FLAG_RAISED,),
    "Observation": (CARE_FLAG_RAISED,),
    "EpisodeOfCare": (CARE_FLAG_RAISED,),
    "Encounter": (CARE_FLAG_RAISED, BILLING_THRESHOLD_REACHED),
}
DEFAULT_BILLING = BillingConfig()
DEFAULT_CARE = CareConfig()


@dataclass(frozen=True)
class Watch:
    """A patient's facts before a write, and the topics listening for what it changes."""

    patient_id: str
    topics: frozenset[str]
    before: PatientFacts


# SMART interaction letter -> FHIR AuditEvent action (search is E, execute).
ACTION_OF_INTERACTION = {"c": "C", "r": "R", "u": "U", "d": "D", "s": "E"}


def _permit_all(rtype: str, interaction: str) -> bool:
    return True


class ResourceService:
    """One caller's access to one tenant's resources over one session, built whole here.

    ``permits(rtype, interaction)``: whether the caller may do a SMART interaction (c r u d s) on a
    type (the request dependencies pass ``partial(allows, caller.scopes)``; default: everything, for
    the CLI, the demo and tests). ``write_lock``: ``app.store.db.write_lock`` of the engine.
    ``reads``: where month-wide billing and registry reads go, a read replica's session when
    ``COCM_DATABASE_READ_URL`` is set, else ``session``. ``allowed_hosts``: the Subscription
    endpoints exempt from the public-address rule (``COCM_SUBSCRIPTION_ALLOWED_HOSTS``).
    ``billing``, ``care``: the settings the whole-picture notification topics are computed with.
    ``group``: the engine's ``app.services.uow.WriteGroup`` (group commit), if requests share one."""

    def __init__(
        self,
        session: Session,
        tenant: str,
        zone: ZoneInfo,
        actor: Actor = SYSTEM_ACTOR,
        *,
        permits: Callable[[str, str], bool] = _permit_all,
        write_lock: AbstractContextManager[object] | None = None,
        reads: Session | None = None,
        allowed_hosts: frozenset[str] = frozenset(),
        billing: BillingConfig = DEFAULT_BILLING,
        care: CareConfig = DEFAULT_CARE,
        group: WriteGroup | None = None,
    ) -> None:
        self.repo = Repository(session, tenant, zone)
        self.session = session
        self.tenant = tenant
        self.zone = zone
        self.actor = actor
        self.permits = permits
        self.write_lock: AbstractContextManager[object] = (
            write_lock if write_lock is not None else nullcontext()
        )
        self.reads: Session = reads if reads is not None else session
        self.allowed_hosts = allowed_hosts
        self.billing = billing
        self.care = care
        self.attempt: tuple[str, str, str | None] | None = None  # (action, type, id) of the first step
        self.group = group  # app.services.uow.WriteGroup: concurrent requests share a commit
        self.checked: dict[str, Any] | None = None  # the body ``precheck`` validated

    @contextmanager
    def sharing(self, session: Session) -> Iterator[None]:
        """Work on ``session`` (a group commit's) for a while, then on this service's own again."""
        own = self.session, self.repo.session, self.reads
        self.session = self.repo.session = session
        if own[2] is own[0]:
            self.reads = session
        try:
            yield
        finally:
            self.session, self.repo.session, self.reads = own

    # ------------------------------------------------------- scopes and audit
    def require(self, rtype: str, *interactions: str, rid: str | None = None) -> None:
        """The caller's scopes must allow each SMART interaction (c r u d s) on ``rtype``: enforced
        here, so that single requests, Bundle entries and computed views alike are checked (403
        otherwise). Also notes what is being attempted, for the audit row written when the
        attempt fails (``audit_failure``)."""
        if self.attempt is None:
            self.attempt = (ACTION_OF_INTERACTION[interactions[0]], rtype, rid)
        for interaction in interactions:
            if not self.permits(rtype, interaction):
                required = f"system/{rtype}.{interaction}"
                raise Forbidden(
                    Issue(f"the granted scopes do not permit {required}", "forbidden"),
                    required_scope=required,
                )

    def audit(
        self,
        action: str,
        interaction: str,
        entity_type: str | None = None,
        entity_id: str | None = None,
        outcome: str = "0",
    ) -> None:
        """An AuditEvent row in the current transaction: references only, never content."""
        self.repo.record_audit(self.actor, action, interaction, entity_type, entity_id, outcome)

    def audit_failure(self, outcome: str) -> None:
        """Record a failed interaction in its own transaction (the request's was rolled back):
        outcome 4 (minor failure: the client's error) or 8 (serious failure: the server's)."""
        if self.attempt is None:
            return
        action, rtype, rid = self.attempt
        try:
            with self.write_lock, self.session.begin():
                self.session.connection(execution_options={WRITE_OPTION: True})
                self.audit(action, "failed", rtype, rid, outcome)
        except SQLAlchemyError:
            log.warning("could not record a failed interaction in the audit trail")

    def search_audit(
        self, where: list[ColumnElement[bool]], offset: int, count: int
    ) -> tuple[list[AuditEventRow], int]:
        """A page of the trail (``audit_trail.conditions``); the search is itself audited (E)."""
        self.require("AuditEvent", "s")
        found = audit_trail.search(self.session, self.tenant, where, offset, count)
        self.audit("E", "search-type", "AuditEvent")
        return found

    def read_audit(self, event_id: str) -> AuditEventRow:
        self.require("AuditEvent", "r")
        row = self.repo.audit_event(event_id)
        self.audit("R", "read", "AuditEvent", event_id)
        return row

    # ----------------------------------------------------------------- reads
    def read(self, rtype: str, rid: str) -> Stored:
        self.require(rtype, "r", rid=rid)
        stored = self.repo.read(rtype, rid)
        self.audit("R", "read", rtype, rid)
        return stored

    def vread(self, rtype: str, rid: str, version_id: int) -> Stored:
        self.require(rtype, "r", rid=rid)
        stored = self.repo.vread(rtype, rid, version_id)
        self.audit("R", "vread", rtype, rid)
        return stored

    def history(self, rtype: str, rid: str) -> list[Stored]:
        self.require(rtype, "r", rid=rid)
        versions = self.repo.history(rtype, rid)
        self.audit("R", "history-instance", rtype, rid)
        return versions

    def search(
        self,
        rtype: str,
        params: Sequence[tuple[str, str]],
        *,
        offset: int = 0,
        count: int = 50,
        strict: bool = False,
    ) -> tuple[list[Stored], int, list[tuple[str, str]]]:
        """A page of matches, how many match, and the parameters applied. Audited as a search of
        the patient when it names one patient, else of the type."""
        self.require(rtype, "s")
        found = self.repo.search(rtype, params, offset=offset, count=count, strict=strict)
        patient = next((value for name, value in params if name in {"patient", "subject"}), None)
        patient_id = reference_id(patient, "Patient") if patient and "," not in patient else None
        self.audit("E", "search-type", "Patient" if patient_id else rtype, patient_id)
        return found

    # ---------------------------------------------------------------- writes
    def precheck(self, rtype: str, data: dict[str, Any], *interactions: str, rid: str | None = None) -> None:
        """A single write's scopes and body checked before its transaction (``transact``), so that
        validation runs outside the writer lock and the group commit. The caller records a failure
        with ``audit_failure("4")``, as a failure inside the transaction would be. The write then
        skips validating ``data`` again."""
        self.attempt = None
        self.require(rtype, *interactions, rid=rid)
        self._validate(rtype, data)
        self.checked = data

    def create(
        self, rtype: str, data: dict[str, Any], *, if_none_exist: str | None = None, rid: str | None = None
    ) -> WriteResult:
        """POST: conditional on ``If-None-Exist`` when given, idempotent on identifiers."""
        self.require(rtype, "c", *(("s",) if if_none_exist else ()))
        self._validate(rtype, data)
        watch = self._watch(rtype, data)
        result = self.repo.create(rtype, data, if_none_exist=if_none_exist, rid=rid)
        return self._audited("create", result, watch)

    def update(
        self,
        rtype: str,
        rid: str,
        data: dict[str, Any],
        *,
        if_match: int | None = None,
        unless_same: bool = False,
    ) -> WriteResult:
        """PUT: a new version, or a create with the client's id (update-as-create). ``unless_same``:
        when the current version has the same content nothing is written (``changed`` False; an
        import resumed over what it loaded before)."""
        self.require(rtype, "u", rid=rid)
        self._validate(rtype, data)
        watch = self._watch(rtype, data)
        result = self.repo.update(rtype, rid, data, if_match=if_match, unless_same=unless_same)
        return self._audited("update", result, watch)

    def conditional_update(
        self, rtype: str, query: str, data: dict[str, Any], *, unless_same: bool = False
    ) -> WriteResult:
        """PUT /fhir/{type}?identifier=...: update the one match, create when none, 412 when several
        (``unless_same`` as for ``update``)."""
        self.require(rtype, "u", "s")
        self._validate(rtype, data)
        watch = self._watch(rtype, data)
        result = self.repo.conditional_update(rtype, query, data, unless_same=unless_same)
        return self._audited("conditional-update", result, watch)

    def delete(self, rtype: str, rid: str) -> None:
        """DELETE: the resource and what was derived from it, each deletion audited."""
        self.require(rtype, "d", rid=rid)
        for gone in self.repo.delete(rtype, rid):
            self.audit("D", "delete", *gone)

    def _validate(self, rtype: str, data: dict[str, Any]) -> None:
        """The R4 model; for a Subscription also what this server supports (422), where its
        endpoint may be (``endpoints``) and, for ``full-resource``, read scope on what it would
        carry (403). Nothing when ``precheck`` checked ``data`` already."""
        if data is self.checked:
            return
        validate_resource(data, rtype)
        if rtype != "Subscription":
            return
        spec = parse_subscription(data)
        check_scheme(spec, self.allowed_hosts)
        problem = endpoint_problem(spec.endpoint, self.allowed_hosts)
        if problem is not None:
            raise BusinessRuleViolation(
                Issue(
                    f"{problem}: notifications are not sent there",
                    "security",
                    expression=("Subscription.channel.endpoint",),
                )
            )
        if spec.content == "full-resource":
            for focus_type in TOPICS[spec.topic]:
                self.require(focus_type, "r")

    def _watch(self, rtype: str, data: dict[str, Any]) -> Watch | None:
        """Before a write that can change a patient's care flags or billing month: the patient's
        facts, when a subscription would hear of the change (notifications.md, care-flag-raised and
        billing-threshold-reached; ``app.notifications.derived``)."""
        topics = WATCHED_TOPICS.get(rtype)
        reference = patient_reference(data) if topics else None
        if topics is None or reference is None:
            return None
        patient_id = reference[1]
        listening = self.repo.receiving_topics(topics, patient_id)
        if not listening:
            return None
        return Watch(patient_id, frozenset(listening), self.repo.patient_facts(patient_id))

    def _raise_derived(self, watch: Watch, stored: Stored) -> None:
        after = self.repo.patient_facts(watch.patient_id)
        today = datetime.now(ZoneInfo(self.billing.timezone)).date()
        written = f"{stored.type}/{stored.id}"
        patient = f"Patient/{watch.patient_id}"
        events: list[RaisedEvent] = []
        if CARE_FLAG_RAISED in watch.topics and raised_flags(
            watch.patient_id, watch.before, after, today, self.billing, self.care
        ):
            version = self.repo.read("Patient", watch.patient_id).version_id
            events.append(
                RaisedEvent(
                    CARE_FLAG_RAISED, watch.patient_id, "Patient", watch.patient_id, version, (written,)
                )
            )
        if BILLING_THRESHOLD_REACHED in watch.topics and threshold_reached(
            watch.patient_id, written, watch.before, after, today, self.billing
        ):
            events.append(
                RaisedEvent(
                    BILLING_THRESHOLD_REACHED,
                    watch.patient_id,
                    stored.type,
                    stored.id,
                    stored.version_id,
                    (patient,),
                )
            )
        self.repo.raise_events(events)

    def _audited(self, interaction: str, result: WriteResult, watch: Watch | None = None) -> WriteResult:
        if watch is not None and result.changed:
            self._raise_derived(watch, result.stored)
        for gone in result.deleted:
            self.audit("D", "delete", *gone)
        stored = result.stored
        action = "C" if result.created or interaction == "create" else "U"
        self.audit(action, interaction, stored.type, stored.id)
        INGESTED.labels(stored.type).inc()
        if result.warnings:
            SCORING_WARNINGS.inc(len(result.warnings))
        return result
