"""Bulk Data export (export.md; FHIR Bulk Data Access IG 2.0.0 where it is silent).

- **Kick-off** (``kick_off``): the parameters are checked at once (400 naming the parameter, or,
  with ``Prefer: handling=lenient``, an unknown or unexportable ``_type`` dropped and reported in the
  manifest's ``error`` file); the job is a row of ``export_job`` with ``transactionTime`` = now. The
  caller needs read and search scopes on every exported type. AuditEvent is exported only when
  ``_type`` names it (export.md), and only at system level: the trail is the tenant's, no patient's
  compartment.
- **Snapshot.** Each type is read from the versioned store as of ``transactionTime``
  (``app.store.exports``): versions never change, so a job run later, or again after a restart,
  writes the same files; writes after the kick-off are not in them, and deleted resources are not.
  A write committing in the instant of the kick-off is in or out by its ``meta.lastUpdated``.
- **Runner.** Every server process runs jobs in the background (``Runner``, in the app's lifespan,
  unless ``COCM_EXPORT_IN_PROCESS=false``; ``cocm export-worker`` runs one alone), at most
  ``COCM_EXPORT_CONCURRENCY`` at a time. A job is leased (``FOR UPDATE SKIP LOCKED`` on
  PostgreSQL, so one runner per job) and the lease renewed every second while batches of
  ``COCM_EXPORT_BATCH`` (2,000) resources are written; a runner that dies loses its lease and
  another (or the restarted one) starts the job again from the beginning. Memory stays flat: a
  batch at a time, straight to the file.
- **Files** go to ``COCM_EXPORT_DIR`` (default ``exports`` beside the SQLite file): NDJSON of 1.5
  million resources is gigabytes, which a database row should not carry and a file is served from
  with ``sendfile``; several servers need that folder shared (a volume). One type per file,
  ``COCM_EXPORT_FILE_LINES`` (100,000) lines per file, then ``<Type>-2.ndjson`` and so on. Files and
  the status URL expire ``COCM_EXPORT_RETENTION_HOURS`` after completion; a cancelled job's files
  are removed.
- **Status**: 202 with ``X-Progress`` and ``Retry-After: 1`` while queued or running; 429 with
  ``Retry-After`` when polled again within ``MIN_POLL`` (a client honouring ``Retry-After`` never
  sees it); 200 with the manifest; 500 with an OperationOutcome when the job failed; 404 for a job of
  another tenant, cancelled or expired.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext, suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any, Final
from zoneinfo import ZoneInfo

import orjson
from sqlalchemy.orm import Session, sessionmaker

from app.errors import InvalidInput, Issue, NotFound
from app.resources.dates import parse_fhir_date
from app.resources.validation import PATIENT_REFERENCE_ELEMENTS
from app.services.resources import ResourceService
from app.services.uow import transact
from app.settings import Settings
from app.store import exports
from app.store.db import WRITE_OPTION
from app.store.migrate import current_revision, head_revision
from app.store.models import ExportJobRow

log = logging.getLogger("cocm.export")

EXPORTABLE: Final = (
    "Patient",
    "Practitioner",
    "Organization",
    "QuestionnaireResponse",
    "Observation",
    "Encounter",
    "EpisodeOfCare",
    "Consent",
    "Condition",
)
ASKED_ONLY: Final = ("AuditEvent",)  # export.md: only when _type asks for it (and the caller may read it)
PATIENT_COMPARTMENT: Final = ("Patient", *(t for t in EXPORTABLE if t in PATIENT_REFERENCE_ELEMENTS))
NDJSON_FORMATS: Final = frozenset({"application/fhir+ndjson", "application/ndjson", "ndjson"})
LEASE: Final = timedelta(seconds=10)
RENEW_EVERY: Final = 1.0  # seconds between lease renewals (and progress, and the look for a cancel)
MIN_POLL: Final = timedelta(milliseconds=200)
PURGE_EVERY: Final = timedelta(minutes=1)
SETTLE: Final = timedelta(seconds=60)  # the longest wait for transactions open at the kick-off


@dataclass(frozen=True)
class ExportRequest:
    level: str  # system, patient
    types: tuple[str, ...]
    since: datetime | None
    dropped: tuple[str, ...] = ()  # lenient: asked-for types left out, for the error file


def parse_kickoff(
    level: str, params: Mapping[str, Sequence[str]], lenient: bool, zone: ZoneInfo
) -> ExportRequest:
    """The kick-off parameters (GET query or POST Parameters), 400 naming what is wrong; a
    ``_since`` without an offset is read in the clinic ``zone``."""
    default = EXPORTABLE if level == "system" else PATIENT_COMPARTMENT
    allowed = (*default, *ASKED_ONLY) if level == "system" else default
    for value in params.get("_outputFormat", []):
        if value not in NDJSON_FORMATS:
            raise InvalidInput(
                Issue(
                    f"_outputFormat {value!r} is not supported: use application/fhir+ndjson",
                    "not-supported",
                    expression=("_outputFormat",),
                )
            )
    if params.get("_typeFilter"):
        raise InvalidInput(
            Issue("_typeFilter is not supported", "not-supported", expression=("_typeFilter",))
        )
    since = None
    for value in params.get("_since", []):
        try:
            # a "+01:00" offset sent unencoded in a query arrives as " 01:00"
            since = parse_fhir_date(value.replace(" ", "+"), zone).start(zone)
        except (ValueError, OverflowError):
            raise InvalidInput(
                Issue(f"_since must be a FHIR instant, got {value!r}", "invalid", expression=("_since",))
            ) from None
    asked = [t.strip() for value in params.get("_type", []) for t in value.split(",") if t.strip()]
    unknown = tuple(dict.fromkeys(t for t in asked if t not in allowed))
    if unknown and not lenient:
        raise InvalidInput(
            Issue(
                f"_type {', '.join(unknown)} cannot be exported at this level (exportable: {', '.join(allowed)})",
                "not-supported",
                expression=("_type",),
            )
        )
    types = tuple(dict.fromkeys(t for t in asked if t in allowed)) if asked else default
    return ExportRequest(level, types, since, unknown)


def _require_types(service: ResourceService, types: Sequence[str]) -> None:
    """Read and search scopes on every exported type (403 otherwise)."""
    for rtype in types:
        service.require(rtype, "r", "s")


def kick_off(service: ResourceService, request: ExportRequest, url: str) -> str:
    """Record the job (the caller's tenant and agent) and answer its id."""
    _require_types(service, request.types)
    now = datetime.now(UTC)
    job_id = str(uuid.uuid4())
    service.session.add(
        ExportJobRow(
            id=job_id,
            tenant=service.tenant,
            client=service.actor.agent,
            status="queued",
            level=request.level,
            types=orjson.dumps(list(request.types)).decode(),
            since=request.since,
            request=url,
            transaction_time=now,
            created=now,
            progress="queued",
            output="[]",
            errors=orjson.dumps(
                [f"_type {t} cannot be exported: left out" for t in request.dropped]
            ).decode(),
        )
    )
    service.audit("E", "export")
    return job_id


@dataclass(frozen=True)
class Status:
    state: str  # running, complete, failed, too-soon
    progress: str = ""
    manifest: dict[str, Any] | None = None
    expires: datetime | None = None


def status(service: ResourceService, job_id: str, base: str) -> Status:
    row = _live_job(service, job_id)
    now = datetime.now(UTC)
    too_soon = row.last_polled is not None and now - row.last_polled < MIN_POLL
    row.last_polled = now
    if too_soon:
        return Status("too-soon")
    if row.status in exports.ACTIVE:
        return Status("running", row.progress)
    if row.status == "failed":
        return Status("failed", row.progress)
    errors = orjson.loads(row.errors)
    manifest = _manifest(
        row.transaction_time, row.request, f"{base}/$export-file/{row.id}/", orjson.loads(row.output)
    )
    manifest["requiresAccessToken"] = True
    if errors:
        manifest["error"] = [
            {
                "type": "OperationOutcome",
                "url": f"{base}/$export-file/{row.id}/{ERROR_FILE}",
                "count": len(errors),
            }
        ]
    return Status("complete", manifest=manifest, expires=row.expires)


def _manifest(at: datetime, request: str, files: str, written: list[dict[str, Any]]) -> dict[str, Any]:
    """The manifest of ``written`` files (their URLs ``files`` + name): ``deleted`` only when some
    resources were deleted after ``_since``."""
    entries: dict[bool, list[dict[str, Any]]] = {False: [], True: []}
    for o in written:
        entries[bool(o.get("deleted"))].append(
            {"type": o["type"], "url": files + o["file"], "count": o["count"]}
        )
    manifest: dict[str, Any] = {
        "transactionTime": instant(at),
        "request": request,
        "requiresAccessToken": False,
        "output": entries[False],
        "error": [],
    }
    if entries[True]:
        manifest["deleted"] = entries[True]
    return manifest


ERROR_FILE: Final = "OperationOutcome-errors.ndjson"


def instant(moment: datetime) -> str:
    """A FHIR instant to the microsecond: a ``_since`` of a manifest's ``transactionTime`` is
    exactly that snapshot's instant."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _live_job(service: ResourceService, job_id: str) -> ExportJobRow:
    """The caller's job (export.md: it belongs to the tenant and the credentials' client): 404 for
    another's, a cancelled or an expired one."""
    row = exports.job(service.session, service.tenant, job_id)
    if (
        row is None
        or row.client != service.actor.agent
        or row.status == "cancelled"
        or (row.expires is not None and row.expires < datetime.now(UTC))
    ):
        raise NotFound(f"export job {job_id} is not known")
    return row


