"""Bundle primitives: entry request URLs and the searchset shape."""

from __future__ import annotations

import orjson
import pytest

from app.resources.bundle import entry_url, searchset


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("Patient", ("Patient", "")),
        ("Patient/p1", ("Patient", "/p1")),
        ("/Patient/p1", ("Patient", "/p1")),
        (" Encounter?identifier=a|b ", ("Encounter", "?identifier=a|b")),
        ("http://host:8000/fhir/Patient/p1", ("Patient", "/p1")),
        ("https://ehr.example/base/fhir/Observation?code=x", ("Observation", "?code=x")),
        ("http://host/Patient/p1", ("Patient", "/p1")),  # a server without a /fhir prefix
        ("", ("", "")),
    ],
)
def test_entry_url(url: str, expected: tuple[str, str]) -> None:
    assert entry_url(url) == expected


def test_searchset_embeds_objects_and_stored_bytes_alike() -> None:
    body = orjson.loads(
        searchset(
            "http://h/fhir",
            [("Patient", "p1", {"resourceType": "Patient", "id": "p1"}), ("Patient", "p2", b'{"id":"p2"}')],
            7,
            [{"relation": "self", "url": "http://h/fhir/Patient"}],
        )
    )
    assert (body["type"], body["total"]) == ("searchset", 7)
    assert [e["fullUrl"] for e in body["entry"]] == ["http://h/fhir/Patient/p1", "http://h/fhir/Patient/p2"]
    assert body["entry"][1]["resource"] == {"id": "p2"}
    assert {e["search"]["mode"] for e in body["entry"]} == {"match"}
