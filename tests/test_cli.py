"""The ``cocm`` command: migrate, demo, billing and import, against the test database."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, create_engine, event, text
from typer.testing import CliRunner, Result

import app.cli as cli_module
from app.bulk import ImportReport, import_file, import_service, progress_path
from app.cli import cli
from app.demo import clinic
from app.domain import Month
from app.measures.instruments import PHQ9
from app.services.reports import today
from app.settings import Settings
from app.store.db import analyze, make_sessionmaker
from tests.conftest import _empty_tables, count_rows

ACTIVITY = "http://cocm-api.org/fhir/CodeSystem/cocm-activity"
ACT = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
PHQ9_LINKS = list(PHQ9.item_codes)


@pytest.fixture
def env(database_url: str, migrated_engine: Engine, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    """Empty tables; the CLI reads the test database from COCM_DATABASE_URL."""
    _empty_tables(migrated_engine)
    monkeypatch.setenv("COCM_DATABASE_URL", database_url)
    monkeypatch.setenv("COCM_TIMEZONE", "America/Chicago")
    yield migrated_engine
    _empty_tables(migrated_engine)


def cocm(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def patients(engine: Engine, tenant: str = "default") -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                text("SELECT COUNT(*) FROM resource WHERE tenant = :t AND type = 'Patient' AND NOT deleted"),
                {"t": tenant},
            ).scalar_one()
        )


def test_migrate_is_idempotent(env: Engine) -> None:
    result = cocm("migrate")
    assert result.exit_code == 0, result.output
    assert "database at head" in result.stdout


# ------------------------------------------------------------------ demo


def test_demo_loads_once(env: Engine) -> None:
    result = cocm("demo", "--patients", "12")
    assert result.exit_code == 0, result.output
    assert "15 patients loaded, 0 already there" in result.stdout  # 12 and 3 alumni (a quarter)
    assert patients(env) == 15
    assert count_rows(env, "diagnosis_fact") > 10
    rows = count_rows(env, "resource_version")
    assert count_rows(env, "time_entry") > 50
    assert count_rows(env, "measurement") > 20  # responses scored on the way in

    again = cocm("demo", "--patients", "12")
    assert again.exit_code == 0, again.output
    assert "0 patients loaded, 15 already there" in again.stdout
    assert count_rows(env, "resource_version") == rows

    skipped = cocm("demo", "--patients", "20", "--if-empty")
    assert skipped.exit_code == 0
    assert "demo not loaded" in skipped.stdout
    assert patients(env) == 15

    other = cocm("demo", "--patients", "3", "--alumni", "0", "--if-empty", "--tenant", "clinic-b")
    assert "3 patients loaded" in other.stdout
    assert patients(env, "clinic-b") == 3 and patients(env) == 15


# ------------------------------------------------------------------ billing


def test_billing_table_and_csv_match_the_api(env: Engine, make_client: Callable[..., TestClient]) -> None:
    assert cocm("demo", "--patients", "25").exit_code == 0
    settings = Settings(timezone="America/Chicago")
    month = str(Month.of(today(settings)).previous())

    table = cocm("billing", "--month", month)
    assert table.exit_code == 0, table.output
    assert f"CoCM billing {month}" in table.stdout
    assert "totals (units)" in table.stdout
    assert "99493" in table.stdout
    assert "patient-months billable" in table.stdout

    default = cocm("billing")  # the last full month
    assert default.exit_code == 0 and f"CoCM billing {month}" in default.stdout

    as_csv = cocm("billing", "--month", month, "--csv")
    assert as_csv.exit_code == 0, as_csv.output
    client = make_client(timezone="America/Chicago")
    api = client.get("/api/v1/billing.csv", params={"month": month})
    assert api.status_code == 200
    assert as_csv.stdout_bytes == api.content  # CRLF lines and the BOM, byte for byte
    assert as_csv.stdout.startswith("\ufeffpatient_id,month,")


def test_billing_refuses_a_bad_month(env: Engine) -> None:
    result = cocm("billing", "--month", "2026-13")
    assert result.exit_code == 2
    assert "YYYY-MM" in result.output


def test_billing_of_an_empty_month(env: Engine) -> None:
    result = cocm("billing", "--month", "2020-01")
    assert result.exit_code == 0
    assert "0 patients with minutes" in result.stdout
    csv = cocm("billing", "--month", "2020-01", "--csv")
    assert csv.stdout.count("\n") == 1  # the header only


# ------------------------------------------------------------------ import


def patient(pid: str, family: str = "Doe") -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": pid,
        "identifier": [{"system": "urn:test:mrn", "value": pid}],
        "name": [{"family": family, "given": ["Jo"]}],
    }


def minutes(pid: str, key: str, start: str, value: int) -> dict[str, Any]:
    return {
        "resourceType": "Encounter",
        "identifier": [{"system": "urn:test:enc", "value": key}],
        "status": "finished",
        "class": {"system": ACT, "code": "AMB"},
        "type": [{"coding": [{"system": ACTIVITY, "code": "follow-up"}]}],
        "subject": {"reference": f"Patient/{pid}"},
        "period": {"start": start},
        "length": {"value": value, "unit": "min", "system": "http://unitsofmeasure.org", "code": "min"},
    }


def phq9(subject: str, key: str, when: str, answers: list[int]) -> dict[str, Any]:
    codes = ["LA6568-5", "LA6569-3", "LA6570-1", "LA6571-9"]
    return {
        "resourceType": "QuestionnaireResponse",
        "identifier": {"system": "urn:test:qr", "value": key},
        "status": "completed",
        "subject": {"reference": subject},
        "authored": when,
        "item": [
            {"linkId": link, "answer": [{"valueCoding": {"system": "http://loinc.org", "code": codes[a]}}]}
            for link, a in zip(PHQ9_LINKS, answers, strict=True)
        ],
    }


def write_ndjson(path: Path, lines: list[Any]) -> Path:
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    return path


def good_lines(count: int) -> list[Any]:
    lines: list[Any] = [patient("cli-p1"), patient("cli-p2", "Roe")]
    lines += [
        minutes(f"cli-p{1 + i % 2}", f"e{i}", f"2026-01-{5 + i % 20:02d}T10:00:00-06:00", 10)
        for i in range(count)
    ]
    lines.append(phq9("Patient/cli-p1", "q1", "2026-01-06T10:00:00-06:00", [2, 2, 1, 1, 1, 1, 1, 1, 1]))
    return lines


def test_import_ndjson_reports_bad_lines_and_goes_on(env: Engine, tmp_path: Path) -> None:
    lines = good_lines(6)
    lines[3:3] = [
        {"resourceType": "Encounter", "status": "bogus", "subject": {"reference": "Patient/cli-p1"}},
        "",
        "{not json",
        {"resourceType": "Bundle", "type": "collection"},
        minutes("nobody", "e-x", "2026-01-05T10:00:00-06:00", 5),
    ]
    file = write_ndjson(tmp_path / "clinic.ndjson", lines)
    result = cocm("import", str(file), "--batch", "3")
    assert result.exit_code == 1, result.output
    assert "9 created, 0 updated, 0 unchanged, 4 failed" in result.stdout
    for number in (4, 6, 7, 8):
        assert f"clinic.ndjson, line {number}:" in result.stderr
    assert "line 5:" not in result.stderr  # a blank line is no item
    assert "Patient/nobody" in result.stderr
    assert "Encounter.status" in result.stderr
    assert not progress_path(file).exists()  # done, even with failures
    assert count_rows(env, "time_entry") == 6
    assert count_rows(env, "measurement") == 1  # scored exactly as through the API

    again = cocm("import", str(file))
    assert "0 created, 0 updated, 9 unchanged, 4 failed" in again.stdout
    assert count_rows(env, "time_entry") == 6 and count_rows(env, "measurement") == 1


def planner_statistics(engine: Engine) -> Any:
    """When the resource table was last analysed (PostgreSQL), or whether SQLite has its statistics."""
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            has_table = conn.execute(text("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_stat1'")).first()
            return has_table is not None and (
                conn.execute(text("SELECT 1 FROM sqlite_stat1 WHERE tbl = 'resource'")).first() is not None
            )
        return conn.execute(
            text("SELECT last_analyze FROM pg_stat_user_tables WHERE relname = 'resource'")
        ).scalar()


def test_import_refreshes_the_planner_statistics(env: Engine, tmp_path: Path) -> None:
    if env.dialect.name == "sqlite":
        with env.begin() as conn:
            conn.execute(text("DROP TABLE IF EXISTS sqlite_stat1"))
    before = planner_statistics(env)
    result = cocm("import", str(write_ndjson(tmp_path / "clinic.ndjson", good_lines(3))))
    assert result.exit_code == 0, result.output
    after = planner_statistics(env)
    assert after and after != before


def test_a_long_import_refreshes_the_statistics_as_the_tables_grow(
    env: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After ``ANALYZE_AFTER`` items, then twice as many, and so on, and once at the end: 10 items
    one per batch, ANALYZE after 2, 4 and 8 items and at the end."""
    monkeypatch.setattr(cli_module, "ANALYZE_AFTER", 2)
    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    event.listen(Engine, "before_cursor_execute", seen)
    try:
        lines = good_lines(7)
        result = cocm("import", str(write_ndjson(tmp_path / "clinic.ndjson", lines)), "--batch", "1")
    finally:
        event.remove(Engine, "before_cursor_execute", seen)
    assert result.exit_code == 0, result.output
    assert len(lines) == 10 and statements.count("ANALYZE") == 4


