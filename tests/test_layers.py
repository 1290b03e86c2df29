"""The layer contracts of ``make lint`` (pyproject.toml ``[tool.importlinter]``) hold for app/, and
each fails on a deliberate violation in a copy of the package: the check can fail."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

LINT_IMPORTS = REPO_ROOT / ".venv" / "bin" / "lint-imports"


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--config", str(root / "pyproject.toml")],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def copy_of_app(tmp_path: Path) -> Path:
    shutil.copytree(REPO_ROOT / "app", tmp_path / "app", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO_ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_the_contracts_hold(copy_of_app: Path) -> None:
    result = lint_imports(copy_of_app)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Contracts: 6 kept, 0 broken." in result.stdout


@pytest.mark.parametrize(
    ("module", "violation", "contract"),
    [
        ("billing/rules.py", "import sqlalchemy", "pure cores and FHIR primitives"),
        ("care/status.py", "import app.store.reads", "pure cores and FHIR primitives"),
        ("resources/cursor.py", "import app.settings", "pure cores and FHIR primitives"),
        (
            "store/reads.py",
            "import app.resources.outcome\nimport app.fhir.outcome",
            "the store is persistence only",
        ),
        ("store/repository.py", "import app.auth.scopes", "the store is persistence only"),
        ("store/repository.py", "import app.metrics", "the store is persistence only"),
        ("services/uow.py", "import fastapi", "only the edge imports"),
        ("billing/engine.py", "import app.care.status", "the billing and care cores are independent"),
        ("fhir/views.py", "import app.store.models", "route modules reach the database only"),
        ("api/routes.py", "from sqlalchemy import select", "route modules reach the database only"),
        ("store/db.py", "import app.services.uow", "edge > services > store"),
    ],
)
def test_a_violation_breaks_its_contract(
    copy_of_app: Path, module: str, violation: str, contract: str
) -> None:
    path = copy_of_app / "app" / module
    path.write_text(path.read_text() + f"\n{violation}  # deliberate\n")
    result = lint_imports(copy_of_app)
    assert result.returncode != 0
    assert contract in result.stdout.split("Broken contracts", 1)[1]
