"""A committed event survives the server process: ``cocm serve`` is killed (SIGKILL) while it is
delivering, started again, and the event arrives (at least once, notifications.md)."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import httpx

from tests.api.scenario import phq9_response
from tests.conftest import COCM, FHIR_JSON, cocm_env, free_port, run_cocm, start_cocm
from tests.notifications.support import event_numbers, receiver, subscription_body

ITEM9 = [1, 1, 1, 1, 1, 1, 1, 1, 3]
SETTINGS = {"subscription_allowed_hosts": "127.0.0.1", "notify_poll_seconds": "0.05"}
HEADERS = {"Content-Type": FHIR_JSON}


def _migrated(tmp_path: Path) -> tuple[int, Path, str]:
    """A migrated SQLite file in ``tmp_path``; a free port, the server log and its FHIR base."""
    assert run_cocm(tmp_path, "migrate")[0] == 0
    port = free_port()
    return port, tmp_path / "serve.log", f"http://127.0.0.1:{port}/fhir"


def test_an_event_is_delivered_after_the_server_is_killed(tmp_path: Path) -> None:
    port, log, url = _migrated(tmp_path)
    with receiver() as hook:
        server = start_cocm(tmp_path, "127.0.0.1", port, log, **SETTINGS)
        try:
            pid = httpx.post(f"{url}/Patient", json={"resourceType": "Patient"}, headers=HEADERS).json()["id"]
            body = subscription_body(hook.url, timeout=1)
            sid = httpx.post(f"{url}/Subscription", json=body, headers=HEADERS).json()["id"]
            hook.wait_for(lambda r: len(r.bundles("handshake")) == 1)
            hook.delay = 3.0  # the receiver is slow: the server is killed mid-delivery
            created = httpx.post(
                f"{url}/QuestionnaireResponse", json=phq9_response(pid, "2026-01-05", ITEM9), headers=HEADERS
            )
            assert created.status_code == 201  # committed
            hook.wait_for(lambda r: r.started == 2)
        finally:
            server.kill()  # SIGKILL: no shutdown, no lease given back
            server.wait(10)
        killed_at = time.monotonic()
        hook.delay = 0.0
        server = start_cocm(tmp_path, "127.0.0.1", port, log, **SETTINGS)
        try:
            hook.wait_for(
                lambda r: any(
                    e["arrived"] > killed_at for e in r.received if event_numbers([e["body"]]) == [1]
                ),
                timeout=20,
            )
            status = httpx.get(f"{url}/Subscription/{sid}/$status").json()
            parameters = {p["name"]: p for p in status["entry"][0]["resource"]["parameter"]}
            assert parameters["events-since-subscription-start"]["valueString"] == "1"
        finally:
            server.terminate()
            server.wait(10)
    after_restart = [e for e in hook.received if e["arrived"] > killed_at]
    assert [event_numbers([e["body"]]) for e in after_restart] == [[1]]  # the same event, once more


def test_cocm_notify_delivers_for_servers_that_do_not(tmp_path: Path) -> None:
    """``COCM_NOTIFY_IN_PROCESS=false`` servers write events; ``cocm notify`` alone delivers them
    and stops on SIGTERM."""
    port, log, url = _migrated(tmp_path)
    with receiver() as hook:
        server = start_cocm(tmp_path, "127.0.0.1", port, log, notify_in_process="false", **SETTINGS)
        notifier = None
        try:
            pid = httpx.post(f"{url}/Patient", json={"resourceType": "Patient"}, headers=HEADERS).json()["id"]
            httpx.post(f"{url}/Subscription", json=subscription_body(hook.url), headers=HEADERS)
            created = httpx.post(
                f"{url}/QuestionnaireResponse", json=phq9_response(pid, "2026-01-05", ITEM9), headers=HEADERS
            )
            assert created.status_code == 201
            time.sleep(1.0)
            assert hook.received == []  # the server delivers nothing itself
            notifier = subprocess.Popen(
                [str(COCM), "notify"],
                env=cocm_env(tmp_path, **SETTINGS),
                cwd=tmp_path,
                stderr=subprocess.PIPE,
            )
            hook.wait_for(lambda r: len(r.bundles("event-notification")) == 1, timeout=20)
            assert len(hook.bundles("handshake")) == 1
        finally:
            if notifier is not None:
                notifier.send_signal(signal.SIGTERM)
                assert notifier.wait(20) == 0
            server.terminate()
            server.wait(10)