def test_analyze_is_best_effort(tmp_path: Path) -> None:
    """A database that refuses ANALYZE (here a read-only SQLite file) makes it answer False; the
    import it follows has succeeded already."""
    path = tmp_path / "ro.db"
    create_engine(f"sqlite:///{path}").connect().close()
    read_only = create_engine(f"sqlite:///file:{path}?mode=ro&uri=true")
    assert analyze(read_only) is False
    assert analyze(create_engine(f"sqlite:///{path}")) is True


def test_import_stop_on_error_resumes_after_the_fix(env: Engine, tmp_path: Path) -> None:
    lines = good_lines(4)
    lines.insert(4, minutes("nobody", "e-x", "2026-01-05T10:00:00-06:00", 5))  # line 5
    file = write_ndjson(tmp_path / "stop.ndjson", lines)
    result = cocm("import", str(file), "--batch", "3", "--stop-on-error")
    assert result.exit_code == 1
    assert "stop.ndjson, line 5:" in result.stderr
    assert "stopped at line 5" in result.stderr
    assert "4 created" in result.stdout
    progress = json.loads(progress_path(file).read_text())
    assert progress["committed"] == 4 and progress["tenant"] == "default"

    lines[4] = minutes("cli-p2", "e-x", "2026-01-05T10:00:00-06:00", 5)  # fixed
    write_ndjson(file, lines)
    resumed = cocm("import", str(file), "--batch", "3", "--stop-on-error")
    assert resumed.exit_code == 0, resumed.output
    assert "resuming stop.ndjson after 4 of 8 items" in resumed.stderr
    assert "4 created, 0 updated, 0 unchanged, 0 failed" in resumed.stdout
    assert not progress_path(file).exists()
    assert count_rows(env, "time_entry") == 5


