"""Bulk Data export (export.md; FHIR Bulk Data Access IG 2.0.0 where it is silent).

- **Kick-off** (``kick_off``): the parameters are checked at once (400 naming the parameter, or,
  with ``Prefer: handling=lenient``, an unknown or unexportable ``_type`` dropped and reported in the
  manifest's ``error`` file); the job is a row of ``export_job`` with ``transactionTime`` = now. The
  caller needs read and search scopes on every exported type.
- **Snapshot.** Each type is read from the versioned store as of ``transactionTime``
  (``app.store.exports``): versions never change, so a job run later, or again after a restart,
  writes the same files; writes after the kick-off are not in them, and deleted resources are not.
  A write committing in the instant of the kick-off is in or out by its ``meta.lastUpdated``.
- **Runner.** Every server process runs jobs in the background (``Runner``, in the app's lifespan,
  unless ``COCM_EXPORT_IN_PROCESS=false``; ``cocm export-worker`` runs one alone), at most
  ``COCM_EXPORT_CONCURRENCY`` at a time. A job is leased (``FOR UPDATE SKIP LOCKED`` on
  PostgreSQL, so one runner per job) and the lease renewed every second while batches of 2,000
  resources are written; a runner that dies loses its lease and another (or the restarted one) starts the job
  again from the beginning. Memory stays flat: a batch at a time, straight to the file.
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

from app.domain import Actor
from app.errors import InvalidInput, Issue, NotFound
from app.resources.dates import parse_fhir_date
from app.resources.validation import PATIENT_REFERENCE_ELEMENTS
from app.services.resources import ResourceService
from app.services.uow import transact
from app.settings import Settings
from app.store import exports
from app.store.db import WRITE_OPTION
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
PATIENT_COMPARTMENT: Final = ("Patient", *(t for t in EXPORTABLE if t in PATIENT_REFERENCE_ELEMENTS))
NDJSON_FORMATS: Final = frozenset({"application/fhir+ndjson", "application/ndjson", "ndjson"})
BATCH: Final = 2000
LEASE: Final = timedelta(seconds=10)
RENEW_EVERY: Final = 1.0  # seconds between lease renewals (and progress, and the look for a cancel)
MIN_POLL: Final = timedelta(milliseconds=200)
PURGE_EVERY: Final = timedelta(minutes=1)
EXPORT_ACTOR: Final = Actor("system:export")


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
    allowed = EXPORTABLE if level == "system" else PATIENT_COMPARTMENT
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
            since = parse_fhir_date(value, zone).start(zone)
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
    types = tuple(dict.fromkeys(t for t in asked if t in allowed)) if asked else allowed
    return ExportRequest(level, types, since, unknown)


def kick_off(service: ResourceService, request: ExportRequest, url: str) -> str:
    """Record the job (the caller's tenant and agent) and answer its id."""
    for rtype in request.types:
        service.require(rtype, "r", "s")
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
    files = f"{base}/$export-file/{row.id}/"
    errors = orjson.loads(row.errors)
    manifest = {
        "transactionTime": row.transaction_time.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "request": row.request,
        "requiresAccessToken": True,
        "output": [
            {"type": o["type"], "url": files + o["file"], "count": o["count"]}
            for o in orjson.loads(row.output)
        ],
        "error": [{"type": "OperationOutcome", "url": files + ERROR_FILE, "count": len(errors)}]
        if errors
        else [],
    }
    return Status("complete", manifest=manifest, expires=row.expires)


ERROR_FILE: Final = "OperationOutcome-errors.ndjson"


def _live_job(service: ResourceService, job_id: str) -> ExportJobRow:
    row = exports.job(service.session, service.tenant, job_id)
    if (
        row is None
        or row.status == "cancelled"
        or (row.expires is not None and row.expires < datetime.now(UTC))
    ):
        raise NotFound(f"export job {job_id} is not known")
    return row


def cancel(service: ResourceService, settings: Settings, job_id: str) -> None:
    """The job stops (its runner sees it at the next batch) and its files go."""
    row = _live_job(service, job_id)
    running = row.status == "running" and row.lease_until is not None and row.lease_until > datetime.now(UTC)
    row.status = "cancelled"
    service.audit("D", "export")
    if not running:
        shutil.rmtree(settings.export_path / row.id, ignore_errors=True)


def file_path(service: ResourceService, settings: Settings, job_id: str, name: str) -> Path:
    """A complete job's file (404 otherwise); audited as a download."""
    row = _live_job(service, job_id)
    known = {o["file"] for o in orjson.loads(row.output)} | (
        {ERROR_FILE} if orjson.loads(row.errors) else set()
    )
    if row.status != "complete" or name not in known:
        raise NotFound(f"export file {name} is not known")
    service.audit("R", "export")
    return settings.export_path / row.id / name


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
        self.purged_at: datetime | None = None

    async def run(self, stop: asyncio.Event, poll_seconds: float = 0.5) -> None:
        while not stop.is_set():
            try:
                free = self.settings.export_concurrency - len(self.running)
                if free > 0:
                    for job_id in await asyncio.to_thread(self.claim, free):
                        task = asyncio.create_task(asyncio.to_thread(self.run_job, job_id))
                        self.running.add(task)
                        task.add_done_callback(self.running.discard)
                await asyncio.to_thread(self.purge)
            except Exception:  # a database outage: try again at the next poll
                log.exception("export runner round failed")
            with suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), poll_seconds)
        self.stopping.set()
        if self.running:
            await asyncio.wait(self.running)

    def _write(self, work: Callable[[Session], Any]) -> Any:
        with self.write_lock, self.sessions() as session, session.begin():
            session.connection(execution_options={WRITE_OPTION: True})
            return work(session)

    def claim(self, limit: int) -> list[str]:
        now = datetime.now(UTC)
        with self.sessions() as session, session.begin():
            if not exports.anything_due(session, now):
                return []
        return list(self._write(lambda s: exports.claim(s, now, LEASE, limit)))

    def purge(self) -> None:
        """Expired and cancelled jobs go with their files: looked for once a minute (a read), removed
        in a write only when there are some."""
        now = datetime.now(UTC)
        if self.purged_at is not None and now - self.purged_at < PURGE_EVERY:
            return
        self.purged_at = now
        with self.sessions() as session, session.begin():
            if not exports.expired(session, now):
                return

        def drop(session: Session) -> None:
            gone = exports.expired(session, now)
            for job_id in gone:
                shutil.rmtree(self.settings.export_path / job_id, ignore_errors=True)
            exports.remove(session, gone)

        self._write(drop)

    def _renew(self, job_id: str, progress: str) -> bool:
        """Extend the lease and record the progress; False when the job was cancelled or is gone."""

        def renew(session: Session) -> bool:
            row = session.get(ExportJobRow, job_id, with_for_update=True)
            if row is None or row.status != "running":
                return False
            row.lease_until = datetime.now(UTC) + LEASE
            row.progress = progress
            return True

        return bool(self._write(renew))

    def run_job(self, job_id: str) -> None:
        try:
            self._run_job(job_id)
        except _Stopped:  # shutdown: queued again, for the next runner to start from the beginning

            def requeue(session: Session) -> None:
                row = session.get(ExportJobRow, job_id)
                if row is not None and row.status == "running":
                    row.status, row.lease_until, row.progress = "queued", None, "queued again after a restart"

            self._write(requeue)
        except Exception:
            log.exception("export job %s failed", job_id)

            def failed(session: Session) -> None:
                row = session.get(ExportJobRow, job_id)
                if row is not None and row.status == "running":
                    row.status, row.progress, row.lease_until = (
                        "failed",
                        "the export failed: see the server log",
                        None,
                    )

            self._write(failed)

    def _run_job(self, job_id: str) -> None:
        with self.sessions() as session:
            row = session.get(ExportJobRow, job_id)
            if row is None:
                return
            tenant, at, since = row.tenant, row.transaction_time, row.since
            types: list[str] = orjson.loads(row.types)
            errors: list[str] = orjson.loads(row.errors)
        folder = self.settings.export_path / job_id
        shutil.rmtree(folder, ignore_errors=True)  # a run after a restart starts again
        folder.mkdir(parents=True)
        with self.sessions() as session, session.begin():
            totals = {t: exports.snapshot_count(session, tenant, t, at, since) for t in types}
        output: list[dict[str, Any]] = []
        renewed = [time.monotonic()]  # the lease and progress are written once a second, not per batch
        for rtype in types:

            def written(done: int, rtype: str = rtype) -> bool:
                if self.stopping.is_set():
                    raise _Stopped
                if time.monotonic() - renewed[0] < RENEW_EVERY:
                    return True
                renewed[0] = time.monotonic()
                return self._renew(job_id, f"{rtype}: {done:,} of {totals[rtype]:,}")

            files = write_type(
                self.sessions, tenant, rtype, at, since, folder, self.settings.export_file_lines, written
            )
            if files is None:  # cancelled
                shutil.rmtree(folder, ignore_errors=True)
                return
            output += files
        write_errors(folder, errors)

        def complete(session: Session) -> None:
            row = session.get(ExportJobRow, job_id, with_for_update=True)
            if row is None or row.status != "running":
                shutil.rmtree(folder, ignore_errors=True)
                return
            now = datetime.now(UTC)
            row.status, row.progress, row.lease_until = "complete", "complete", None
            row.output = orjson.dumps(output).decode()
            row.finished = now
            row.expires = now + timedelta(hours=self.settings.export_retention_hours)

        self._write(complete)


