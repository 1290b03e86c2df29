"""The database unreachable: /ready fails, requests answer 503 with Retry-After, and the service
recovers by itself when the database comes back."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from app.main import create_app
from app.settings import Settings
from app.store.db import make_engine
from app.store.migrate import upgrade
from tests.conftest import FHIR_JSON


@pytest.fixture
def absent_database(database_url: str, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """(url of a database that does not exist yet, how to make it: 'sqlite' or 'postgresql')."""
    if database_url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path / 'later' / 'cocm.db'}", "sqlite"
        return
    name = f"cocm_down_{uuid.uuid4().hex[:10]}"
    url = make_url(database_url).set(database=name)
    yield url.render_as_string(hide_password=False), "postgresql"
    admin = create_engine(
        make_url(database_url).set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _bring_up(url: str, kind: str, database_url: str) -> None:
    if kind == "sqlite":
        Path(make_url(url).database or "").parent.mkdir(parents=True)
    else:
        admin = create_engine(
            make_url(database_url).set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT"
        )
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{make_url(url).database}"'))
        admin.dispose()
    engine = make_engine(Settings(database_url=url).sqlalchemy_url)
    upgrade(engine)
    engine.dispose()


def test_database_down_then_back(absent_database: tuple[str, str], database_url: str) -> None:
    url, kind = absent_database
    with TestClient(create_app(Settings(database_url=url)), raise_server_exceptions=False) as client:
        assert client.get("/health").status_code == 200
        ready = client.get("/ready")
        assert ready.status_code == 503
        assert ready.headers["retry-after"]
        down = client.post(
            "/fhir/Patient", json={"resourceType": "Patient"}, headers={"Content-Type": FHIR_JSON}
        )
        assert down.status_code == 503
        assert down.headers["retry-after"]
        assert down.json()["resourceType"] == "OperationOutcome"
        assert down.json()["issue"][0]["code"] == "transient"
        assert "Traceback" not in down.text and "psycopg" not in down.text and "sqlite" not in down.text
        api = client.get("/api/v1/registry")
        assert api.status_code == 503
        assert set(api.json()) == {"error", "detail"}

        _bring_up(url, kind, database_url)

        assert client.get("/ready").status_code == 200
        up = client.post(
            "/fhir/Patient", json={"resourceType": "Patient"}, headers={"Content-Type": FHIR_JSON}
        )
        assert up.status_code == 201


def test_ready_says_503_when_schema_is_behind(database_url: str, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    with TestClient(create_app(Settings(database_url=url))) as client:
        response = client.get("/ready")
        assert response.status_code == 503
        assert response.json()["schema"] is None
