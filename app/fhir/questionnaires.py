"""``Questionnaire``, read only (api.md): the PHQ-9, GAD-7 and PHQ-2 definitions the service scores
(``app.measures.questionnaires``), readable by id (``phq-9``, ``gad-7``, ``phq-2``) and searchable
by ``url`` (a ``|version`` suffix is ignored) and ``_id``; other parameters are ignored. Same
credentials as the rest of ``/fhir``; reads are audited like any read."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from app.deps import ServiceDep
from app.errors import NotFound
from app.fhir.canonical import search_served
from app.fhir.outcome import fhir_response
from app.measures.questionnaires import QUESTIONNAIRES
from app.services.uow import transact

router = APIRouter(prefix="/fhir/Questionnaire", tags=["FHIR Questionnaire"])


@router.get("", summary="Search the instrument definitions")
def search_questionnaires(request: Request, service: ServiceDep) -> Response:
    """A `searchset` of the served Questionnaires matching `url` and `_id` (each may repeat or
    list alternatives with commas)."""
    return search_served(request, service, "Questionnaire", QUESTIONNAIRES.values())


@router.get("/{rid}", summary="Read an instrument definition")
def read_questionnaire(rid: str, service: ServiceDep) -> Response:
    """`phq-9`, `gad-7` or `phq-2`; 404 for anything else."""

    def audited() -> None:
        service.require("Questionnaire", "r", rid=rid)
        if rid not in QUESTIONNAIRES:
            raise NotFound(f"Questionnaire/{rid} is not known")
        service.audit("R", "read", "Questionnaire", rid)

    transact(service, audited)
    return fhir_response(QUESTIONNAIRES[rid])
