"""``make bench-quality``: the four quality measures for 1,000 and 10,000 patients (quality.md:
10,000 patients under 5 s, linear).

Each size runs on a fresh, migrated database loaded through the write path of ``POST /fhir``
(``process_bundle``: validation, scoring, facts), one transaction Bundle per 50 patients. Each
patient: a Patient with a birth date, a depression Condition (one in twenty also an exclusion), four
PHQ-9 total-score Observations over 2025-2026 and seven care-manager Encounters (an episode in
2026). Then, in this process, with the per-process caches emptied before every run (cold):

- **quality**: ``evaluate_measures`` for the four measures over 2026, as ``$evaluate-measure`` and
  the dashboard compute it: read every fact of every patient in care once, then the pure core;
- **baseline**: the registry of the same patients as of 2026-12-31 (``sorted_registry``), the same
  reads through the care core, measured in the same run.

The median of 3 runs is reported; the section between the ``quality`` markers of RESULTS.md is
replaced.

    .venv/bin/python benchmarks/quality.py --database sqlite   # or postgresql, both
"""

from __future__ import annotations

import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from run import database_arguments, fresh_database, machine, replace_section  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

from app.domain import Actor  # noqa: E402
from app.quality.measures import MEASURES, Period  # noqa: E402
from app.services import quality as quality_service  # noqa: E402
from app.services import reports  # noqa: E402
from app.services.bundles import process_bundle  # noqa: E402
from app.services.resources import ResourceService  # noqa: E402
from app.services.uow import transact  # noqa: E402
from app.settings import Settings  # noqa: E402
from app.store.db import analyze, make_engine, make_sessionmaker  # noqa: E402

START, END = "<!-- quality -->", "<!-- /quality -->"
PERIOD = Period(date(2026, 1, 1), date(2026, 12, 31))
SIZES = (1_000, 10_000)
PER_BUNDLE = 50
ICD10 = "http://hl7.org/fhir/sid/icd-10-cm"
ACTIVITY = "http://cocm-api.org/fhir/CodeSystem/cocm-activity"


def _patient(n: int, rng: random.Random) -> list[dict[str, Any]]:
    url = f"urn:uuid:00000000-0000-4000-8000-{n:012d}"
    subject = {"reference": url}
    index = date(2025, 1, 1) + timedelta(days=rng.randint(0, 300))
    start = date(2026, 1, 1) + timedelta(days=rng.randint(0, 300))
    resources: list[dict[str, Any]] = [
        {"resourceType": "Patient", "birthDate": f"{rng.randint(1940, 2008)}-06-15"},
        {
            "resourceType": "Condition",
            "code": {"coding": [{"system": ICD10, "code": rng.choice(["F32.1", "F33.1", "F32.A"])}]},
            "subject": subject,
            "onsetDateTime": (index - timedelta(days=30)).isoformat(),
        },
    ]
    if rng.random() < 0.05:
        resources.append(
            {
                "resourceType": "Condition",
                "code": {"coding": [{"system": ICD10, "code": "F31.81"}]},
                "subject": subject,
                "onsetDateTime": "2025-06-01",
            }
        )
    for day, score in (
        (index, rng.randint(10, 24)),
        (index + timedelta(days=150), rng.randint(2, 18)),
        (index + timedelta(days=365), rng.randint(0, 15)),
        (start, rng.randint(8, 22)),
    ):
        resources.append(
            {
                "resourceType": "Observation",
                "status": "final",
                "code": {"coding": [{"system": "http://loinc.org", "code": "44261-6"}]},
                "subject": subject,
                "effectiveDateTime": f"{day.isoformat()}T10:00:00Z",
                "valueInteger": score,
            }
        )
    for k, activity in enumerate(
        ("initial-assessment", "follow-up", "outreach", "follow-up", "case-review", "follow-up", "follow-up")
    ):
        day = start + timedelta(days=k * rng.randint(6, 14))
        resources.append(
            {
                "resourceType": "Encounter",
                "status": "finished",
                "class": {"code": "AMB"},
                "type": [{"coding": [{"system": ACTIVITY, "code": activity}]}],
                "subject": subject,
                "period": {"start": f"{day.isoformat()}T09:00:00Z"},
                "length": {
                    "value": rng.randint(10, 40),
                    "unit": "min",
                    "system": "http://unitsofmeasure.org",
                    "code": "min",
                },
            }
        )
    entries = [{"fullUrl": url, "resource": resources[0], "request": {"method": "POST", "url": "Patient"}}]
    entries += [
        {"resource": r, "request": {"method": "POST", "url": r["resourceType"]}} for r in resources[1:]
    ]
    return entries


