"""The quality page in a real browser (chromium, as ``test_registry_browser``): the rate bars
render at their rate's width, the quarterly trend is drawn, and a count opens its patients."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.api.scenario import Clinic
from tests.conftest import Fhir
from tests.quality.test_evaluate_http import depressed
from tests.web.test_registry_browser import ARTIFACTS, WAIT_SECONDS, chromium, server_url

__all__ = ["server_url"]  # the fixture, used by name below


def test_quality_page_in_a_browser(server_url: str, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    with httpx.Client(base_url=server_url, timeout=WAIT_SECONDS) as client:
        clinic = Clinic(Fhir(client))  # type: ignore[arg-type]  # httpx.Client speaks like TestClient
        remitted = depressed(clinic, 3)
        depressed(clinic, 12)
    with chromium(tmp_path) as (driver, _):
        driver.get(f"{server_url}/registry/quality?period_start=2026-01-01&period_end=2026-12-31")  # type: ignore[attr-defined]
        assert driver.title.startswith("CoCM program quality")  # type: ignore[attr-defined]
        section = driver.find_element(By.ID, "depression-remission-12m")  # type: ignore[attr-defined]
        bar = section.find_element(By.CSS_SELECTOR, ".rate-bar")
        filled = bar.find_element(By.CSS_SELECTOR, "span")
        assert bar.size["width"] > 0
        assert abs(filled.size["width"] / bar.size["width"] - 0.5) < 0.05  # 1 of 2 in remission: half
        assert "50.0%" in section.text
        assert section.find_element(By.CSS_SELECTOR, "svg.quality-trend circle").is_displayed()
        ARTIFACTS.mkdir(exist_ok=True)
        assert driver.save_screenshot(str(ARTIFACTS / "quality.png"))  # type: ignore[attr-defined]

        numerator = next(
            link
            for link in section.find_elements(By.CSS_SELECTOR, "a.count")
            if "population=numerator" in (link.get_attribute("href") or "")
        )
        assert numerator.text == "1"
        numerator.click()
        rows = driver.find_elements(By.CSS_SELECTOR, "#quality-patients tbody tr[data-patient-id]")  # type: ignore[attr-defined]
        assert [row.get_attribute("data-patient-id") for row in rows] == [remitted]