def cancel(service: ResourceService, settings: Settings, job_id: str) -> None:
    """The job stops (its runner sees it within a second and removes what it wrote) and its files
    go, after the transaction (no lock held while a large folder is deleted)."""

    def cancelled() -> bool:
        row = _live_job(service, job_id)
        running = (
            row.status == "running" and row.lease_until is not None and row.lease_until > datetime.now(UTC)
        )
        row.status = "cancelled"
        service.audit("D", "export")
        return running

    if not transact(service, cancelled):
        shutil.rmtree(settings.export_path / job_id, ignore_errors=True)


def file_path(service: ResourceService, settings: Settings, job_id: str, name: str) -> Path:
    """A complete job's file (404 otherwise); audited as a download."""
    row = _live_job(service, job_id)
    known = {o["file"] for o in orjson.loads(row.output)} | (
        {ERROR_FILE} if orjson.loads(row.errors) else set()
    )
    if row.status != "complete" or name not in known:
        raise NotFound(f"export file {name} is not known")
    service.audit("R", "export")
    return run_folder(settings, row.id, row.lease_owner or "") / name


# --------------------------------------------------------------------------------------- the runner


class _Stopped(Exception):
    """The runner is shutting down in the middle of a job."""


class Runner:
    """Runs export jobs in the background (module docstring)."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        settings: Settings,
        write_lock: AbstractContextManager[object] | None = None,
    ) -> None:
        self.sessions = sessions
        self.settings = settings
        self.write_lock = write_lock or nullcontext()
        self.running: set[asyncio.Task[None]] = set()
        self.stopping = threading.Event()  # set at shutdown: jobs stop at the next batch
        self.owner = uuid.uuid4().hex  # this runner, as the lease holder
        self.purged_at: datetime | None = None
        self.ready = False  # the schema is at its head revision (checked until it is)

    async def run(self, stop: asyncio.Event, poll_seconds: float = 0.5) -> None:
        """Claim and run jobs until ``stop`` is set. Nothing runs until the schema is at its head
        revision (``cocm migrate``); a failing round (the database down) is logged once, not at
        every poll, until one succeeds."""
        failing = False
        while not stop.is_set():
            try:
                if await asyncio.to_thread(self._schema_ready):
                    await self._round()
                    failing = False
            except Exception as exc:
                if not failing:
                    log.warning("export runner round failed: %s", type(exc).__name__)
                failing = True
            with suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), poll_seconds)
        self.stopping.set()
        if self.running:
            await asyncio.wait(self.running)

    async def _round(self) -> None:
        free = self.settings.export_concurrency - len(self.running)
        if free > 0:
            for job_id in await asyncio.to_thread(self.claim, free):
                task = asyncio.create_task(asyncio.to_thread(self.run_job, job_id))
                self.running.add(task)
                task.add_done_callback(self.running.discard)
        await asyncio.to_thread(self.purge)

    def _schema_ready(self) -> bool:
        if not self.ready:
            with self.sessions() as session:
                self.ready = current_revision(session.get_bind().engine) == head_revision()
        return self.ready

    def _write(self, work: Callable[[Session], Any]) -> Any:
        with self.write_lock, self.sessions() as session, session.begin():
            session.connection(execution_options={WRITE_OPTION: True})
            return work(session)

    def claim(self, limit: int) -> list[str]:
        now = datetime.now(UTC)
        with self.sessions() as session, session.begin():
            if not exports.anything_due(session, now):
                return []
        return list(self._write(lambda s: exports.claim(s, now, LEASE, limit, self.owner)))

    def purge(self) -> None:
        """Expired, failed-and-expired and cancelled jobs go with their files: looked for once a
        minute (a read), removed in a write only when there are some, the files after it."""
        now = datetime.now(UTC)
        if self.purged_at is not None and now - self.purged_at < PURGE_EVERY:
            return
        self.purged_at = now
        with self.sessions() as session, session.begin():
            if not exports.expired(session, now):
                return

        def drop(session: Session) -> list[str]:
            gone = exports.expired(session, now)
            exports.remove(session, gone)
            return gone

        for job_id in self._write(drop):
            shutil.rmtree(self.settings.export_path / job_id, ignore_errors=True)

    def _renew(self, job_id: str, progress: str) -> bool:
        """Extend the lease and record the progress; False when the job is no longer this runner's
        (cancelled, gone, or taken over after this runner was too slow to renew)."""

        def renew(session: Session) -> bool:
            row = exports.owned(session, job_id, self.owner)
            if row is None:
                return False
            row.lease_until = datetime.now(UTC) + LEASE
            row.progress = progress
            return True

        return bool(self._write(renew))

    def _finish(self, job_id: str, **changes: object) -> bool:
        """Record the end of this runner's run of the job; False when it was no longer its own."""

        def finish(session: Session) -> bool:
            row = exports.owned(session, job_id, self.owner)
            for name, value in changes.items():
                if row is not None:
                    setattr(row, name, value)
            return row is not None

        return bool(self._write(finish))

    def run_job(self, job_id: str) -> None:
        folder = run_folder(self.settings, job_id, self.owner)
        try:
            self._run_job(job_id, folder)
        except _Stopped:  # shutdown: queued again at once, for the next runner to start from the beginning
            self._finish(job_id, status="queued", lease_until=None, progress="queued again after a restart")
            shutil.rmtree(folder, ignore_errors=True)
        except Exception:
            log.exception("export job %s failed", job_id)
            expires = datetime.now(UTC) + timedelta(hours=self.settings.export_retention_hours)
            self._finish(
                job_id, status="failed", progress="the export failed: see the server log", expires=expires
            )
            shutil.rmtree(folder, ignore_errors=True)

    def _run_job(self, job_id: str, folder: Path) -> None:
        with self.sessions() as session:
            row = session.get(ExportJobRow, job_id)
            if row is None:
                return
            tenant, at, since = row.tenant, row.transaction_time, row.since
            types: list[str] = orjson.loads(row.types)
            errors: list[str] = orjson.loads(row.errors)
        settle(self.sessions, at, self.stopping)
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        output: list[dict[str, Any]] = []
        for rtype in types:
            if not self._renew(job_id, f"{rtype}: counting"):
                shutil.rmtree(folder, ignore_errors=True)
                return
            with self.sessions() as session, session.begin():
                total = exports.snapshot_count(session, tenant, rtype, at, since)
            renewed = [time.monotonic()]  # lease and progress written once a second, not per batch

            def written(
                done: int, rtype: str = rtype, total: int = total, renewed: list[float] = renewed
            ) -> bool:
                if self.stopping.is_set():
                    raise _Stopped
                if time.monotonic() - renewed[0] < RENEW_EVERY:
                    return True
                renewed[0] = time.monotonic()
                return self._renew(job_id, f"{rtype}: {done:,} of {total:,}")

            files = write_type(self.sessions, self.settings, tenant, rtype, at, since, folder, written)
            if files is None:  # cancelled or taken over
                shutil.rmtree(folder, ignore_errors=True)
                return
            output += files
        write_errors(folder, errors)
        now = datetime.now(UTC)
        done = self._finish(
            job_id,
            status="complete",
            progress="complete",
            lease_until=None,
            output=orjson.dumps(output).decode(),
            finished=now,
            expires=now + timedelta(hours=self.settings.export_retention_hours),
        )
        if not done:
            shutil.rmtree(folder, ignore_errors=True)