def load(session: Session, settings: Settings, patients: int) -> tuple[int, float]:
    rng = random.Random(12)
    service = ResourceService(
        session, "default", settings.zone, Actor("bench"), billing=settings.billing, care=settings.care
    )
    resources = 0
    began = time.perf_counter()
    for first in range(0, patients, PER_BUNDLE):
        entries = [e for n in range(first, min(first + PER_BUNDLE, patients)) for e in _patient(n, rng)]
        resources += len(entries)
        process_bundle(
            service,
            {"resourceType": "Bundle", "type": "transaction", "entry": entries},
            settings,
            "urn:bench",
        )
    return resources, time.perf_counter() - began


def median_seconds(work: Callable[[], object], clear: Callable[[], None], runs: int = 3) -> float:
    times = []
    for _ in range(runs):
        clear()
        began = time.perf_counter()
        work()
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def measure(url: str, patients: int) -> dict[str, Any]:
    settings = Settings(database_url=url, timezone="UTC")
    engine = make_engine(settings.sqlalchemy_url)
    sessions = make_sessionmaker(engine)  # the app's sessions (its SQLite transaction handling)
    with sessions() as session:
        resources, load_seconds = load(session, settings, patients)
    analyze(engine)
    with sessions() as session:
        service = ResourceService(session, "default", settings.zone, Actor("bench"))
        measures = list(MEASURES.values())
        found: dict[str, Any] = {}

        def run_quality() -> None:
            results, _ = transact(
                service, lambda: quality_service.evaluate_measures(service, settings, [PERIOD], measures)
            )
            found["denominators"] = {r.measure.id: r.groups[0].count("denominator") for r in results[0]}

        def run_registry() -> None:
            transact(service, lambda: reports.sorted_registry(service, settings, PERIOD.end))

        quality_s = median_seconds(run_quality, quality_service.FACTS.entries.clear)
        registry_s = median_seconds(run_registry, reports.REGISTRIES.entries.clear)
    engine.dispose()
    return {
        "patients": patients,
        "resources": resources,
        "load_s": load_seconds,
        "quality_s": quality_s,
        "registry_s": registry_s,
        "denominators": found["denominators"],
    }


def main() -> None:
    parser = database_arguments(__doc__)
    args = parser.parse_args()
    kinds = ["sqlite", "postgresql"] if args.database == "both" else [args.database]
    info = machine()
    began = time.perf_counter()
    rows: list[tuple[str, dict[str, Any]]] = []
    with tempfile.TemporaryDirectory() as workdir:
        for kind in kinds:
            for size in SIZES:
                with fresh_database(kind, args.postgres_url, Path(workdir)) as url:
                    result = measure(url, size)
                print(kind, result, flush=True)
                rows.append((kind, result))
    lines = [
        START,
        "## Quality measures (`benchmarks/quality.py`, `make bench-quality`)",
        "",
        f"- date: {info['date']}; whole run {(time.perf_counter() - began) / 60:.1f} min",
        f"- CPU: {info['cpu']}; Python {info['python']}; in-process, caches emptied before every run (cold), median of 3",
        "- quality = the four measures over 2026 (`evaluate_measures`: one read per fact table, then the pure core);",
        "  baseline = the registry of the same patients (`sorted_registry`), same reads through the care core",
        "",
        "| database | patients | resources loaded | quality | registry (baseline) | quality / registry | per 1,000 patients | denominators (12m, 6m, 4w, consult) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for kind, r in rows:
        dens = ", ".join(str(v) for v in r["denominators"].values())
        lines.append(
            f"| {kind} | {r['patients']:,} | {r['resources']:,} ({r['resources'] / r['load_s']:,.0f}/s) | "
            f"{r['quality_s']:.2f} s | {r['registry_s']:.2f} s | {r['quality_s'] / r['registry_s']:.2f}x | "
            f"{r['quality_s'] / r['patients'] * 1000:.3f} s | {dens} |"
        )
    lines += [
        "",
        "Target (quality.md): 10,000 patients under 5 s, linear in the patients. A quality / registry ratio",
        "near 1 means the measures cost about what reading the facts costs; the per-1,000 column shows how",
        "linear the whole is.",
        END,
    ]
    section = "\n".join(lines) + "\n"
    replace_section(START, END, section)


if __name__ == "__main__":
    main()
