"""Two uvicorn worker processes on one database: concurrent retries of the same time entry are
counted exactly once (the database arbitrates, not the process)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from tests.conftest import FHIR_JSON, _empty_tables, count_rows, free_port
from tests.store.test_concurrency import encounter

BIN = Path(sys.executable).parent


@pytest.fixture
def two_workers(database_url: str, migrated_engine: Engine) -> Iterator[str]:
    _empty_tables(migrated_engine)
    port = free_port()
    env = {**os.environ, "COCM_DATABASE_URL": database_url, "COCM_API_KEYS": ""}
    server = subprocess.Popen(
        [str(BIN / "cocm"), "serve", "--port", str(port), "--workers", "2"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        else:
            pytest.fail("the two-worker server did not start")
        yield base
    finally:
        server.terminate()
        server.wait(timeout=20)


def test_retries_across_two_workers_count_once(two_workers: str, db: Any) -> None:
    with httpx.Client(base_url=two_workers, timeout=30) as client:
        created = client.post(
            "/fhir/Patient", json={"resourceType": "Patient"}, headers={"Content-Type": FHIR_JSON}
        )
        pid = created.json()["id"]
        body = encounter(pid)

        def send(_: int) -> int:
            with httpx.Client(
                base_url=two_workers, timeout=30
            ) as own:  # a connection each: both workers serve
                return own.post("/fhir/Encounter", json=body, headers={"Content-Type": FHIR_JSON}).status_code

        with ThreadPoolExecutor(max_workers=24) as pool:
            statuses = list(pool.map(send, range(48)))
        assert statuses.count(201) == 1
        assert set(statuses) <= {200, 201}
        assert count_rows(db, "time_entry") == 1
        billing = client.get(f"/api/v1/patients/{pid}/billing", params={"month": "2026-01"}).json()
        assert billing["minutes"] == 40