def test_an_interrupted_import_resumes_where_it_stopped(
    env: Engine, tmp_path: Path, database_url: str
) -> None:
    file = write_ndjson(tmp_path / "big.ndjson", good_lines(20))
    settings = Settings(database_url=database_url)
    calls = 0

    def crash_after_two_batches(_: int) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise KeyboardInterrupt

    with make_sessionmaker(env)() as session, pytest.raises(KeyboardInterrupt):
        import_file(
            file, import_service(session, settings), settings, batch=5, on_advance=crash_after_two_batches
        )
    assert json.loads(progress_path(file).read_text())["committed"] == 10
    assert count_rows(env, "time_entry") == 8

    with make_sessionmaker(env)() as session:
        report = import_file(file, import_service(session, settings), settings, batch=5)
    assert report == ImportReport(total=23, resumed_from=10, created=13)
    assert count_rows(env, "time_entry") == 20 and count_rows(env, "measurement") == 1
    assert not progress_path(file).exists()


def test_import_puts_resources_with_ids_and_updates_changed_ones(env: Engine, tmp_path: Path) -> None:
    file = write_ndjson(tmp_path / "p.ndjson", [patient("cli-p1")])
    assert "1 created" in cocm("import", str(file)).stdout
    write_ndjson(file, [patient("cli-p1", "Changed")])
    assert "0 created, 1 updated, 0 unchanged" in cocm("import", str(file)).stdout
    assert "0 created, 0 updated, 1 unchanged" in cocm("import", str(file)).stdout
    assert count_rows(env, "resource_version") == 2