def settle(sessions: sessionmaker[Session], at: datetime, stop: threading.Event | None = None) -> None:
    """Wait (up to ``SETTLE``) until every writing transaction that began by ``at`` has ended, so
    that every version stamped up to ``at`` is committed before the snapshot is read (PostgreSQL;
    on SQLite the one writer at a time already ordered them before the claim)."""
    deadline = time.monotonic() + SETTLE.total_seconds()
    while time.monotonic() < deadline and not (stop is not None and stop.is_set()):
        with sessions() as session, session.begin():
            if not exports.writers_open_since(session, at):
                return
        time.sleep(0.05)


def run_folder(settings: Settings, job_id: str, owner: str) -> Path:
    """One run's files: a run that took a job over never writes where a slower one still does."""
    return settings.export_path / job_id / owner


def write_type(
    sessions: sessionmaker[Session],
    settings: Settings,
    tenant: str,
    rtype: str,
    at: datetime,
    since: datetime | None,
    folder: Path,
    written: Callable[[int], bool],
) -> list[dict[str, Any]] | None:
    """One type's snapshot as NDJSON files in ``folder`` (``<Type>.ndjson``, then ``<Type>-2.ndjson``
    after ``COCM_EXPORT_FILE_LINES`` lines ...), ``COCM_EXPORT_BATCH`` at a time, each batch in a read
    transaction of its own; with ``since``, then the resources deleted after it (Bulk Data IG 2.0
    ``deleted``: per resource a transaction Bundle with one DELETE entry, ``<Type>-deleted.ndjson``).
    ``written(lines so far)`` after each batch may answer False to stop (None is answered then).
    Answers the files as manifest entries (type, file, count, and ``deleted`` for deletions)."""
    files: list[dict[str, Any]] = []
    for deleted in (False, True) if since is not None and rtype not in ASKED_ONLY else (False,):
        stem = f"{rtype}-deleted" if deleted else rtype
        parts: list[dict[str, Any]] = []  # this pass's files
        after, done = "", 0
        out: IO[str] | None = None
        try:
            while True:
                with sessions() as session, session.begin():
                    batch = exports.snapshot_batch(
                        session, tenant, rtype, at, since, after, settings.export_batch, deleted=deleted
                    )
                if not batch:
                    break
                for rid, content in batch:
                    if out is None or parts[-1]["count"] >= settings.export_file_lines:
                        if out is not None:
                            out.close()
                        name = f"{stem}.ndjson" if not parts else f"{stem}-{len(parts) + 1}.ndjson"
                        out = (folder / name).open("w", encoding="utf-8")
                        parts.append(
                            {"type": "Bundle", "file": name, "count": 0, "deleted": True}
                            if deleted
                            else {"type": rtype, "file": name, "count": 0}
                        )
                    out.write(_deletion(rtype, rid) if deleted else content)
                    out.write("\n")
                    parts[-1]["count"] += 1
                done += len(batch)
                after = batch[-1][0]
                if not written(done):
                    return None
        finally:
            if out is not None:
                out.close()
        files += parts
    return files


