"""The instruments this service scores as FHIR ``Questionnaire`` resources (api.md: PHQ-9
``http://loinc.org/q/44249-1``, GAD-7 ``http://loinc.org/q/69737-5``, PHQ-2
``http://loinc.org/q/55757-9``), built from the instrument tables in ``instruments`` (one source of
truth): LOINC item codes as linkIds and codes, the LL358-3 answers with their ordinal values
(``ordinalValue`` extension), PHQ-9 item 10 unscored, and the total as a read-only integer item. A
response built from one, with the canonical in ``questionnaire``, scores as sent.

Item texts are the short labels of the tables; the LOINC codes carry the meaning a form builder
looks up.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Final

from app.measures.instruments import (
    ANSWERS,
    DIFFICULTY_ANSWERS,
    INSTRUMENTS,
    LOINC_SYSTEM,
    ORDINAL_VALUE_URL,
    Answer,
    Instrument,
    Item,
)

# LL358-3 as a form offers it: one answer per score (LA18938-3 is a variant some forms send).
OFFERED: Final = tuple(a for a in ANSWERS.values() if a.code != "LA18938-3")


def canonical(instrument: Instrument) -> str:
    return f"http://loinc.org/q/{instrument.panel}"


def questionnaire_id(instrument: Instrument) -> str:
    return instrument.name.lower()  # phq-9, gad-7, phq-2


def _option(answer: Answer) -> dict[str, Any]:
    option: dict[str, Any] = {
        "valueCoding": {"system": LOINC_SYSTEM, "code": answer.code, "display": answer.text}
    }
    if answer.score is not None:
        option["extension"] = [{"url": ORDINAL_VALUE_URL, "valueDecimal": answer.score}]
    return option


def _item(item: Item, answers: tuple[Answer, ...], *, required: bool) -> dict[str, Any]:
    return {
        "linkId": item.loinc,
        "code": [{"system": LOINC_SYSTEM, "code": item.loinc}],
        "prefix": str(item.number),
        "text": item.text,
        "type": "choice",
        "required": required,
        "answerOption": [_option(answer) for answer in answers],
    }


def questionnaire(instrument: Instrument) -> dict[str, Any]:
    items = [_item(item, OFFERED, required=True) for item in instrument.items]
    items += [_item(item, tuple(DIFFICULTY_ANSWERS.values()), required=False) for item in instrument.unscored]
    items.append(
        {
            "linkId": instrument.total,
            "code": [{"system": LOINC_SYSTEM, "code": instrument.total, "display": instrument.total_display}],
            "text": instrument.total_display,
            "type": "integer",
            "required": False,
            "readOnly": True,
        }
    )
    return {
        "resourceType": "Questionnaire",
        "id": questionnaire_id(instrument),
        "url": canonical(instrument),
        "name": instrument.name.replace("-", ""),
        "title": instrument.panel_display,
        "status": "active",
        "subjectType": ["Patient"],
        "code": [{"system": LOINC_SYSTEM, "code": instrument.panel, "display": instrument.panel_display}],
        "item": items,
    }


QUESTIONNAIRES: Final[Mapping[str, dict[str, Any]]] = MappingProxyType(
    {questionnaire_id(i): questionnaire(i) for i in INSTRUMENTS.values()}
)
