"""Two uvicorn workers on one database, one subscription, 200 concurrent item-9 writes: events
1..200, each delivered once, in order (notifications.md: workers share delivery through the
database; PostgreSQL claims with FOR UPDATE SKIP LOCKED)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Engine

from tests.api.scenario import phq9_response
from tests.conftest import FHIR_JSON, _empty_tables, count_rows, free_port, start_cocm
from tests.notifications.support import event_numbers, receiver, subscription_body

WRITES = 200


def test_two_workers_deliver_every_event_once(
    tmp_path: Path, database_url: str, migrated_engine: Engine, db: Any
) -> None:
    _empty_tables(migrated_engine)
    port = free_port()
    settings = {
        "database_url": database_url,
        "subscription_allowed_hosts": "127.0.0.1",
        "notify_poll_seconds": "0.05",
    }
    url = f"http://127.0.0.1:{port}/fhir"
    headers = {"Content-Type": FHIR_JSON}
    with receiver() as hook:
        server = start_cocm(tmp_path, "127.0.0.1", port, tmp_path / "serve.log", workers=2, **settings)
        try:
            pid = httpx.post(f"{url}/Patient", json={"resourceType": "Patient"}, headers=headers).json()["id"]
            subscription = httpx.post(
                f"{url}/Subscription", json=subscription_body(hook.url), headers=headers
            )
            assert subscription.status_code == 201
            hook.wait_for(lambda r: len(r.bundles("handshake")) == 1)

            def write(n: int) -> int:
                body = phq9_response(pid, f"2026-01-05T10:{n // 60:02d}:{n % 60:02d}Z", [1] * 8 + [1 + n % 3])
                with httpx.Client(timeout=60) as own:  # a connection each: both workers serve
                    return own.post(f"{url}/QuestionnaireResponse", json=body, headers=headers).status_code

            with ThreadPoolExecutor(max_workers=16) as pool:
                statuses = list(pool.map(write, range(WRITES)))
            assert statuses == [201] * WRITES
            hook.wait_for(lambda r: len(r.bundles("event-notification")) >= WRITES, timeout=120)
        finally:
            server.terminate()
            server.wait(20)
    numbers = event_numbers(hook.bundles("event-notification"))
    assert numbers == list(range(1, WRITES + 1))  # gapless, in order, none twice
    assert count_rows(db, "subscription_event") == WRITES
