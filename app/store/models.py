"""The schema (SQLAlchemy 2 declarative). Alembic migrations in ``migrations/`` create it.

Tenant first in every key and index (architecture.md), so the schema can be distributed by tenant.
Resource ids are unique across tenants (api.md, Access and tenants): ``uq_resource_type_id``.

- ``resource``: the current version of every resource, with the columns search needs; the JSON
  exactly as received plus ``id``/``meta``.
- ``resource_version``: every version's JSON (vread, history).
- ``resource_identifier``: identifier (system, value) per tenant and type; the unique key that makes
  retries idempotent (api.md Idempotency). A deleted resource releases its identifiers.
- ``resource_token``: other token search values (Observation ``code``, ``derived-from``,
  QuestionnaireResponse ``questionnaire``).
- Fact tables extracted in the same transaction as the write: ``measurement``, ``time_entry``,
  ``consent_fact``, ``episode_of_care_fact``, ``visit_fact``, ``diagnosis_fact``. They are rewritten with their
  resource on update and removed on delete.
- ``export_job``: Bulk Data export jobs (export.md), shared by every worker and kept across restarts.
- The notification outbox: ``subscription_state`` (one row per Subscription, kept across its
  versions) and ``subscription_event`` (events, written with the data that raised them).
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    Date,
    DateTime,
    Dialect,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

TENANT = 64
RTYPE = 40
RID = 64
SYSTEM = 255
VALUE = 255


class UTCDateTime(TypeDecorator[datetime]):
    """Instants stored as naive UTC (SQLite keeps no offset) and returned as aware UTC."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):  # defensive: raw SQLite text
            value = datetime.fromisoformat(value)
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Resource(Base):
    __tablename__ = "resource"
    __table_args__ = (
        UniqueConstraint("type", "id", name="uq_resource_type_id"),
        Index("ix_resource_patient", "tenant", "type", "patient_id", "last_updated"),
        Index("ix_resource_updated", "tenant", "type", "last_updated"),
        Index("ix_resource_effective", "tenant", "type", "effective"),
    )

    tenant: Mapped[str] = mapped_column(String(TENANT), primary_key=True)
    type: Mapped[str] = mapped_column(String(RTYPE), primary_key=True)
    id: Mapped[str] = mapped_column(String(RID), primary_key=True)
    version_id: Mapped[int] = mapped_column(Integer)
    last_updated: Mapped[datetime] = mapped_column(UTCDateTime())
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    patient_id: Mapped[str | None] = mapped_column(String(RID))
    status: Mapped[str | None] = mapped_column(String(64))
    # authored / effective[x] / period.start as an instant, for the ``date`` search parameter
    effective: Mapped[datetime | None] = mapped_column(UTCDateTime())
    content: Mapped[str] = mapped_column(Text)


class ResourceVersion(Base):
    __tablename__ = "resource_version"

    tenant: Mapped[str] = mapped_column(String(TENANT), primary_key=True)
    type: Mapped[str] = mapped_column(String(RTYPE), primary_key=True)
    id: Mapped[str] = mapped_column(String(RID), primary_key=True)
    version_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    last_updated: Mapped[datetime] = mapped_column(UTCDateTime())
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    content: Mapped[str | None] = mapped_column(Text)


class ResourceIdentifier(Base):
    __tablename__ = "resource_identifier"
    __table_args__ = (Index("ix_resource_identifier_resource", "tenant", "type", "resource_id"),)

    tenant: Mapped[str] = mapped_column(String(TENANT), primary_key=True)
    type: Mapped[str] = mapped_column(String(RTYPE), primary_key=True)
    system: Mapped[str] = mapped_column(String(SYSTEM), primary_key=True)  # "" when absent
    value: Mapped[str] = mapped_column(String(VALUE), primary_key=True)
    resource_id: Mapped[str] = mapped_column(String(RID))


class ResourceToken(Base):
    __tablename__ = "resource_token"
    __table_args__ = (
        Index("ix_resource_token_value", "tenant", "type", "param", "value"),
        Index("ix_resource_token_resource", "tenant", "type", "resource_id"),
    )

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(String(TENANT))
    type: Mapped[str] = mapped_column(String(RTYPE))
    resource_id: Mapped[str] = mapped_column(String(RID))
    param: Mapped[str] = mapped_column(String(40))
    system: Mapped[str] = mapped_column(String(SYSTEM))  # "" when absent
    value: Mapped[str] = mapped_column(String(VALUE))


class MeasurementRow(Base):
    __tablename__ = "measurement"
    __table_args__ = (Index("ix_measurement_patient", "tenant", "patient_id", "instrument", "effective"),)

    tenant: Mapped[str] = mapped_column(String(TENANT), primary_key=True)
    source_type: Mapped[str] = mapped_column(String(RTYPE), primary_key=True)
    source_id: Mapped[str] = mapped_column(String(RID), primary_key=True)
    patient_id: Mapped[str] = mapped_column(String(RID))
    instrument: Mapped[str] = mapped_column(String(16))
    score: Mapped[int | None] = mapped_column(Integer)  # None: an item-level PHQ-9 item 9 answer
    item9: Mapped[int | None] = mapped_column(Integer)
    effective: Mapped[datetime] = mapped_column(UTCDateTime())
    warnings: Mapped[str] = mapped_column(Text, default="[]")  # JSON list of sentences