def write_type(
    sessions: sessionmaker[Session],
    tenant: str,
    rtype: str,
    at: datetime,
    since: datetime | None,
    folder: Path,
    file_lines: int,
    written: Callable[[int], bool],
) -> list[dict[str, Any]] | None:
    """One type's snapshot as NDJSON files in ``folder`` (``<Type>.ndjson``, then ``<Type>-2.ndjson``
    after ``file_lines`` lines ...), a batch at a time, each in a read transaction of its own;
    ``written(lines so far)`` after each batch may answer False to stop (None is answered then).
    Answers the files as manifest entries (type, file, count)."""
    files: list[dict[str, Any]] = []
    after, done = "", 0
    out: IO[str] | None = None
    try:
        while True:
            with sessions() as session, session.begin():
                batch = exports.snapshot_batch(session, tenant, rtype, at, since, after, BATCH)
            if not batch:
                break
            for _, content in batch:
                if out is None or files[-1]["count"] >= file_lines:
                    if out is not None:
                        out.close()
                    name = f"{rtype}.ndjson" if not files else f"{rtype}-{len(files) + 1}.ndjson"
                    out = (folder / name).open("w", encoding="utf-8")
                    files.append({"type": rtype, "file": name, "count": 0})
                out.write(content)
                out.write("\n")
                files[-1]["count"] += 1
            done += len(batch)
            after = batch[-1][0]
            if not written(done):
                return None
    finally:
        if out is not None:
            out.close()
    return files


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
    now = datetime.now(UTC)

    def audited() -> None:
        for rtype in asked.types:
            service.require(rtype, "r", "s")
        service.audit("E", "export")

    transact(service, audited)
    folder.mkdir(parents=True, exist_ok=True)
    output: list[dict[str, Any]] = []
    for rtype in asked.types:
        with sessions() as session, session.begin():
            total = exports.snapshot_count(session, service.tenant, rtype, now, asked.since)
        progress(rtype, 0, total)

        def written(done: int, rtype: str = rtype, total: int = total) -> bool:
            progress(rtype, done, total)
            return True

        output += (
            write_type(
                sessions, service.tenant, rtype, now, asked.since, folder, settings.export_file_lines, written
            )
            or []
        )
    manifest = {
        "transactionTime": now.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "request": f"cocm export ({asked.level}: {', '.join(asked.types)})",
        "requiresAccessToken": False,
        "output": [{"type": o["type"], "url": o["file"], "count": o["count"]} for o in output],
        "error": [],
    }
    (folder / "manifest.json").write_bytes(orjson.dumps(manifest, option=orjson.OPT_INDENT_2))
    return manifest
