"""An export survives the server process (export.md): the job is a row, so a server killed with
the job queued or running, or a runner that died holding it, loses nothing: the next runner takes it up."""

from __future__ import annotations

import os
import re
import signal
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
from sqlalchemy import Engine, insert, make_url
from sqlalchemy.orm import Session

from app.services.export import Runner
from app.store import exports
from app.store.db import make_engine, make_sessionmaker
from app.store.models import ExportJobRow, Resource, ResourceVersion
from tests.conftest import _empty_tables, free_port, run_cocm, start_cocm
from tests.export.test_export import ASYNC


def test_a_killed_server_loses_no_export(tmp_path: Path) -> None:
    assert run_cocm(tmp_path, "migrate")[0] == 0
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    first = start_cocm(tmp_path, "127.0.0.1", port, tmp_path / "first.log", export_in_process="false")
    with httpx.Client(base_url=url, timeout=10) as client:
        pid = client.post("/fhir/Patient", json={"resourceType": "Patient"}).json()["id"]
        status_url = client.get("/fhir/$export", headers=ASYNC).headers["Content-Location"]
        assert client.get(status_url).status_code == 202
    os.kill(first.pid, signal.SIGKILL)  # no shutdown at all
    first.wait(10)

    second = start_cocm(tmp_path, "127.0.0.1", port, tmp_path / "second.log")
    try:
        with httpx.Client(timeout=10) as client:
            deadline = time.monotonic() + 30
            while (answer := client.get(status_url)).status_code in (
                202,
                429,
            ) and time.monotonic() < deadline:
                time.sleep(0.3)
            assert answer.status_code == 200, answer.text
            patients = next(item for item in answer.json()["output"] if item["type"] == "Patient")
            lines = client.get(patients["url"]).text.splitlines()
            assert [orjson.loads(line)["id"] for line in lines] == [pid]
    finally:
        second.terminate()
        second.wait(10)


def test_a_server_killed_in_the_middle_of_a_job_loses_nothing(tmp_path: Path) -> None:
    """SIGKILL while the runner is half way through a type (one resource per read, so it is slow
    enough to be caught there); the restarted server takes the job over once the dead runner's
    lease has run out and exports every resource exactly once."""
    assert run_cocm(tmp_path, "migrate")[0] == 0
    now = datetime.now(UTC)
    ids = [f"p{n:05}" for n in range(20_000)]
    rows = [
        {"tenant": "default", "type": "Patient", "id": rid, "version_id": 1, "last_updated": now,
         "deleted": False, "content": f'{{"resourceType":"Patient","id":"{rid}"}}'}
        for rid in ids
    ]  # fmt: skip
    engine = make_engine(make_url(f"sqlite:///{tmp_path / 'cocm.db'}"))
    with Session(engine) as session, session.begin():
        session.execute(insert(Resource), rows)
        session.execute(insert(ResourceVersion), rows)
    engine.dispose()
    port = free_port()
    first = start_cocm(tmp_path, "127.0.0.1", port, tmp_path / "first.log", export_batch="1")
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
        status_url = client.get("/fhir/$export?_type=Patient", headers=ASYNC).headers["Content-Location"]
        deadline = time.monotonic() + 20
        while not re.fullmatch(
            r"Patient: [1-9][\d,]* of 20,000",
            progress := client.get(status_url).headers.get("X-Progress", ""),
        ):
            assert time.monotonic() < deadline, progress
            time.sleep(0.25)
    os.kill(first.pid, signal.SIGKILL)
    first.wait(10)

    second = start_cocm(tmp_path, "127.0.0.1", port, tmp_path / "second.log")
    try:
        with httpx.Client(timeout=10) as client:
            deadline = time.monotonic() + 60  # the dead runner's lease (10 s) runs out first
            while (answer := client.get(status_url)).status_code in (202, 429):
                assert time.monotonic() < deadline, answer.headers.get("X-Progress")
                time.sleep(0.5)
            assert answer.status_code == 200, answer.text
            exported = [
                orjson.loads(line)["id"]
                for item in answer.json()["output"]
                for line in client.get(item["url"]).text.splitlines()
            ]
            assert exported == ids  # every resource once, in order: nothing of the dead run
    finally:
        second.terminate()
        second.wait(10)


def job_row(job_id: str, lease_until: datetime, owner: str | None = None) -> ExportJobRow:
    """A running Patient export job of tenant ``default``, leased until ``lease_until``."""
    now = datetime.now(UTC)
    return ExportJobRow(
        id=job_id, tenant="default", client="c", status="running", level="system", types='["Patient"]',
        since=None, request="r", transaction_time=now, created=now, lease_until=lease_until,
        lease_owner=owner, progress="Patient: 1,000 of 9,000", output="[]", errors="[]",
    )  # fmt: skip


def test_a_job_whose_runner_died_is_claimed_again(migrated_engine: Engine) -> None:
    _empty_tables(migrated_engine)
    now = datetime.now(UTC)
    with Session(migrated_engine) as session, session.begin():
        session.add(job_row("j1", now - timedelta(seconds=1)))
        session.add(job_row("j2", now + timedelta(seconds=30)))
    with Session(migrated_engine) as session, session.begin():
        claimed = exports.claim(session, now, timedelta(seconds=10), 5, "runner-2")
        assert claimed == ["j1"]  # j2's runner is alive
        j1 = session.get(ExportJobRow, "j1")
        assert j1 is not None and j1.lease_owner == "runner-2"
        # the runner that was too slow to renew finds the job no longer its own, and stops
        assert exports.owned(session, "j1", "runner-1") is None
        assert exports.owned(session, "j1", "runner-2") is j1


def test_cli_export_writes_the_files_and_manifest(tmp_path: Path) -> None:
    assert run_cocm(tmp_path, "demo", "--patients", "6", "--alumni", "0")[0] == 0
    code, lines = run_cocm(tmp_path, "export", "--out", str(tmp_path / "out"), "--type", "Patient,Condition")
    assert code == 0, lines
    manifest = orjson.loads((tmp_path / "out" / "manifest.json").read_bytes())
    counts = {item["type"]: item["count"] for item in manifest["output"]}
    assert counts["Patient"] == 6 and counts["Condition"] >= 3
    for item in manifest["output"]:
        assert len((tmp_path / "out" / item["url"]).read_text().splitlines()) == item["count"]
    code, lines = run_cocm(tmp_path, "export", "--out", str(tmp_path / "x"), "--type", "Nonsense")
    assert code != 0 and any("Nonsense" in line for line in lines)


def test_a_runner_stopping_mid_job_queues_it_again(migrated_engine: Engine, settings_factory: Any) -> None:
    """Shutdown: the job stops after the batch in flight and is queued again at once (no lease to
    wait out), for the next runner to start from the beginning."""
    _empty_tables(migrated_engine)
    runner = Runner(make_sessionmaker(migrated_engine), settings_factory())
    now = datetime.now(UTC)
    with Session(migrated_engine) as session, session.begin():
        patient = {"tenant": "default", "type": "Patient", "id": "p1", "version_id": 1, "last_updated": now}
        content = '{"resourceType":"Patient","id":"p1"}'
        session.add(Resource(**patient, deleted=False, content=content))
        session.add(ResourceVersion(**patient, deleted=False, content=content))
        session.add(job_row("j3", now + timedelta(seconds=10), runner.owner))
    runner.stopping.set()
    runner.run_job("j3")
    with Session(migrated_engine) as session:
        row = session.get(ExportJobRow, "j3")
        assert row is not None and (row.status, row.lease_until) == ("queued", None)