class TimeEntryRow(Base):
    __tablename__ = "time_entry"
    __table_args__ = (
        Index("ix_time_entry_start", "tenant", "start", "patient_id"),
        # reads by patient (FactReader.facts): without it PostgreSQL scans the table once per chunk
        Index("ix_time_entry_patient", "tenant", "patient_id", "start"),
    )

    tenant: Mapped[str] = mapped_column(String(TENANT), primary_key=True)
    encounter_id: Mapped[str] = mapped_column(String(RID), primary_key=True)
    patient_id: Mapped[str] = mapped_column(String(RID))
    start: Mapped[datetime] = mapped_column(UTCDateTime())
    seconds: Mapped[int] = mapped_column(Integer)
    activity: Mapped[str] = mapped_column(String(64))
    excluded: Mapped[str | None] = mapped_column(String(32))


class ConsentFactRow(Base):
    __tablename__ = "consent_fact"
    __table_args__ = (Index("ix_consent_fact_patient", "tenant", "patient_id", "on_date"),)

    tenant: Mapped[str] = mapped_column(String(TENANT), primary_key=True)
    consent_id: Mapped[str] = mapped_column(String(RID), primary_key=True)
    patient_id: Mapped[str] = mapped_column(String(RID))
    active: Mapped[bool] = mapped_column(Boolean)
    on_date: Mapped[date | None] = mapped_column(Date)


class EpisodeOfCareFactRow(Base):
    __tablename__ = "episode_of_care_fact"
    __table_args__ = (Index("ix_episode_of_care_fact_patient", "tenant", "patient_id"),)

    tenant: Mapped[str] = mapped_column(String(TENANT), primary_key=True)
    episode_id: Mapped[str] = mapped_column(String(RID), primary_key=True)
    patient_id: Mapped[str] = mapped_column(String(RID))
    start: Mapped[date | None] = mapped_column(Date)
    end: Mapped[date | None] = mapped_column(Date)
    finished: Mapped[bool] = mapped_column(Boolean)
    program: Mapped[str] = mapped_column(String(32))


class VisitFactRow(Base):
    __tablename__ = "visit_fact"
    __table_args__ = (Index("ix_visit_fact_patient", "tenant", "patient_id", "on_date"),)

    tenant: Mapped[str] = mapped_column(String(TENANT), primary_key=True)
    encounter_id: Mapped[str] = mapped_column(String(RID), primary_key=True)
    system: Mapped[str] = mapped_column(String(SYSTEM), primary_key=True)
    code: Mapped[str] = mapped_column(String(32), primary_key=True)
    patient_id: Mapped[str] = mapped_column(String(RID))
    on_date: Mapped[date] = mapped_column(Date)


class DiagnosisFactRow(Base):
    """A Condition coded in a quality value set (``app.domain.Diagnosis``)."""

    __tablename__ = "diagnosis_fact"
    __table_args__ = (Index("ix_diagnosis_fact_patient", "tenant", "patient_id"),)

    tenant: Mapped[str] = mapped_column(String(TENANT), primary_key=True)
    condition_id: Mapped[str] = mapped_column(String(RID), primary_key=True)
    patient_id: Mapped[str] = mapped_column(String(RID))
    code: Mapped[str] = mapped_column(String(16))  # ICD-10-CM with its dot
    display: Mapped[str | None] = mapped_column(Text)
    category: Mapped[str] = mapped_column(String(16))  # depression, exclusion
    onset: Mapped[date | None] = mapped_column(Date)
    abatement: Mapped[date | None] = mapped_column(Date)
    clinically_active: Mapped[bool] = mapped_column(Boolean)
    refuted: Mapped[bool] = mapped_column(Boolean)


class AuditEventRow(Base):
    """One audited interaction (issue: audit trail). Holds references only, never patient data:
    no bodies, no search values, no names."""

    __tablename__ = "audit_event"
    __table_args__ = (
        Index("ix_audit_event_recorded", "tenant", "recorded"),
        Index("ix_audit_event_entity", "tenant", "entity_type", "entity_id"),
    )

    tenant: Mapped[str] = mapped_column(String(TENANT), primary_key=True)
    id: Mapped[str] = mapped_column(String(RID), primary_key=True)
    recorded: Mapped[datetime] = mapped_column(UTCDateTime())
    action: Mapped[str] = mapped_column(String(1))  # C R U D E
    interaction: Mapped[str] = mapped_column(String(32))  # create, read, search-type, billing, ...
    agent: Mapped[str] = mapped_column(String(128))
    entity_type: Mapped[str | None] = mapped_column(String(RTYPE))
    entity_id: Mapped[str | None] = mapped_column(String(RID))
    outcome: Mapped[str] = mapped_column(String(2))  # 0 success, 4 minor failure, 8 serious failure
    source_address: Mapped[str | None] = mapped_column(String(64))


