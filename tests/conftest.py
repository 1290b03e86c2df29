"""Test fixtures: a real database built by the real migrations, and the real app over HTTP.

The database is SQLite (a temporary file) unless ``COCM_TEST_DATABASE_URL`` names a PostgreSQL
server (``postgresql://postgres@127.0.0.1:5432/postgres``): then each test run creates its own
database there and drops it at the end. Between tests every table is emptied.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import hypothesis.core
import pytest
from fastapi.testclient import TestClient
from hypothesis.vendor import pretty
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from app.main import create_app
from app.services.resources import ResourceService
from app.settings import Settings
from app.store.db import make_engine, make_sessionmaker
from app.store.migrate import upgrade
from app.store.models import Base
from app.store.repository import Repository

# schemathesis' pytest plugin blanks Hypothesis's failure printer for every test; restore it.
hypothesis.core.RepresentationPrinter = pretty.RepresentationPrinter  # type: ignore[attr-defined]

REPO_ROOT = Path(__file__).resolve().parents[1]
# Published FHIR payloads the suite runs on (tests/fixtures/fhir/README.md says where each is from).
FIXTURES = REPO_ROOT / "tests" / "fixtures" / "fhir"
FHIR_JSON = "application/fhir+json"


def fixture_files() -> list[Path]:
    """Every fixture payload; a missing or empty folder fails loudly instead of collecting nothing."""
    files = sorted(FIXTURES.glob("*.json"))
    if not files:
        raise RuntimeError(f"no FHIR fixtures in {FIXTURES}: the suite needs the files committed there")
    return files


def load_fixture(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return data


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with new_database(tmp_path_factory.mktemp("db")) as url:
        yield url


@contextmanager
def new_database(directory: Path) -> Iterator[str]:
    """A new, empty database of the kind the suite runs on, dropped afterwards: a SQLite file in
    ``directory``, or a database on the ``COCM_TEST_DATABASE_URL`` server."""
    server = os.environ.get("COCM_TEST_DATABASE_URL", "").strip()
    if not server or server.startswith("sqlite"):
        yield f"sqlite:///{directory / f'cocm-test-{uuid.uuid4().hex[:8]}.db'}"
        return
    name = f"cocm_test_{uuid.uuid4().hex[:12]}"
    admin_url = make_url(server).set(drivername="postgresql+psycopg")
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield admin_url.set(database=name).render_as_string(hide_password=False).replace("+psycopg", "")
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def migrated_engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(Settings(database_url=database_url).sqlalchemy_url)
    upgrade(engine)
    yield engine
    engine.dispose()


def _empty_tables(engine: Engine) -> None:
    with engine.begin() as conn:
        for table in reversed(Base.metadata.sorted_tables):
            conn.execute(table.delete())


@pytest.fixture
def settings_factory(database_url: str, migrated_engine: Engine, tmp_path: Path) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        return Settings(database_url=database_url, **{"export_dir": str(tmp_path / "exports"), **overrides})

    return make


@pytest.fixture
def make_client(
    settings_factory: Callable[..., Settings], migrated_engine: Engine
) -> Iterator[Callable[..., TestClient]]:
    """Build a client for an app with the given setting overrides (tables emptied first)."""
    _empty_tables(migrated_engine)
    clients: list[TestClient] = []

    def make(**overrides: Any) -> TestClient:
        client = TestClient(create_app(settings_factory(**overrides)), raise_server_exceptions=False)
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client: Callable[..., TestClient]) -> TestClient:
    return make_client()


@pytest.fixture
def service(migrated_engine: Engine) -> Iterator[ResourceService]:
    """A ``ResourceService`` of tenant ``default`` over a session of the emptied test database, for
    tests below the HTTP edge (every scope permitted)."""
    _empty_tables(migrated_engine)
    with make_sessionmaker(migrated_engine)() as session:
        yield ResourceService(session, "default", ZoneInfo("UTC"))


@pytest.fixture
def repository(migrated_engine: Engine) -> Iterator[Repository]:
    """The ``Repository`` of tenant ``default`` over a session of the emptied test database: the
    persistence layer alone, no scopes, no audit, no validation."""
    _empty_tables(migrated_engine)
    with make_sessionmaker(migrated_engine)() as session:
        yield Repository(session, "default", ZoneInfo("UTC"))


@pytest.fixture
def db(migrated_engine: Engine) -> Engine:
    """The test database's engine, for asserting what was (not) written."""
    return migrated_engine


