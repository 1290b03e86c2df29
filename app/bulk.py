"""Bulk import (``cocm import FILE``): an NDJSON file (one resource per line, as a FHIR bulk export
writes it) or a Bundle JSON file (``transaction``, ``batch`` or ``collection``), loaded in batches
through the service the API writes with (``ResourceService`` inside ``app.services.uow.transact``), so
validation, scoring, facts and the audit trail are those of ``POST``/``PUT /fhir/...``.

Choices:

- **What each item does.** A Bundle entry with a ``request`` is honoured like a transaction entry:
  ``POST`` is a create (``ifNoneExist`` respected), ``PUT Type/id`` an update (update-as-create),
  ``PUT Type?identifier=...`` a conditional update; ``DELETE`` and ``GET`` are refused (an import
  does not delete). An NDJSON line or a ``collection`` entry has no request: a resource with an
  ``id`` is put at that id (so ``Patient/<id>`` references between lines keep working, as after a
  bulk export), one without an ``id`` is created with a server id.
- **Idempotent.** A create whose identifier is stored with the same content answers the stored
  resource (api.md), and a put whose content equals the stored version (``id`` and ``meta``
  versionId/lastUpdated aside) writes nothing: importing a file twice adds nothing. A resource with
  neither an ``id`` nor an identifier cannot be recognised and would be created again; the progress
  file keeps a resumed import from doing that.
- **Order.** Items run in file order, except that a Bundle's Patients run first (as in a
  transaction). A resource must come after the Patient it names (in an NDJSON file: load
  ``Patient.ndjson`` first, or put Patients on the first lines). ``urn:uuid:`` (or any other)
  ``fullUrl`` of a written entry is rewritten to ``Type/id`` in the references of later entries.
- **Batches.** ``batch`` items are committed in one transaction. When one of them fails the batch
  is rolled back and replayed item by item, each in its own transaction, so that the bad item is
  named and the good ones are kept.
- **Bad items.** A bad line (unparseable JSON, an unsupported type, invalid FHIR, a business rule,
  a conflicting duplicate) is reported with its line number (``line 12``) or entry
  (``Bundle.entry[3]``) and the diagnostics the API would give (never the content), and the import
  goes on; the command exits non-zero when any item failed. With ``stop_on_error`` it stops at the
  first bad item: everything before it is committed and the progress file points at it, so fixing
  the line and running the same command again resumes there.
- **Resumable.** ``<FILE>.progress`` (JSON: tenant, items committed, fullUrl rewrites so far) is
  written after every committed batch and deleted when the file is done. A new run resumes after
  the committed items (a line count for NDJSON, blank lines included; an entry count for a
  Bundle, Patients-first order). A crash between a commit and the progress write replays one
  batch, which the idempotency above makes harmless. ``restart`` ignores the progress file.
- **Edge limits** of the HTTP API (body size, entries per Bundle) do not apply to a file; the JSON
  nesting limit does (``COCM_MAX_JSON_DEPTH``, per line or for the whole Bundle).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy.exc import DataError
from sqlalchemy.orm import Session

from app.domain import Actor
from app.errors import DomainError, InvalidInput, Issue
from app.resources.validation import SUPPORTED_TYPES, parse_json
from app.services.bundles import entry_request, execute_entry, rewrite_references
from app.services.resources import ResourceService
from app.services.uow import transact
from app.settings import DEFAULT_TENANT, Settings
from app.store.repository import WriteResult

IMPORT_ACTOR = Actor("cli:import")
NDJSON_SUFFIXES = {".ndjson", ".jsonl"}
BUNDLE_TYPES = {"transaction", "batch", "collection"}
PROGRESS_VERSION = 1
IMPORT_METHODS = {"POST", "PUT"}  # an import does not delete, and has no one to answer a read


class ImportAborted(Exception):
    """The file cannot be imported at all (not a Bundle, a progress file of another tenant, ...)."""


@dataclass(frozen=True)
class Failure:
    label: str  # "line 12" or "Bundle.entry[3]"
    message: str


@dataclass(frozen=True)
class _Item:
    position: int  # items consumed once this one is done (the progress count)
    label: str
    entry: dict[str, Any] | None  # a Bundle entry shape: resource, optional request and fullUrl
    error: str | None = None  # the line could not even be read


@dataclass
class ImportReport:
    total: int  # items in the file
    resumed_from: int = 0  # items committed by an earlier run
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    failures: list[Failure] = field(default_factory=list)
    stopped: bool = False  # stop_on_error stopped at a failure; the progress file was kept


def progress_path(path: Path) -> Path:
    return path.with_name(path.name + ".progress")


def import_service(session: Session, settings: Settings, tenant: str = DEFAULT_TENANT) -> ResourceService:
    """The service an import writes with (audit agent ``cli:import``)."""
    return ResourceService(
        session,
        tenant,
        settings.zone,
        IMPORT_ACTOR,
        allowed_hosts=settings.allowed_hosts,
        billing=settings.billing,
        care=settings.care,
    )


def import_file(
    path: Path,
    service: ResourceService,
    settings: Settings,
    *,
    batch: int = 100,
    stop_on_error: bool = False,
    restart: bool = False,
    on_start: Callable[[int, int], None] | None = None,
    on_advance: Callable[[int], None] | None = None,
    on_failure: Callable[[Failure], None] | None = None,
) -> ImportReport:
    """Import ``path`` into the service's tenant. ``on_start(total, resumed_from)``, ``on_advance(n)``
    and ``on_failure(failure)`` report progress as it happens."""
    if batch < 1:
        raise ImportAborted("the batch size must be at least 1")
    items, total = _read(path, settings.max_json_depth)
    progress = progress_path(path)
    committed, refs = (0, {}) if restart else _load_progress(progress, service.tenant)
    report = ImportReport(total=total, resumed_from=min(committed, total))
    if on_start is not None:
        on_start(total, report.resumed_from)
    runner = _Runner(service, refs, report, stop_on_error, on_failure)
    pending: list[_Item] = []

    def flush() -> bool:
        nonlocal committed
        position = runner.run(pending)
        if position > committed:
            _save_progress(progress, service.tenant, position, runner.refs)
            advanced, committed = position - committed, position
            if on_advance is not None:
                on_advance(advanced)
        pending.clear()
        return not report.stopped

    for item in items:
        if item.position <= committed:
            continue
        pending.append(item)
        if len(pending) >= batch and not flush():
            return report
    if pending and not flush():
        return report
    if on_advance is not None and total > committed:
        on_advance(total - committed)
    with contextlib.suppress(FileNotFoundError):
        progress.unlink()
    return report


class _Runner:
    def __init__(
        self,
        service: ResourceService,
        refs: dict[str, str],
        report: ImportReport,
        stop_on_error: bool,
        on_failure: Callable[[Failure], None] | None,
    ) -> None:
        self.service = service
        self.refs = refs
        self.report = report
        self.stop_on_error = stop_on_error
        self.on_failure = on_failure

    def run(self, items: list[_Item]) -> int:
        """Commit ``items``; the progress position reached (all of them, or up to the first failure
        when stopping on errors)."""
        if not items:
            return 0
        readable = all(item.error is None for item in items)
        if readable:
            saved = dict(self.refs)
            try:
                outcomes = transact(self.service, lambda: [self._apply(item) for item in items])
            except (DomainError, DataError):  # rolled back: replay item by item to name the bad one
                self.refs = saved
            else:
                for outcome in outcomes:
                    self._count(outcome)
                return items[-1].position
        return self._one_by_one(items)

    def _one_by_one(self, items: list[_Item]) -> int:
        position = items[0].position - 1
        for item in items:
            if item.error is not None:
                self._fail(item.label, item.error)
            else:
                saved = dict(self.refs)
                try:
                    self._count(transact(self.service, partial(self._apply, item)))
                except DomainError as exc:
                    self.refs = saved
                    self._fail(item.label, _message(exc))
                except DataError:
                    self.refs = saved
                    self._fail(item.label, "a value is out of range for storage")
            if self.report.stopped:
                return position
            position = item.position
        return position

    def _fail(self, label: str, message: str) -> None:
        failure = Failure(label, message)
        self.report.failures.append(failure)
        if self.on_failure is not None:
            self.on_failure(failure)
        if self.stop_on_error:
            self.report.stopped = True

    def _count(self, outcome: str) -> None:
        if outcome == "created":
            self.report.created += 1
        elif outcome == "updated":
            self.report.updated += 1
        else:
            self.report.unchanged += 1

    # ------------------------------------------------------------ one item
    def _apply(self, item: _Item) -> str:
        """Write one item in the current transaction: "created", "updated" or "unchanged"."""
        entry = item.entry
        assert entry is not None
        resource = _rewritten(entry.get("resource"), self.refs)
        if not isinstance(resource, dict):
            raise InvalidInput(Issue("the entry has no resource", "required"))
        rtype = resource.get("resourceType")
        if not isinstance(rtype, str) or rtype not in SUPPORTED_TYPES:
            raise InvalidInput(
                Issue(
                    f"resourceType must be one of {', '.join(SUPPORTED_TYPES)}",
                    "not-supported",
                    expression=("resourceType",),
                )
            )
        if entry.get("request") is None:  # an NDJSON line or a collection entry: put at its id
            rid = resource.get("id")
            if isinstance(rid, str) and rid:
                result = self.service.update(rtype, rid, resource, unless_same=True)
            else:
                result = self.service.create(rtype, resource)
        else:
            request = entry_request(entry, item.label)
            method, _, rest = request
            if method not in IMPORT_METHODS or (method == "PUT" and not rest[1:]):
                raise InvalidInput(
                    Issue(
                        f"request {method} {rtype}{rest} is not supported by an import "
                        "(POST Type, PUT Type/id or PUT Type?query)",
                        "not-supported",
                    )
                )
            found = execute_entry(self.service, entry, request, resource, unless_same=True)
            assert isinstance(found, WriteResult)  # POST and PUT write
            result = found
        full_url = entry.get("fullUrl")
        if isinstance(full_url, str) and full_url and full_url != f"{rtype}/{result.stored.id}":
            self.refs[full_url] = f"{rtype}/{result.stored.id}"
        return _outcome(result)


def _outcome(result: WriteResult) -> str:
    if result.created:
        return "created"
    return "updated" if result.changed else "unchanged"


# ---------------------------------------------------------------- reading
def _read(path: Path, max_depth: int) -> tuple[Iterator[_Item], int]:
    if not path.is_file():
        raise ImportAborted(f"{path} is not a file")
    if path.suffix.lower() in NDJSON_SUFFIXES:
        with path.open("rb") as handle:
            total = sum(1 for _ in handle)
        return _ndjson_items(path, max_depth), total
    try:
        body = parse_json(path.read_bytes(), max_depth)
    except DomainError as exc:
        raise ImportAborted(f"{path.name}: {_message(exc)} (an NDJSON file must end in .ndjson)") from None
    if body.get("resourceType") != "Bundle" or body.get("type") not in BUNDLE_TYPES:
        raise ImportAborted(
            f"{path.name} is not a transaction, batch or collection Bundle "
            "(an NDJSON file must end in .ndjson or .jsonl)"
        )
    entries = body.get("entry") or []
    if not isinstance(entries, list):
        raise ImportAborted(f"{path.name}: Bundle.entry must be a list")
    return _bundle_items(entries), len(entries)


def _ndjson_items(path: Path, max_depth: int) -> Iterator[_Item]:
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, 1):
            line = raw.strip()
            if not line:
                continue
            label = f"line {number}"
            try:
                resource = parse_json(line, max_depth)
            except DomainError as exc:
                yield _Item(number, label, None, _message(exc))
                continue
            yield _Item(number, label, {"resource": resource})


def _bundle_items(entries: list[Any]) -> Iterator[_Item]:
    def is_patient(entry: Any) -> bool:
        return isinstance(entry, dict) and (entry.get("resource") or {}).get("resourceType") == "Patient"

    order = sorted(range(len(entries)), key=lambda i: (not is_patient(entries[i]), i))
    for position, index in enumerate(order, 1):
        entry = entries[index]
        label = f"Bundle.entry[{index}]"
        if not isinstance(entry, dict):
            yield _Item(position, label, None, "the entry must be an object")
        else:
            yield _Item(position, label, entry)


# ---------------------------------------------------------------- progress
def _load_progress(progress: Path, tenant: str) -> tuple[int, dict[str, str]]:
    try:
        data = orjson.loads(progress.read_bytes())
    except FileNotFoundError:
        return 0, {}
    except orjson.JSONDecodeError:
        raise ImportAborted(f"{progress} is not a progress file; delete it (or --restart)") from None
    if not isinstance(data, dict) or data.get("version") != PROGRESS_VERSION:
        raise ImportAborted(f"{progress} is not a progress file of this version; delete it (or --restart)")
    if data.get("tenant") != tenant:
        raise ImportAborted(
            f"{progress} belongs to an import into tenant {data.get('tenant')!r}, not {tenant!r}; "
            "finish that one or start over with --restart"
        )
    committed = data.get("committed")
    refs = data.get("references") or {}
    if not isinstance(committed, int) or committed < 0 or not isinstance(refs, dict):
        raise ImportAborted(f"{progress} is damaged; delete it (or --restart)")
    return committed, {str(k): str(v) for k, v in refs.items()}


def _save_progress(progress: Path, tenant: str, committed: int, refs: dict[str, str]) -> None:
    """Write atomically (a temporary file renamed over the old one)."""
    data = {"version": PROGRESS_VERSION, "tenant": tenant, "committed": committed, "references": refs}
    temporary = progress.with_name(progress.name + ".tmp")
    temporary.write_bytes(orjson.dumps(data))
    os.replace(temporary, progress)


# ---------------------------------------------------------------- helpers
def _message(exc: DomainError, limit: int = 5) -> str:
    """The API's diagnostics (never the content), with the FHIRPath when they do not name it."""
    issues = exc.issues or [Issue(str(exc))]
    parts = [
        issue.diagnostics
        + (
            f" ({issue.expression[0]})"
            if issue.expression and issue.expression[0] not in issue.diagnostics
            else ""
        )
        for issue in issues[:limit]
    ]
    more = f"; and {len(issues) - limit} more" if len(issues) > limit else ""
    return "; ".join(parts) + more


def _rewritten(node: Any, refs: dict[str, str]) -> Any:
    """``node`` with references to rewritten fullUrls pointed at their targets (the Bundle code's)."""
    return rewrite_references(node, refs) if refs else node