class SubscriptionStateRow(Base):
    """A Subscription's delivery state (notifications.md), kept across its versions: what the
    dispatcher needs from the resource, the highest event number raised (``events``, numbered per
    subscription without gaps) and delivered in order (``delivered``), and the retry clock.
    ``lease_until``: a dispatcher owns the subscription until then (one sender at a time)."""

    __tablename__ = "subscription_state"
    __table_args__ = (Index("ix_subscription_state_topic", "tenant", "topic"),)

    tenant: Mapped[str] = mapped_column(String(TENANT), primary_key=True)
    subscription_id: Mapped[str] = mapped_column(String(RID), primary_key=True)
    topic: Mapped[str] = mapped_column(String(255))
    patient_id: Mapped[str | None] = mapped_column(String(RID))  # the filter's patient, None for all
    status: Mapped[str] = mapped_column(String(16))  # requested, active, error, off
    endpoint: Mapped[str] = mapped_column(Text)
    content: Mapped[str] = mapped_column(String(16))  # empty, id-only, full-resource
    headers: Mapped[str] = mapped_column(Text, default="[]")  # JSON [[name, value], ...]; never logged
    heartbeat_seconds: Mapped[int | None] = mapped_column(Integer)
    timeout_seconds: Mapped[int] = mapped_column(Integer)
    end_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    handshake_due: Mapped[bool] = mapped_column(Boolean)
    events: Mapped[int] = mapped_column(Integer, default=0)
    delivered: Mapped[int] = mapped_column(Integer, default=0)
    attempts: Mapped[int] = mapped_column(Integer, default=0)  # failed tries of what is due now
    failing_since: Mapped[datetime | None] = mapped_column(UTCDateTime())
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_error: Mapped[str | None] = mapped_column(String(255))
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime())


class SubscriptionEventRow(Base):
    """One raised event, written in the transaction of the write that raised it (the outbox)."""

    __tablename__ = "subscription_event"
    __table_args__ = (
        Index("ix_subscription_event_occurred", "tenant", "occurred"),
        Index("ix_subscription_event_patient", "tenant", "patient_id", "occurred"),  # the registry's alerts
    )

    tenant: Mapped[str] = mapped_column(String(TENANT), primary_key=True)
    subscription_id: Mapped[str] = mapped_column(String(RID), primary_key=True)
    number: Mapped[int] = mapped_column(Integer, primary_key=True)
    occurred: Mapped[datetime] = mapped_column(UTCDateTime())
    topic: Mapped[str] = mapped_column(String(255))
    patient_id: Mapped[str] = mapped_column(String(RID))
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())  # None until a 2xx
    focus_type: Mapped[str] = mapped_column(String(RTYPE))
    focus_id: Mapped[str] = mapped_column(String(RID))
    focus_version: Mapped[int] = mapped_column(Integer)
    context: Mapped[str] = mapped_column(Text, default="[]")  # JSON ["Type/id", ...]


class ExportJobRow(Base):
    """A Bulk Data export (export.md): what was asked, the snapshot instant, where the runner is, and
    the manifest's files once complete. ``lease_until``: the runner ``lease_owner`` owns the job until
    then (a runner that died loses it, and another starts it again from the beginning; the first, if
    it was only slow, finds the job no longer its own and stops)."""

    __tablename__ = "export_job"
    __table_args__ = (Index("ix_export_job_status", "status", "created"),)

    id: Mapped[str] = mapped_column(String(RID), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(TENANT))
    client: Mapped[str] = mapped_column(String(128))  # the kick-off's agent (key fingerprint or client id)
    status: Mapped[str] = mapped_column(String(16))  # queued, running, complete, failed, cancelled
    level: Mapped[str] = mapped_column(String(16))  # system, patient
    types: Mapped[str] = mapped_column(Text)  # JSON list of resource types, in export order
    since: Mapped[datetime | None] = mapped_column(UTCDateTime())
    request: Mapped[str] = mapped_column(Text)  # the kick-off URL
    transaction_time: Mapped[datetime] = mapped_column(UTCDateTime())
    created: Mapped[datetime] = mapped_column(UTCDateTime())
    finished: Mapped[datetime | None] = mapped_column(UTCDateTime())
    expires: Mapped[datetime | None] = mapped_column(UTCDateTime())
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    lease_owner: Mapped[str | None] = mapped_column(String(64))  # the runner holding the lease
    progress: Mapped[str] = mapped_column(String(255), default="queued")
    output: Mapped[str] = mapped_column(Text, default="[]")  # JSON [{"type", "file", "count"}, ...]
    errors: Mapped[str] = mapped_column(Text, default="[]")  # JSON [diagnostics, ...] for the error file
    last_polled: Mapped[datetime | None] = mapped_column(UTCDateTime())
