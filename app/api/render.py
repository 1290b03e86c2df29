"""The billing month as api.md's JSON object and as the billing staff's CSV (one row per patient and
code), from the same ``BillingMonth``."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from typing import Any

from app.domain import BillingMonth


def billing_json(month: BillingMonth) -> dict[str, Any]:
    """The api.md "Billing month" object."""
    return {
        "patient_id": month.patient_id,
        "month": str(month.month),
        "setting": month.setting,
        "month_kind": month.month_kind,
        "episode_start": month.episode_start.isoformat() if month.episode_start else None,
        "minutes": month.minutes,
        "codes": [{"code": c.code, "units": c.units} for c in month.codes],
        "billable": month.billable,
        "blockers": list(month.blockers),
        "notes": list(month.notes),
    }


CSV_COLUMNS = [
    "patient_id",
    "month",
    "setting",
    "month_kind",
    "episode_start",
    "minutes",
    "code",
    "code_system",
    "units",
    "billable",
    "blockers",
    "notes",
]


def _cell(value: Any) -> str:
    """Spreadsheet-safe text: a leading =, +, - or @ would be read as a formula (OWASP CSV injection)."""
    text = "" if value is None else str(value)
    return f"'{text}" if text[:1] in {"=", "+", "-", "@"} else text


def billing_csv_rows(months: Iterable[BillingMonth]) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)

    def flush() -> str:
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return text

    writer.writerow(CSV_COLUMNS)
    yield "\ufeff" + flush()  # a BOM so that spreadsheets read UTF-8
    for month in months:
        common = [
            month.patient_id,
            str(month.month),
            month.setting,
            month.month_kind or "",
            month.episode_start.isoformat() if month.episode_start else "",
            month.minutes,
        ]
        tail = ["true" if month.billable else "false", ";".join(month.blockers), " | ".join(month.notes)]
        for code in month.codes or [None]:
            row = [
                *common,
                code.code if code else "",
                code.system if code else "",
                code.units if code else 0,
                *tail,
            ]
            writer.writerow([_cell(v) for v in row])
        yield flush()
