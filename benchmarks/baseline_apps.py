"""Baselines measured in the same run as the service, on the same uvicorn settings and the same body.

- ``POST /echo``: a bare FastAPI endpoint that parses the JSON body and echoes it (framework +
  server + JSON cost: the ceiling any endpoint can reach).
- ``POST /validate``: the validation floor: the body validated with the fhir.resources R4B model
  (``QuestionnaireResponse.model_validate_json``) and the raw bytes echoed.

Served by ``uvicorn benchmarks.baseline_apps:app`` exactly like ``app.main:app`` (one worker).
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from fhir.resources.R4B.questionnaireresponse import QuestionnaireResponse

app = FastAPI(title="cocm-api benchmark baselines")


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/echo")
async def echo(request: Request) -> Response:
    """(a) Parse the JSON body and echo it."""
    return JSONResponse(await request.json())


@app.post("/validate")
async def validate(request: Request) -> Response:
    """(b) Validate with the R4B model, echo the raw bytes."""
    raw = await request.body()
    QuestionnaireResponse.model_validate_json(raw)
    return Response(raw, media_type="application/fhir+json")
