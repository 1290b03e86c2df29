"""SQLite's durability setting (``COCM_SQLITE_SYNCHRONOUS``): WAL with NORMAL by default, FULL on
request, anything else refused."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlalchemy import make_url

from app.settings import Settings
from app.store.db import make_engine


@pytest.mark.parametrize(("setting", "pragma"), [(None, 1), ("NORMAL", 1), ("FULL", 2)])
def test_synchronous_follows_the_setting(tmp_path: Path, setting: str | None, pragma: int) -> None:
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'd.db'}", **({"sqlite_synchronous": setting} if setting else {})
    )
    engine = make_engine(settings.sqlalchemy_url, sqlite_synchronous=settings.sqlite_synchronous)
    with engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == pragma  # 1 NORMAL, 2 FULL
    engine.dispose()


def test_other_values_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValidationError):
        Settings(database_url="sqlite://", sqlite_synchronous="OFF")
    with pytest.raises(ValueError, match="NORMAL or FULL"):
        make_engine(make_url(f"sqlite:///{tmp_path / 'd.db'}"), sqlite_synchronous="OFF")