def test_import_a_transaction_bundle_with_uuid_references_across_batches(env: Engine, tmp_path: Path) -> None:
    settings = Settings(timezone="America/Chicago")
    bundles = clinic(today(settings), settings.zone, patients=3)
    entries = [entry for bundle in bundles for entry in bundle["entry"]]
    entries = entries[1:] + entries[:1]  # a Patient after the resources naming it
    file = tmp_path / "bundle.json"
    file.write_bytes(orjson.dumps({"resourceType": "Bundle", "type": "transaction", "entry": entries}))
    result = cocm("import", str(file), "--batch", "7")
    assert result.exit_code == 0, result.output
    assert f"{len(entries)} created, 0 updated, 0 unchanged, 0 failed" in result.stdout
    assert patients(env) == 3
    measurements = count_rows(env, "measurement")
    assert measurements > 5

    again = cocm("import", str(file), "--batch", "50")
    assert f"0 created, 0 updated, {len(entries)} unchanged" in again.stdout

    collection = tmp_path / "collection.json"  # the same resources without requests
    body = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{k: e[k] for k in ("fullUrl", "resource")} for e in entries],
    }
    collection.write_bytes(orjson.dumps(body))
    same = cocm("import", str(collection))
    assert f"0 created, 0 updated, {len(entries)} unchanged" in same.stdout
    assert count_rows(env, "measurement") == measurements


def test_import_bundle_entries_with_requests(env: Engine, tmp_path: Path) -> None:
    without_id = {k: v for k, v in patient("cli-p9").items() if k != "id"}
    entries = [
        {"fullUrl": "urn:uuid:p", "resource": without_id, "request": {"method": "POST", "url": "Patient"}},
        {
            "resource": phq9("urn:uuid:p", "q9", "2026-01-06T10:00:00-06:00", [1] * 9),
            "request": {"method": "POST", "url": "QuestionnaireResponse"},
        },
        {"resource": patient("cli-p8"), "request": {"method": "PUT", "url": "Patient/cli-p8"}},
        {
            "resource": patient("cli-p7"),
            "request": {"method": "PUT", "url": "Patient?identifier=urn:test:mrn|cli-p7"},
        },
        {"request": {"method": "DELETE", "url": "Patient/cli-p8"}},
        {"resource": patient("cli-p6"), "request": {"method": "POST", "url": "Encounter"}},
    ]
    file = tmp_path / "batch.json"
    file.write_text(json.dumps({"resourceType": "Bundle", "type": "batch", "entry": entries}))
    result = cocm("import", str(file))
    assert result.exit_code == 1
    assert "4 created, 0 updated, 0 unchanged, 2 failed" in result.stdout
    assert "Bundle.entry[4]:" in result.stderr and "Bundle.entry[5]:" in result.stderr
    assert patients(env) == 3 and count_rows(env, "measurement") == 1  # nothing deleted
    again = cocm("import", str(file))
    assert "0 created, 0 updated, 4 unchanged, 2 failed" in again.stdout


def test_import_refuses_what_it_cannot_read(env: Engine, tmp_path: Path) -> None:
    searchset = tmp_path / "s.json"
    searchset.write_text(json.dumps({"resourceType": "Bundle", "type": "searchset"}))
    result = cocm("import", str(searchset))
    assert result.exit_code == 2
    assert "not a transaction, batch or collection Bundle" in result.stderr
    missing = cocm("import", str(tmp_path / "missing.ndjson"))
    assert missing.exit_code == 2 and "is not a file" in missing.stderr

    file = write_ndjson(tmp_path / "t.ndjson", good_lines(2))
    progress_path(file).write_text(json.dumps({"version": 1, "tenant": "other", "committed": 1}))
    clash = cocm("import", str(file))
    assert clash.exit_code == 2 and "tenant 'other'" in clash.stderr
    fresh = cocm("import", str(file), "--restart")
    assert fresh.exit_code == 0 and "5 created" in fresh.stdout
    assert not progress_path(file).exists()


def test_import_into_a_tenant(env: Engine, tmp_path: Path) -> None:
    file = write_ndjson(tmp_path / "t.ndjson", good_lines(2))
    assert cocm("import", str(file), "--tenant", "clinic-b").exit_code == 0
    assert patients(env, "clinic-b") == 2 and patients(env) == 0
    # the same ids belong to clinic-b now: another tenant cannot take them (404, reported per line)
    clash = cocm("import", str(file))
    assert clash.exit_code == 1 and "is not known" in clash.stderr
