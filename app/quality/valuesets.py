"""The diagnosis value sets of the quality measures, as data (quality.md, Diagnoses), and the
SNOMED CT to ICD-10-CM map that ships with the service.

Codes are matched in ICD-10-CM without their dot and in upper case, so ``F33.1`` and ``F331`` are
one code. A value set lists exact codes and code prefixes (a prefix stands for the category and
every code below it, e.g. ``F31`` for F31.0-F31.9).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from app.domain import ICD10_CM, DiagnosisCategory

__all__ = [
    "ICD10_CM",
    "SNOMED_CT",
    "SNOMED_TO_ICD10",
    "VALUE_SETS",
    "ValueSet",
    "category_of",
    "normalize",
    "with_dot",
]
SNOMED_CT: Final = "http://snomed.info/sct"


@dataclass(frozen=True)
class ValueSet:
    name: str
    category: DiagnosisCategory
    source: str
    codes: frozenset[str] = frozenset()  # ICD-10-CM without the dot
    prefixes: tuple[str, ...] = ()

    def contains(self, code: str) -> bool:
        return code in self.codes or code.startswith(self.prefixes)


def normalize(code: str) -> str:
    """An ICD-10-CM code as matched: without its dot, upper case (``f33.1`` -> ``F331``)."""
    return code.replace(".", "").strip().upper()


def with_dot(code: str) -> str:
    """An ICD-10-CM code as displayed: the dot after the category (``F331`` -> ``F33.1``)."""
    plain = normalize(code)
    return plain if len(plain) <= 3 else f"{plain[:3]}.{plain[3:]}"


VALUE_SETS: Final[tuple[ValueSet, ...]] = (
    ValueSet(
        "Major depression including remission, or dysthymia",
        "depression",
        # CMS159 value sets "Major Depression Including Remission" and "Dysthymia" as quality.md lists them.
        "quality.md Diagnoses; CMS159 (MIPS 370) denominator value sets",
        frozenset(
            {"F320", "F321", "F322", "F323", "F324", "F325", "F329", "F32A"}
            | {"F330", "F331", "F332", "F333", "F3340", "F3341", "F3342", "F338", "F339", "F341"}
        ),
    ),
    ValueSet(
        "Bipolar disorder", "exclusion", "quality.md; CMS159 exclusion 'Bipolar Disorder'", prefixes=("F31",)
    ),
    ValueSet(
        "Personality disorder (emotionally labile and other)",
        "exclusion",
        "quality.md; CMS159 exclusion 'Personality Disorder Emotionally Labile' (F60.3), widened to F60.*",
        prefixes=("F60",),
    ),
    ValueSet(
        "Schizophrenia or psychotic disorder",
        "exclusion",
        "quality.md; CMS159 exclusion 'Schizophrenia or Psychotic Disorder' (F20-F29)",
        prefixes=tuple(f"F2{digit}" for digit in range(10)),
    ),
    ValueSet(
        "Pervasive developmental disorder",
        "exclusion",
        "quality.md; CMS159 exclusion 'Pervasive Developmental Disorder'",
        prefixes=("F84",),
    ),
    ValueSet(
        "Palliative care",
        "exclusion",
        "quality.md; CMS159 exclusion 'Palliative Care'",
        codes=frozenset({"Z515"}),
    ),
)

# SNOMED CT concept -> (ICD-10-CM code, display): the concepts EHR problem lists use for the value
# sets above, mapped as the NLM SNOMED CT to ICD-10-CM map does for an adult without further
# qualifiers. A SNOMED code outside this table is not a CoCM diagnosis here (send the ICD-10-CM
# coding beside it).
SNOMED_TO_ICD10: Final[dict[str, tuple[str, str]]] = {
    "35489007": ("F32.A", "Depressive disorder"),
    "370143000": ("F32.9", "Major depressive disorder"),
    "36923009": ("F32.9", "Major depression, single episode"),
    "87512008": ("F32.0", "Mild major depression"),
    "832007": ("F32.1", "Moderate major depression"),
    "76441001": ("F32.2", "Severe major depression without psychotic features"),
    "430852001": ("F32.3", "Severe major depression with psychotic features"),
    "66344007": ("F33.9", "Recurrent major depression"),
    "191616006": ("F33.9", "Recurrent depression"),
    "78667006": ("F34.1", "Dysthymia"),
    "13746004": ("F31.9", "Bipolar disorder"),
    "58214004": ("F20.9", "Schizophrenia"),
    "69322001": ("F29", "Psychotic disorder"),
    "35919005": ("F84.9", "Pervasive developmental disorder"),
    "43614003": ("F84.0", "Autistic disorder"),
    "20010003": ("F60.3", "Borderline personality disorder"),
    "33449004": ("F60.9", "Personality disorder"),
    "103735009": ("Z51.5", "Palliative care"),
}


def category_of(code: str) -> DiagnosisCategory | None:
    """The value set category of an ICD-10-CM code (with or without its dot), None when in none."""
    plain = normalize(code)
    return next((vs.category for vs in VALUE_SETS if vs.contains(plain)), None)