def _deletion(rtype: str, rid: str) -> str:
    entry = {"request": {"method": "DELETE", "url": f"{rtype}/{rid}"}}
    return orjson.dumps({"resourceType": "Bundle", "type": "transaction", "entry": [entry]}).decode()


def write_errors(folder: Path, errors: Sequence[str]) -> None:
    """The ``error`` file: one OperationOutcome per problem (the types a lenient kick-off dropped)."""
    if not errors:
        return
    with (folder / ERROR_FILE).open("wb") as out:
        for diagnostics in errors:
            issue = {"severity": "warning", "code": "not-supported", "diagnostics": diagnostics}
            out.write(orjson.dumps({"resourceType": "OperationOutcome", "issue": [issue]}) + b"\n")


def export_to_folder(
    sessions: sessionmaker[Session],
    settings: Settings,
    service: ResourceService,
    asked: ExportRequest,
    folder: Path,
    progress: Callable[[str, int, int], None],
) -> dict[str, Any]:
    """``cocm export``: the snapshot as of now written straight to ``folder``, with the manifest
    (``manifest.json``, file names as ``url``); ``progress(type, done, total)`` after each batch.
    Checked and audited like a kick-off (``service``'s actor)."""
    if folder.exists() and any(folder.iterdir()):
        raise InvalidInput(Issue(f"{folder} is not empty: export to a new or empty folder", "invalid"))
    now = datetime.now(UTC)

    def audited() -> None:
        _require_types(service, asked.types)
        service.audit("E", "export")

    transact(service, audited)
    settle(sessions, now)
    folder.mkdir(parents=True, exist_ok=True)
    output: list[dict[str, Any]] = []
    for rtype in asked.types:
        with sessions() as session, session.begin():
            total = exports.snapshot_count(session, service.tenant, rtype, now, asked.since)
        progress(rtype, 0, total)

        def written(done: int, rtype: str = rtype, total: int = total) -> bool:
            progress(rtype, done, total)
            return True

        # None only when ``written`` says stop, which it never does here
        output += (
            write_type(sessions, settings, service.tenant, rtype, now, asked.since, folder, written) or []
        )
    manifest = _manifest(now, f"cocm export ({asked.level}: {', '.join(asked.types)})", "", output)
    (folder / "manifest.json").write_bytes(orjson.dumps(manifest, option=orjson.OPT_INDENT_2))
    return manifest
