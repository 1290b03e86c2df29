"""The resource store: versioned FHIR resources plus the facts extracted from them.

Persistence only: no scope checks, no audit decisions, no validation, no HTTP. The service
above it (``app.services.resources``) checks the caller's scopes, validates the body, records the
audit trail and owns the unit of work.

Every write keeps the JSON as received (with ``id`` and ``meta.versionId``/``meta.lastUpdated``
set), a copy per version, the identifier and token index rows, and the fact rows, all in the
caller's transaction: this module only flushes, the service commits (architecture.md).

Every query names the tenant; resource ids are unique across tenants, and an id held by another
tenant behaves exactly like an unknown id (404), for update-as-create too.

Idempotency (api.md): an identifier (system, value) is unique per tenant and type. A create whose
identifier is already stored answers the stored resource (200) when the content is the same
(ignoring ``id`` and ``meta``) and 409 when it differs. Concurrent duplicates meet at the primary
key of ``resource_identifier``; the edge retries the request once it loses (``app.services.uow.transact``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl
from zoneinfo import ZoneInfo

import orjson
from sqlalchemy import bindparam, delete, func, select
from sqlalchemy.orm import Session

from app.domain import Actor, PatientFacts
from app.errors import (
    BusinessRuleViolation,
    Conflict,
    Gone,
    InvalidInput,
    Issue,
    NotFound,
    PreconditionFailed,
)
from app.notifications.subscriptions import RaisedEvent, parse_subscription
from app.resources.validation import patient_reference
from app.store import facts, outbox
from app.store.db import insert_later, transaction_info
from app.store.ids import new_id, new_uuid
from app.store.models import SYSTEM as SYSTEM_LENGTH
from app.store.models import VALUE as VALUE_LENGTH
from app.store.models import (
    AuditEventRow,
    MeasurementRow,
    Resource,
    ResourceIdentifier,
    ResourceToken,
    ResourceVersion,
)
from app.store.reads import FactReader
from app.store.search import build_conditions


@dataclass(frozen=True)
class Stored:
    """One version of a resource as the client sees it."""

    type: str
    id: str
    version_id: int
    last_updated: datetime
    content: bytes | None  # None for a deleted version


LIVE_PATIENTS = "live_patients"  # transaction_info key (with the tenant): patients known to be live
PATIENT_DELETED = select(Resource.deleted).where(  # built once: checked on every write
    Resource.tenant == bindparam("tenant"), Resource.type == "Patient", Resource.id == bindparam("id")
)


@dataclass(frozen=True)
class WriteResult:
    stored: Stored
    created: bool  # 201 when True, 200 otherwise
    warnings: list[Issue] = field(default_factory=list)
    changed: bool = True  # False: nothing written (the stored version already says this, or a create matched)
    deleted: tuple[tuple[str, str], ...] = ()  # derived resources (type, id) deleted along with it


def now_instant() -> datetime:
    """Now, kept to the microsecond in the database (so that the data version the result caches
    key on moves with every write) and shown to the millisecond in ``meta.lastUpdated``."""
    return datetime.now(UTC)


def format_instant(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


def _strip_server_fields(data: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in data.items() if k not in {"id", "meta"}}
    meta = {k: v for k, v in (data.get("meta") or {}).items() if k not in {"versionId", "lastUpdated"}}
    if meta:
        out["meta"] = meta
    return out


def same_content(data: dict[str, Any], stored: str | None) -> bool:
    """Whether ``data`` says what the stored JSON says, ``id`` and server ``meta`` aside (a retry)."""
    return stored is not None and _strip_server_fields(data) == _strip_server_fields(orjson.loads(stored))


def identifiers_of(data: dict[str, Any]) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    raw = data.get("identifier") or []
    for ident in [raw] if isinstance(raw, dict) else raw:  # QuestionnaireResponse has one, others a list
        if isinstance(ident, dict) and ident.get("value"):
            pair = (str(ident.get("system") or ""), str(ident["value"]))
            if pair not in pairs:
                pairs.append(pair)
    return pairs


class Repository:
    """One tenant's resources over one session."""

    def __init__(self, session: Session, tenant: str, zone: ZoneInfo) -> None:
        self.session = session
        self.tenant = tenant
        self.zone = zone

    # ----------------------------------------------------------------- audit
    def record_audit(
        self,
        actor: Actor,
        action: str,
        interaction: str,
        entity_type: str | None = None,
        entity_id: str | None = None,
        outcome: str = "0",
    ) -> None:
        """Add an AuditEvent row to the current transaction (so a write and its audit commit
        together). References only: type and id, never content or search values."""
        insert_later(
            self.session,
            AuditEventRow,
            {
                "tenant": self.tenant,
                "id": new_uuid().hex,
                "recorded": now_instant(),
                "action": action,
                "interaction": interaction,
                "agent": actor.agent,
                "entity_type": entity_type,
                "entity_id": entity_id,
                "outcome": outcome,
                "source_address": actor.address,
            },
        )

    # ------------------------------------------------------------ the outbox
    def receiving_topics(self, topics: Sequence[str], patient_id: str) -> set[str]:
        return outbox.receiving_topics(self.session, self.tenant, topics, patient_id, now_instant())

    def raise_events(self, events: Sequence[RaisedEvent]) -> None:
        outbox.raise_events(self.session, self.tenant, events, now_instant())

    def patient_facts(self, patient_id: str) -> PatientFacts:
        """Every fact of one patient as this transaction sees them."""
        return FactReader(self.session, self.tenant).facts([patient_id]).get(patient_id, PatientFacts())

    def audit_event(self, event_id: str) -> AuditEventRow:
        row = self.session.get(AuditEventRow, (self.tenant, event_id))
        if row is None:
            raise NotFound(f"AuditEvent/{event_id} is not known")
        return row

    # ----------------------------------------------------------------- reads
    def _row(self, rtype: str, rid: str, *, lock: bool = False) -> Resource | None:
        """The current row; ``lock`` takes a row lock (PostgreSQL ``FOR UPDATE``) for a write, so
        concurrent writers of one resource queue instead of racing (SQLite locks the database), and
        reads the row afresh once the lock is held."""
        return self.session.get(
            Resource, (self.tenant, rtype, rid), with_for_update=lock or None, populate_existing=lock
        )

    def read(self, rtype: str, rid: str) -> Stored:
        row = self._row(rtype, rid)
        if row is None:
            raise NotFound(f"{rtype}/{rid} is not known")
        if row.deleted:
            raise Gone(f"{rtype}/{rid} was deleted")
        return _stored(row)

    def vread(self, rtype: str, rid: str, version_id: int) -> Stored:
        version = self.session.get(ResourceVersion, (self.tenant, rtype, rid, version_id))
        if version is None:
            raise NotFound(f"{rtype}/{rid} has no version {version_id}")
        if version.deleted:
            raise Gone(f"{rtype}/{rid} version {version_id} is a deletion")
        return _stored_version(version)

    def history(self, rtype: str, rid: str) -> list[Stored]:
        rows = self.session.scalars(
            select(ResourceVersion)
            .where(
                ResourceVersion.tenant == self.tenant,
                ResourceVersion.type == rtype,
                ResourceVersion.id == rid,
            )
            .order_by(ResourceVersion.version_id.desc())
        ).all()
        if not rows:
            raise NotFound(f"{rtype}/{rid} is not known")
        return [_stored_version(r) for r in rows]

    def search(
        self,
        rtype: str,
        params: Sequence[tuple[str, str]],
        *,
        offset: int = 0,
        count: int = 50,
        strict: bool = False,
    ) -> tuple[list[Stored], int, list[tuple[str, str]]]:
        query = build_conditions(self.tenant, rtype, params, self.zone, strict=strict)
        where = [Resource.tenant == self.tenant, Resource.type == rtype, Resource.deleted.is_(False)]
        where += query.conditions
        total = self.session.scalar(select(func.count()).select_from(Resource).where(*where)) or 0
        rows = (
            self.session.scalars(
                select(Resource)
                .where(*where)
                .order_by(Resource.last_updated, Resource.id)
                .offset(offset)
                .limit(count)
            ).all()
            if count > 0
            else []
        )
        return [_stored(r) for r in rows], total, query.applied

    def patient_exists(self, patient_id: str) -> bool:
        """Whether the patient is live; remembered for the rest of the transaction (a Bundle's
        entries name the same few patients)."""
        live = self._live_patients()
        if patient_id not in live:
            deleted = self.session.scalar(PATIENT_DELETED, {"tenant": self.tenant, "id": patient_id})
            if deleted is not False:
                return False
            live.add(patient_id)
        return True

    def _live_patients(self) -> set[str]:
        live: set[str] = transaction_info(self.session).setdefault(f"{LIVE_PATIENTS}:{self.tenant}", set())
        return live

    # ---------------------------------------------------------------- writes
    def create(
        self, rtype: str, data: dict[str, Any], *, if_none_exist: str | None = None, rid: str | None = None
    ) -> WriteResult:
        """POST: conditional on ``If-None-Exist`` when given, idempotent on identifiers."""
        if if_none_exist is not None:
            matches = self.match(rtype, if_none_exist, "If-None-Exist")
            if len(matches) > 1:
                raise PreconditionFailed(
                    f"If-None-Exist matches {len(matches)} {rtype} resources; it must match at most one"
                )
            if matches:
                return WriteResult(_stored(matches[0]), created=False, changed=False)
        for system, value in identifiers_of(data):
            existing = self._by_identifier(rtype, system, value)
            if existing is None:
                continue
            if same_content(data, existing.content):
                return WriteResult(_stored(existing), created=False, changed=False)
            raise Conflict(
                Issue(
                    f"{rtype} with identifier {system}|{value} already exists as {rtype}/{existing.id} "
                    "with different content; use PUT or a conditional update to change it",
                    "duplicate",
                    expression=(f"{rtype}.identifier",),
                )
            )
        return self._write(rtype, rid or new_id(), data, None)

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
        if data.get("id") != rid:
            raise InvalidInput(
                Issue(f"the body's id must equal the URL id {rid!r}", "invalid", expression=(f"{rtype}.id",))
            )
        row = self._row(rtype, rid, lock=True)
        if row is None and self._id_taken_elsewhere(rtype, rid):
            raise NotFound(f"{rtype}/{rid} is not known")  # another tenant's id: no existence leak
        if if_match is not None:
            current = row.version_id if row is not None and not row.deleted else None
            if current != if_match:
                raise PreconditionFailed(
                    f'If-Match W/"{if_match}" does not match the current version '
                    f"({'none' if current is None else current})"
                )
        if unless_same and row is not None and not row.deleted and same_content(data, row.content):
            return WriteResult(_stored(row), created=False, changed=False)
        return self._write(rtype, rid, data, row)

    def conditional_update(
        self, rtype: str, query: str, data: dict[str, Any], *, unless_same: bool = False
    ) -> WriteResult:
        """PUT /fhir/{type}?identifier=...: update the one match, create when none, 412 when several
        (``unless_same`` as for ``update``)."""
        matches = self.match(rtype, query, "the conditional update", lock=True)
        if len(matches) > 1:
            raise PreconditionFailed(f"the conditional update matches {len(matches)} {rtype} resources")
        if not matches:
            rid = data.get("id") or new_id()
            if self._id_taken_elsewhere(rtype, rid):
                raise NotFound(f"{rtype}/{rid} is not known")  # another tenant's id: no existence leak
            if self._row(rtype, rid) is not None:
                raise Conflict(f"{rtype}/{rid} exists but does not match the conditional update's criteria")
            return self._write(rtype, rid, data, None)
        row = matches[0]
        if data.get("id") not in (None, row.id):
            raise InvalidInput(
                Issue(
                    f"the body's id must be {row.id!r}, the matched resource",
                    "invalid",
                    expression=(f"{rtype}.id",),
                )
            )
        if unless_same and same_content(data, row.content):
            return WriteResult(_stored(row), created=False, changed=False)
        return self._write(rtype, row.id, data, row)

    def delete(self, rtype: str, rid: str) -> list[tuple[str, str]]:
        """DELETE: a deletion version; identifiers, tokens and facts go with it, and so do the
        resources derived from it (a response's score). Answers what was deleted, the resource
        first: nothing when it was deleted already (deleting twice is fine)."""
        row = self._row(rtype, rid, lock=True)
        if row is None:
            raise NotFound(f"{rtype}/{rid} is not known")
        if row.deleted:
            return []
        if rtype == "Patient":
            self._live_patients().discard(rid)
        moment = now_instant()
        row.deleted = True
        row.version_id += 1
        row.last_updated = moment
        self.session.flush()  # later reads in this transaction (Core selects) see the deletion
        self._insert_version(rtype, rid, row.version_id, moment, None)
        self._clear_index(rtype, rid)
        if rtype == "Subscription":
            outbox.drop_subscription(self.session, self.tenant, rid)
        deleted = [(rtype, rid)]
        for derived in facts.clear(self.session, self.tenant, rtype, rid):
            deleted += self.delete(*derived)
        return deleted

    # --------------------------------------------------------------- helpers
    def match(self, rtype: str, query: str, where: str, *, lock: bool = False) -> list[Resource]:
        """The live resources (at most two) matching a conditional request's search. ``lock``:
        the matches are locked for the update that follows (PostgreSQL ``FOR UPDATE``) and read
        afresh once the lock is held, so concurrent conditional updates queue instead of racing
        for the next version number."""
        try:
            params = parse_qsl(query.split("?", 1)[-1], keep_blank_values=True, strict_parsing=True)
        except ValueError:
            raise InvalidInput(f"{where} is not a search query: expected name=value pairs") from None
        if not params:
            raise InvalidInput(f"{where} has no search criteria")
        conditions = build_conditions(self.tenant, rtype, params, self.zone, strict=True).conditions
        statement = (
            select(Resource)
            .where(
                Resource.tenant == self.tenant,
                Resource.type == rtype,
                Resource.deleted.is_(False),
                *conditions,
            )
            .limit(2)
        )
        if lock:
            statement = statement.with_for_update(of=Resource).execution_options(populate_existing=True)
        return list(self.session.scalars(statement).all())

    def by_identifiers(self, rtype: str, data: dict[str, Any]) -> Resource | None:
        """The live resource holding any of the identifiers in ``data``, if one does."""
        for system, value in identifiers_of(data):
            row = self._by_identifier(rtype, system, value)
            if row is not None and not row.deleted:
                return row
        return None

    def _by_identifier(self, rtype: str, system: str, value: str) -> Resource | None:
        ident = self.session.get(ResourceIdentifier, (self.tenant, rtype, system, value))
        if ident is None:
            return None
        return self._row(rtype, ident.resource_id)

    def _id_taken_elsewhere(self, rtype: str, rid: str) -> bool:
        found = self.session.scalar(
            select(Resource.tenant).where(
                Resource.type == rtype, Resource.id == rid, Resource.tenant != self.tenant
            )
        )
        return found is not None

    def _resolve_patient(self, rtype: str, data: dict[str, Any]) -> str | None:
        ref = patient_reference(data)
        if ref is None:
            return None
        path, patient_id = ref
        if not self.patient_exists(patient_id):
            raise BusinessRuleViolation(
                Issue(
                    f"{path} refers to Patient/{patient_id}, which is not a patient on this server",
                    "business-rule",
                    expression=(path,),
                )
            )
        return patient_id

    def _write(
        self,
        rtype: str,
        rid: str,
        data: dict[str, Any],
        row: Resource | None,
        *,
        patient_id: str | None = None,
    ) -> WriteResult:
        """``patient_id`` given: the caller vouches for the patient (derived resources).

        Identifiers: a new row relies on the identifier key. A create has looked its identifiers
        up already; one that a concurrent twin took since fails the key at flush, and the edge
        retries the request, whose retry answers the twin (api.md Idempotency). A new version of
        an existing row is checked here, to name the resource that holds the identifier (409)."""
        patient_id = patient_id or self._resolve_patient(rtype, data)
        identifiers = identifiers_of(data)
        index = facts.index_values(rtype, data, self.zone)
        _check_index_lengths(rtype, identifiers, index.tokens)
        for system, value in identifiers if row is not None else ():
            holder = self.session.get(ResourceIdentifier, (self.tenant, rtype, system, value))
            if holder is not None and holder.resource_id != rid:
                raise Conflict(
                    Issue(
                        f"identifier {system}|{value} already belongs to {rtype}/{holder.resource_id}",
                        "duplicate",
                        expression=(f"{rtype}.identifier",),
                    )
                )
        moment = now_instant()
        created = row is None or row.deleted
        version_id = 1 if row is None else row.version_id + 1
        if rtype == "Subscription" and created and data.get("status") in {"active", "error"}:
            data = {**data, "status": "requested"}  # notifications.md: created requested, then handshake
        meta = {k: v for k, v in (data.get("meta") or {}).items() if k not in {"versionId", "lastUpdated"}}
        meta = {"versionId": str(version_id), "lastUpdated": format_instant(moment), **meta}
        body = {"resourceType": rtype, "id": rid, "meta": meta}
        body.update((k, v) for k, v in data.items() if k not in body)
        content = orjson.dumps(body).decode()
        if "\\u0000" in content:
            raise InvalidInput(
                Issue("strings must not contain NUL characters", "invalid", expression=(rtype,))
            )
        columns: dict[str, Any] = {
            "version_id": version_id,
            "last_updated": moment,
            "deleted": False,
            "patient_id": patient_id,
            "status": index.status,
            "effective": index.effective,
            "content": content,
        }
        if rtype == "Patient":
            self._live_patients().add(rid)
        if row is None:
            insert_later(self.session, Resource, {"tenant": self.tenant, "type": rtype, "id": rid, **columns})
        else:  # a new version of a row this transaction has loaded (and locked): the ORM updates it
            self._clear_index(rtype, rid)
            for name, column_value in columns.items():
                setattr(row, name, column_value)
            self.session.flush()
        self._insert_version(rtype, rid, version_id, moment, content)
        for system, value in identifiers:
            insert_later(
                self.session,
                ResourceIdentifier,
                {"tenant": self.tenant, "type": rtype, "system": system, "value": value, "resource_id": rid},
            )
        for param, system, value in index.tokens:
            insert_later(
                self.session,
                ResourceToken,
                {
                    "tenant": self.tenant,
                    "type": rtype,
                    "resource_id": rid,
                    "param": param,
                    "system": system,
                    "value": value,
                },
            )
        previous: facts.Previous = None
        derived_ids: list[str] = []
        if version_id > 1:
            previous = facts.previous_measurement(self.session, self.tenant, rtype, rid)
            derived_ids = [oid for _, oid in facts.clear(self.session, self.tenant, rtype, rid)]
        plan = facts.extract(
            rtype,
            rid,
            patient_id,
            body,
            self.zone,
            self.tenant,
            derived_ids=derived_ids,
            response_scored=self._response_scored,
            previous=previous,
        )
        deleted = self._apply(plan, patient_id, (rtype, rid, version_id), moment)
        if rtype == "Subscription":
            outbox.sync_subscription(self.session, self.tenant, rid, parse_subscription(body))
        stored = Stored(rtype, rid, version_id, moment, content.encode())
        return WriteResult(stored, created, plan.warnings, deleted=tuple(deleted))

    def _response_scored(self, response_id: str) -> bool:
        return (
            self.session.get(MeasurementRow, (self.tenant, "QuestionnaireResponse", response_id)) is not None
        )

    def _apply(
        self,
        plan: facts.FactPlan,
        patient_id: str | None,
        written: tuple[str, str, int],
        moment: datetime,
    ) -> list[tuple[str, str]]:
        """Write what ``facts.extract`` planned: fact rows, the derived Observations, then the
        events into the outbox (``written``: the resource this write stores, its version).
        Answers the derived resources deleted."""
        for model, values in plan.rows:
            insert_later(self.session, model, values)
        deleted = [gone for oid in plan.derived_deletes for gone in self.delete("Observation", oid)]
        versions = {written[:2]: written[2]}
        if plan.derived is not None and plan.derived_id is not None and patient_id is not None:
            versions[("Observation", plan.derived_id)] = self._write_derived(
                "Observation", plan.derived_id, plan.derived, patient_id, exists=plan.derived_exists
            )
        if plan.events and patient_id is not None:
            raised = [
                RaisedEvent(event.topic, patient_id, *event.focus, versions[event.focus], event.context)
                for event in plan.events
            ]
            outbox.raise_events(self.session, self.tenant, raised, moment)
        return deleted

    def _insert_version(
        self, rtype: str, rid: str, version_id: int, moment: datetime, content: str | None
    ) -> None:
        """One row of the history; ``content`` None records a deletion."""
        row = {
            "tenant": self.tenant,
            "type": rtype,
            "id": rid,
            "version_id": version_id,
            "last_updated": moment,
            "deleted": content is None,
            "content": content,
        }
        insert_later(self.session, ResourceVersion, row)

    def _write_derived(
        self, rtype: str, rid: str, data: dict[str, Any], patient_id: str, *, exists: bool
    ) -> int:
        """Create or update (``exists``) a resource the service derives itself for ``patient_id``
        (already checked by the write it derives from; no identifier idempotency). Answers the
        version written."""
        row = self._row(rtype, rid) if exists else None
        return self._write(rtype, rid, {**data, "id": rid}, row, patient_id=patient_id).stored.version_id

    def _clear_index(self, rtype: str, rid: str) -> None:
        self.session.execute(
            delete(ResourceIdentifier).where(
                ResourceIdentifier.tenant == self.tenant,
                ResourceIdentifier.type == rtype,
                ResourceIdentifier.resource_id == rid,
            )
        )
        self.session.execute(
            delete(ResourceToken).where(
                ResourceToken.tenant == self.tenant,
                ResourceToken.type == rtype,
                ResourceToken.resource_id == rid,
            )
        )


def _check_index_lengths(
    rtype: str, identifiers: list[tuple[str, str]], tokens: list[tuple[str, str, str]]
) -> None:
    """Identifier and token values are indexed in columns of bounded length: a longer one is the
    client's error (400), never a database error."""
    for system, value in identifiers:
        if len(system) > SYSTEM_LENGTH or len(value) > VALUE_LENGTH:
            raise InvalidInput(
                Issue(
                    f"identifier system and value are limited to {SYSTEM_LENGTH} and {VALUE_LENGTH} characters",
                    "too-long",
                    expression=(f"{rtype}.identifier",),
                )
            )
    for param, system, value in tokens:
        if len(system) > SYSTEM_LENGTH or len(value) > VALUE_LENGTH:
            raise InvalidInput(
                Issue(
                    f"the {param} value is longer than {VALUE_LENGTH} characters",
                    "too-long",
                    expression=(rtype,),
                )
            )


def _stored(row: Resource) -> Stored:
    return Stored(row.type, row.id, row.version_id, row.last_updated, row.content.encode())


def _stored_version(row: ResourceVersion) -> Stored:
    return Stored(
        row.type, row.id, row.version_id, row.last_updated, row.content.encode() if row.content else None
    )
