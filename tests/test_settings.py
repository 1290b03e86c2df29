"""Settings from COCM_* (api.md): a bad value stops start-up with one line naming the variable,
never a traceback; an empty COCM_MAX_99494_UNITS means no cap."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from app.settings import SettingsError, load_settings
from tests.conftest import run_cocm


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No COCM_* from the caller's environment and no .env file: only what a test sets."""
    for name in list(os.environ):
        if name.startswith("COCM_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def _refusal(monkeypatch: pytest.MonkeyPatch, variable: str, value: str) -> str:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as refused:
        load_settings()
    assert isinstance(refused.value, SystemExit)
    message = str(refused.value.code)
    assert "\n" not in message.strip(), message
    assert variable in message, message
    return message


def test_defaults_are_the_contract() -> None:
    settings = load_settings()
    assert settings.database_url == "sqlite:///./cocm.db"
    assert settings.timezone == "UTC"
    assert settings.billing_setting == "physician"
    assert settings.add_on_cap is None
    assert settings.max_body_bytes == 5_242_880


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COCM_TIMEZONE", "America/Chicago")
    monkeypatch.setenv("COCM_BILLING_SETTING", "fqhc_rhc")
    monkeypatch.setenv("COCM_DATABASE_URL", "postgresql://cocm@db.example/cocm")
    monkeypatch.setenv("COCM_MAX_99494_UNITS", "2")
    settings = load_settings()
    assert settings.zone.key == "America/Chicago"
    assert settings.billing_setting == "fqhc_rhc"
    assert settings.sqlalchemy_url.drivername == "postgresql+psycopg"
    assert settings.add_on_cap == 2
    assert settings.billing.add_on_cap == 2


@pytest.mark.parametrize("zone", ["Mars/Base", "Not A Zone", "../../etc/passwd"])
def test_bad_timezone(monkeypatch: pytest.MonkeyPatch, zone: str) -> None:
    assert "time zone" in _refusal(monkeypatch, "COCM_TIMEZONE", zone)


@pytest.mark.parametrize(
    "url", ["mysql://x/y", "not a url", "postgresql://cocm@db.example", "oracle://scott:tiger@db/orcl"]
)
def test_bad_database_url(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    _refusal(monkeypatch, "COCM_DATABASE_URL", url)


@pytest.mark.parametrize("url", ["mysql://x/y", "not a url", "postgresql://cocm@db.example"])
def test_bad_read_replica_url(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    _refusal(monkeypatch, "COCM_DATABASE_READ_URL", url)


@pytest.mark.parametrize("value", ["", "  "])
def test_empty_read_replica_url_means_none(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("COCM_DATABASE_READ_URL", value)
    assert load_settings().sqlalchemy_read_url is None


def test_read_replica_url_picks_the_driver(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COCM_DATABASE_READ_URL", "postgresql://cocm@replica.example/cocm")
    replica = load_settings().sqlalchemy_read_url
    assert replica is not None and replica.drivername == "postgresql+psycopg"
    assert replica.host == "replica.example"


def test_bad_database_url_does_not_echo_a_password(monkeypatch: pytest.MonkeyPatch) -> None:
    message = _refusal(monkeypatch, "COCM_DATABASE_URL", "postgresql://cocm:s3cr3t-pw@db.example")
    assert "s3cr3t-pw" not in message


@pytest.mark.parametrize("value", ["hospital", "FQHC", ""])
def test_bad_billing_setting(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    _refusal(monkeypatch, "COCM_BILLING_SETTING", value)


@pytest.mark.parametrize("value", ["-1", "two"])
def test_bad_99494_cap(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    _refusal(monkeypatch, "COCM_MAX_99494_UNITS", value)


@pytest.mark.parametrize("value", ["", "  "])
def test_empty_99494_cap_means_no_cap(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("COCM_MAX_99494_UNITS", value)
    settings = load_settings()
    assert settings.add_on_cap is None
    assert settings.billing.add_on_cap is None


def test_several_bad_values_still_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COCM_TIMEZONE", "Mars/Base")
    message = _refusal(monkeypatch, "COCM_BILLING_SETTING", "hospital")
    assert "COCM_TIMEZONE" in message


def test_console_script_refuses_a_bad_timezone_in_one_line(tmp_path: Path) -> None:
    code, lines = run_cocm(tmp_path, "serve", "--port", "0", timezone="Mars/Base")
    assert code != 0
    assert not any("Traceback" in line for line in lines)
    assert len(lines) == 1, lines
    assert "COCM_TIMEZONE" in lines[0]
    assert not (tmp_path / "cocm.db").exists()


@pytest.mark.parametrize(
    ("environment", "fallback_covered", "add_on_cap"),
    [
        ({}, True, None),
        ({"COCM_FALLBACK_COVERED": "false", "COCM_ADD_ON_CAP": "2"}, False, 2),  # the names for what they do
        ({"COCM_G2214_COVERED": "false", "COCM_MAX_99494_UNITS": "1"}, False, 1),  # api.md's first names
        ({"COCM_FALLBACK_COVERED": "true", "COCM_G2214_COVERED": "false"}, True, None),  # the new name wins
        ({"COCM_ADD_ON_CAP": "3", "COCM_MAX_99494_UNITS": "1"}, True, 3),
    ],
)
def test_billing_settings_under_either_name(
    monkeypatch: pytest.MonkeyPatch,
    environment: dict[str, str],
    fallback_covered: bool,
    add_on_cap: int | None,
) -> None:
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    assert (settings.billing.fallback_covered, settings.billing.add_on_cap) == (fallback_covered, add_on_cap)


def test_a_bad_cap_names_both_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    message = _refusal(monkeypatch, "COCM_ADD_ON_CAP", "-1")
    assert "COCM_MAX_99494_UNITS" in message
