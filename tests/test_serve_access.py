"""Closed by default (api.md, Access and tenants): without credentials ``cocm serve`` runs open only
on a loopback address, with a warning; on any other address it refuses to start with a one-line
reason unless ``COCM_ALLOW_ANONYMOUS=true``. The process tests start the real console script."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from app.settings import Settings, SettingsError, is_loopback
from tests.conftest import free_port, run_cocm, serving


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.255.255.254", True),  # all of 127.0.0.0/8
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("LocalHost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("128.0.0.1", False),  # just outside 127.0.0.0/8
        ("10.0.0.5", False),
        ("192.168.1.20", False),
        ("cocm.example.org", False),  # a name may resolve anywhere
        ("", False),
    ],
)
def test_loopback_addresses(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


@pytest.mark.parametrize(
    ("settings", "host", "outcome"),
    [
        ({}, "127.0.0.1", "warning"),
        ({}, "localhost", "warning"),
        ({}, "0.0.0.0", "refused"),
        ({}, "10.1.2.3", "refused"),
        ({"allow_anonymous": True}, "0.0.0.0", "warning"),
        ({"allow_anonymous": True}, "127.0.0.1", "warning"),
        ({"api_keys": "k1"}, "0.0.0.0", None),
        ({"api_keys": "k1:clinic-a"}, "127.0.0.1", None),
        ({"api_keys": " , "}, "0.0.0.0", "refused"),
        ({"smart_clients_file": "clients.json"}, "0.0.0.0", None),
    ],
)
def test_open_access_decision(settings: dict[str, object], host: str, outcome: str | None) -> None:
    configured = Settings(database_url="sqlite://", **settings)  # type: ignore[arg-type]
    if outcome == "refused":
        with pytest.raises(SettingsError) as refused:
            configured.open_access_warning(host)
        message = str(refused.value.code)
        assert "\n" not in message
        assert host in message and "COCM_API_KEYS" in message and "COCM_ALLOW_ANONYMOUS" in message
        return
    warning = configured.open_access_warning(host)
    if outcome is None:
        assert warning is None
    else:
        assert warning is not None and "open" in warning and host in warning


def _warnings(log: Path) -> list[str]:
    messages = []
    for line in log.read_text().splitlines():
        if line.startswith("{"):
            entry = json.loads(line)
            if entry["level"] == "warning":
                messages.append(entry["message"])
    return messages


def test_serve_on_the_network_without_credentials_refuses_in_one_line(tmp_path: Path) -> None:
    code, lines = run_cocm(tmp_path, "serve", "--host", "0.0.0.0", "--port", str(free_port()))
    assert code != 0
    assert len(lines) == 1, lines
    assert "refusing to serve on 0.0.0.0 without credentials" in lines[0]
    assert "COCM_API_KEYS" in lines[0] and "COCM_ALLOW_ANONYMOUS" in lines[0]


def test_serve_on_loopback_without_credentials_is_open_and_says_so(tmp_path: Path) -> None:
    assert run_cocm(tmp_path, "migrate")[0] == 0
    with serving(tmp_path, "127.0.0.1") as (url, log):
        searched = httpx.get(f"{url}/fhir/Patient")
        assert searched.status_code == 200
        assert searched.json()["type"] == "searchset"
    (warning,) = _warnings(log)
    assert "the API is open" in warning


def test_serve_on_the_network_with_allow_anonymous_warns(tmp_path: Path) -> None:
    with serving(tmp_path, "0.0.0.0", allow_anonymous="true") as (url, log):
        assert httpx.get(f"{url}/health").status_code == 200
    (warning,) = _warnings(log)
    assert "open to the network on 0.0.0.0" in warning and "COCM_ALLOW_ANONYMOUS" in warning


def test_serve_on_the_network_with_keys_needs_them(tmp_path: Path) -> None:
    with serving(tmp_path, "0.0.0.0", api_keys="s3cret-key") as (url, log):
        denied = httpx.get(f"{url}/fhir/Patient")
        assert denied.status_code == 401
        assert denied.json()["resourceType"] == "OperationOutcome"
    assert _warnings(log) == []
