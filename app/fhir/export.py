"""Bulk Data ``$export`` over HTTP (export.md; the work is in ``app.services.export``).

- ``GET|POST /fhir/$export`` (system level) and ``GET|POST /fhir/Patient/$export`` (the patient
  compartment): ``Prefer: respond-async`` required (400 otherwise); parameters from the query, or a
  ``Parameters`` body on POST; 202 with ``Content-Location`` = the job's status URL.
- ``GET /fhir/$export-status/{job}``: 202 + ``X-Progress`` + ``Retry-After`` while running, 429 when
  polled too often, 200 + the manifest (``Expires``) once complete. ``DELETE``: 202, the job stops
  and its files go; the URL then answers 404.
- ``GET /fhir/$export-file/{job}/{file}``: ``application/fhir+ndjson``, same credentials.
"""

from __future__ import annotations

from email.utils import format_datetime
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, JSONResponse, Response

from app.deps import ServiceDep, SettingsDep
from app.errors import InvalidInput, Issue
from app.fhir.outcome import fhir_base, fhir_response
from app.resources.outcome import outcome
from app.services import export
from app.services.uow import transact

router = APIRouter(prefix="/fhir", tags=["FHIR Bulk Data export"])

POLL_SECONDS = "1"


def _prefer(request: Request) -> str:
    return ",".join(request.headers.getlist("prefer")).replace(" ", "").lower()


async def _parameters(request: Request) -> dict[str, list[str]]:
    """The query's parameters, and on POST those of a ``Parameters`` body (value[x] as text)."""
    params: dict[str, list[str]] = {}
    for key, value in request.query_params.multi_items():
        params.setdefault(key, []).append(value)
    if request.method == "POST":
        raw = await request.body()
        if raw.strip():
            try:
                body = orjson.loads(raw)
            except orjson.JSONDecodeError:
                raise InvalidInput(
                    Issue("the body must be a FHIR Parameters resource", "structure")
                ) from None
            if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
                raise InvalidInput(Issue("the body must be a FHIR Parameters resource", "structure"))
            for parameter in body.get("parameter") or []:
                name = parameter.get("name") if isinstance(parameter, dict) else None
                values = [v for k, v in parameter.items() if k.startswith("value")] if name else []
                if name and values and isinstance(values[0], str):
                    params.setdefault(name, []).append(values[0])
    return params


async def _kick_off(level: str, request: Request, service: ServiceDep, settings: SettingsDep) -> Response:
    prefer = _prefer(request)
    if "respond-async" not in prefer:
        raise InvalidInput(
            Issue("$export needs the header Prefer: respond-async", "invalid", expression=("Prefer",))
        )
    params = await _parameters(request)
    asked = export.parse_kickoff(level, params, "handling=lenient" in prefer, settings.zone)
    job_id = transact(service, lambda: export.kick_off(service, asked, str(request.url)))
    body = outcome([Issue(f"export job {job_id} accepted", "informational", "information")])
    return fhir_response(body, 202, {"Content-Location": f"{fhir_base(request)}/$export-status/{job_id}"})


@router.get("/$export", summary="Bulk Data export of the tenant", operation_id="export_system_get")
@router.post("/$export", summary="Bulk Data export of the tenant", operation_id="export_system_post")
async def export_system(request: Request, service: ServiceDep, settings: SettingsDep) -> Response:
    """Every exportable resource of the caller's tenant as NDJSON files (asynchronous:
    `Prefer: respond-async`; `_type`, `_since`, `_outputFormat`)."""
    return await _kick_off("system", request, service, settings)


@router.get(
    "/Patient/$export", summary="Bulk Data export of the patients", operation_id="export_patients_get"
)
@router.post(
    "/Patient/$export", summary="Bulk Data export of the patients", operation_id="export_patients_post"
)
async def export_patients(request: Request, service: ServiceDep, settings: SettingsDep) -> Response:
    """The patient compartment: Patient and every type that references a patient."""
    return await _kick_off("patient", request, service, settings)


@router.get("/$export-status/{job_id}", summary="Bulk Data export status")
def export_status(job_id: str, request: Request, service: ServiceDep) -> Response:
    """202 while running, 200 with the manifest once complete."""
    found = transact(service, lambda: export.status(service, job_id, fhir_base(request)))
    if found.state == "too-soon":
        body = outcome([Issue("polled too often: wait for Retry-After", "throttled")])
        return fhir_response(body, 429, {"Retry-After": POLL_SECONDS})
    if found.state == "running":
        return Response(status_code=202, headers={"X-Progress": found.progress, "Retry-After": POLL_SECONDS})
    if found.state == "failed":
        return fhir_response(outcome([Issue(found.progress, "exception")]), 500)
    headers: dict[str, Any] = {}
    if found.expires is not None:
        headers["Expires"] = format_datetime(found.expires, usegmt=True)
    return JSONResponse(found.manifest, headers=headers)


@router.delete("/$export-status/{job_id}", summary="Cancel a Bulk Data export")
def cancel_export(job_id: str, service: ServiceDep, settings: SettingsDep) -> Response:
    """The job stops and its files are removed; the status URL then answers 404."""
    export.cancel(service, settings, job_id)
    return Response(status_code=202)


@router.get("/$export-file/{job_id}/{name}", summary="A Bulk Data export file")
def export_file(job_id: str, name: str, service: ServiceDep, settings: SettingsDep) -> Response:
    """One NDJSON file of a complete export (`application/fhir+ndjson`)."""
    path = transact(service, lambda: export.file_path(service, settings, job_id, name))
    return FileResponse(path, media_type="application/fhir+ndjson")
