"""``make bench-import``: ``cocm import`` of 100,000 patients' history (issue 14, "Scale out").

The file is NDJSON as a bulk export or an integration engine writes it: per patient its Patient (with
an id, so the lines after it can name ``Patient/<id>``), then its history: a Consent, an office
visit, four care-manager time entries (Encounters) and a PHQ-9 total (Observation), 8 resources of
``payloads.patient_entries``. ``cocm import`` loads it through the write path of the API
(validation, scoring, facts, audit trail) in batches of 100, into a fresh, migrated database. It
runs as its own process, so its peak RSS (``ru_maxrss`` of the child) is the import's alone.

Reported: resources per second over the whole file and the process's peak RSS, against a floor
measured in the same run: every line parsed and validated with the R4B model in one process, no
database (what any import has to do at least).

The section between the ``import`` markers of RESULTS.md is replaced.

    .venv/bin/python benchmarks/importing.py --database sqlite --patients 2000
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import payloads  # noqa: E402
from run import BIN, ROOT, database_arguments, fresh_database, machine, replace_section, server_env  # noqa: E402

from app.resources.validation import parse_json, validate_resource  # noqa: E402

START, END = "<!-- import -->", "<!-- /import -->"
BATCH = 100


def write_file(path: Path, patients: int) -> int:
    """The NDJSON history of ``patients`` patients; answers the number of lines."""
    rng = random.Random(14)
    lines = 0
    with path.open("w") as out:
        for number in range(patients):
            entries = payloads.patient_entries(rng, number)
            patient_id = f"p{number:07d}"
            refs = {entries[0]["fullUrl"]: f"Patient/{patient_id}"}
            for index, entry in enumerate(entries):
                item: dict[str, Any] = entry["resource"]
                if index == 0:
                    item = {**item, "id": patient_id}
                out.write(json.dumps(_rewritten(item, refs)) + "\n")
                lines += 1
    return lines


def _rewritten(node: Any, refs: dict[str, str]) -> Any:
    if isinstance(node, dict):
        return {k: refs.get(v, v) if k == "reference" else _rewritten(v, refs) for k, v in node.items()}
    if isinstance(node, list):
        return [_rewritten(v, refs) for v in node]
    return node


def floor(path: Path) -> float:
    """Seconds to parse and validate every line (R4B model), in this process, no database."""
    began = time.perf_counter()
    with path.open("rb") as lines:
        for line in lines:
            data = parse_json(line)
            validate_resource(data, data["resourceType"])
    return time.perf_counter() - began


def run_import(url: str, path: Path) -> tuple[float, int, str]:
    """``cocm import`` in a child process: seconds, that child's own peak RSS (KiB, ``wait4``), its
    last line."""
    began = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        child = subprocess.Popen(
            [str(BIN / "cocm"), "import", str(path), "--batch", str(BATCH)],
            cwd=ROOT,
            env=server_env(url),
            stdout=out,
            stderr=err,
        )
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.perf_counter() - began
        out.seek(0)
        err.seek(0)
        if child.returncode != 0:
            raise RuntimeError(f"cocm import failed ({child.returncode}): {err.read()[-2000:]}")
        last = (out.read().strip().splitlines() or [""])[-1]
    return seconds, usage.ru_maxrss, last


def main() -> None:
    parser = database_arguments(__doc__)
    parser.add_argument("--patients", type=int, default=100_000)
    args = parser.parse_args()
    kinds = ["sqlite", "postgresql"] if args.database == "both" else [args.database]
    info = machine()
    began = time.perf_counter()
    rows: list[tuple[str, float, int, str]] = []
    with tempfile.TemporaryDirectory(prefix="cocm-import-") as workdir:
        path = Path(workdir) / "history.ndjson"
        lines = write_file(path, args.patients)
        print(f"{lines:,} lines, {path.stat().st_size / 2**20:.0f} MiB", flush=True)
        floor_s = floor(path)
        print(f"floor: {lines / floor_s:,.0f} resources/s", flush=True)
        for kind in kinds:
            with fresh_database(kind, args.postgres_url, Path(workdir)) as url:
                seconds, peak_kib, last = run_import(url, path)
            print(kind, f"{lines / seconds:,.0f} resources/s", f"{peak_kib / 1024:.0f} MiB", last, flush=True)
            rows.append((kind, seconds, peak_kib, last))
    lines_md = [
        START,
        "## Bulk import (`benchmarks/importing.py`, `make bench-import`)",
        "",
        f"- date: {info['date']}; whole run {(time.perf_counter() - began) / 60:.1f} min",
        f"- CPU: {info['cpu']}; Python {info['python']}",
        f"- file: {args.patients:,} patients' history, {lines:,} NDJSON lines (a Patient with an id, then a",
        "  Consent, a visit, four time entries and a PHQ-9 total per patient); `cocm import --batch 100`",
        "  into a fresh database, one process; peak RSS is that process's `ru_maxrss`",
        f"- floor: the same lines parsed and validated (R4B) in one process, no database: "
        f"{lines / floor_s:,.0f} resources/s",
        "",
        "| database | resources/s | vs floor | whole import | peak RSS | cocm import said |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for kind, seconds, peak_kib, last in rows:
        rate = lines / seconds
        lines_md.append(
            f"| {kind} | {rate:,.0f} | {rate * floor_s / lines:.2f}x | {seconds / 60:.1f} min | "
            f"{peak_kib / 1024:.0f} MiB | {last} |"
        )
    lines_md += [END]
    replace_section(START, END, "\n".join(lines_md) + "\n")


if __name__ == "__main__":
    main()