def count_rows(engine: Engine, table: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text(f"SELECT COUNT(*) FROM {table}")).scalar_one())


class Fhir:
    """Small helpers for FHIR calls through the HTTP client."""

    def __init__(self, client: TestClient) -> None:
        self.client = client

    def post(self, body: dict[str, Any], **headers: str) -> Any:
        return self.client.post(
            f"/fhir/{body['resourceType']}", json=body, headers={"Content-Type": FHIR_JSON, **headers}
        )

    def put(self, path: str, body: dict[str, Any], **headers: str) -> Any:
        return self.client.put(f"/fhir/{path}", json=body, headers={"Content-Type": FHIR_JSON, **headers})

    def get(self, path: str, **params: Any) -> Any:
        return self.client.get(f"/fhir/{path}", params=params)

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        response = self.post(body)
        assert response.status_code in (200, 201), response.text
        data: dict[str, Any] = response.json()
        return data

    def patient(self, **extra: Any) -> str:
        return str(self.create({"resourceType": "Patient", **extra})["id"])


@pytest.fixture
def fhir(client: TestClient) -> Fhir:
    return Fhir(client)


@pytest.fixture
def clinic(fhir: Fhir) -> Any:
    """A ``tests.api.scenario.Clinic`` on the test client (imported here: it imports this module)."""
    from tests.api.scenario import Clinic

    return Clinic(fhir)


COCM = REPO_ROOT / ".venv" / "bin" / "cocm"


def cocm_env(tmp_path: Path, **settings: str) -> dict[str, str]:
    """The environment for a ``cocm`` process: no COCM_* of the caller's, a SQLite file in
    ``tmp_path``, and ``settings`` as COCM_<NAME>."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("COCM_")}
    env["COCM_DATABASE_URL"] = f"sqlite:///{tmp_path / 'cocm.db'}"
    env.update({f"COCM_{name.upper()}": value for name, value in settings.items()})
    return env


def run_cocm(tmp_path: Path, *args: str, **settings: str) -> tuple[int, list[str]]:
    """Run the real console script to its end; its exit code and the non-blank lines it printed."""
    result = subprocess.run(
        [str(COCM), *args],
        env=cocm_env(tmp_path, **settings),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return result.returncode, [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]


def free_port() -> int:
    """A free TCP port on 127.0.0.1 for a server a test starts."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


START_SECONDS = 20.0


def start_cocm(
    tmp_path: Path, host: str, port: int, log: Path, *, workers: int = 1, **settings: str
) -> subprocess.Popen[bytes]:
    """``cocm serve`` as a real process, its stderr appended to ``log``; returns once ``/health``
    answers."""
    with log.open("a") as err:
        process = subprocess.Popen(
            [str(COCM), "serve", "--host", host, "--port", str(port), "--workers", str(workers)],
            env=cocm_env(tmp_path, **settings),
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + START_SECONDS
    while True:
        if process.poll() is not None:
            pytest.fail(f"cocm serve exited with {process.returncode}: {log.read_text()}")
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return process
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"cocm serve did not answer in {START_SECONDS}s: {log.read_text()}")
        time.sleep(0.1)


@contextmanager
def serving(tmp_path: Path, host: str, **settings: str) -> Iterator[tuple[str, Path]]:
    """``cocm serve`` as a real process; yields its loopback URL and the file its stderr goes to."""
    port = free_port()
    log = tmp_path / "serve.log"
    process = start_cocm(tmp_path, host, port, log, **settings)
    try:
        yield f"http://127.0.0.1:{port}", log
    finally:
        process.terminate()
        process.wait(10)
