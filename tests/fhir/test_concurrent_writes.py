"""Concurrent single-resource requests against a real ``cocm serve`` (uvicorn, the group commit
behind it): every answer is the request's own, retries count once, failures fail alone."""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import load_fixture, run_cocm, serving


def _response(patient: str, n: int, identifier: str | None = None) -> dict[str, Any]:
    body = load_fixture("us-core-phq9-questionnaireresponse.json")
    body.pop("id", None)
    body.pop("identifier", None)
    body.update(
        subject={"reference": f"Patient/{patient}"}, status="completed", authored=f"2026-11-{n % 28 + 1:02}"
    )
    if identifier is not None:
        body["identifier"] = {"system": "urn:test", "value": identifier}
    return body


def test_concurrent_posts_each_get_their_own_answer(tmp_path: Path) -> None:
    assert run_cocm(tmp_path, "migrate")[0] == 0
    with serving(tmp_path, "127.0.0.1") as (url, _log), httpx.Client(base_url=url, timeout=30) as client:
        pid = client.post("/fhir/Patient", json={"resourceType": "Patient"}).json()["id"]
        bodies = (
            [("new", _response(pid, n)) for n in range(48)]
            + [("retry", _response(pid, 99, identifier="same")) for _ in range(8)]
            + [("bad", _response("nobody", n)) for n in range(8)]
        )
        order = [bodies[(n * 37) % len(bodies)] for n in range(len(bodies))]  # interleaved

        def post(item: tuple[str, dict[str, Any]]) -> tuple[str, int, str | None]:
            answer = client.post("/fhir/QuestionnaireResponse", json=item[1])
            return item[0], answer.status_code, answer.json().get("id")

        with ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(post, order))
        assert Counter((kind, status) for kind, status, _ in answers if kind != "retry") == Counter(
            {("new", 201): 48, ("bad", 422): 8}
        )
        retries = [(status, rid) for kind, status, rid in answers if kind == "retry"]
        assert sorted(status for status, _ in retries) == [200] * 7 + [201]
        assert len({rid for _, rid in retries}) == 1  # one resource, however often it was sent
        new_ids = {rid for kind, _, rid in answers if kind == "new"}
        assert len(new_ids) == 48
        stored = client.get("/fhir/QuestionnaireResponse", params={"_count": 500}).json()
        assert stored["total"] == 49
        scores = client.get("/fhir/Observation", params={"_count": 500}).json()
        assert scores["total"] == 49  # each response scored once
        failed = client.get("/fhir/AuditEvent", params={"_count": 500}).json()["entry"]
        outcomes = Counter(
            e["resource"]["outcome"] for e in failed if e["resource"]["subtype"][0]["code"] == "failed"
        )
        assert outcomes == Counter({"4": 8})
