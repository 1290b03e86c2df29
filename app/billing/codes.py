"""Code systems and code lists the billing core reads, as data (billing.md, api.md).

Every list names its source. Matching is on (system, code): a CPT code sent under the HCPCS system (or
the reverse) does not match. HCPCS is accepted in its ``https://`` and ``http://`` forms and normalised
to the ``https://`` form (``HCPCS``) in extracted facts, so the engine compares one spelling.
"""

from __future__ import annotations

from typing import Final

from app.domain import PSYCHIATRIC_CONSULTATION

CPT: Final = "http://www.ama-assn.org/go/cpt"
HCPCS: Final = "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets"
HCPCS_HTTP: Final = "http://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets"
# api.md, "What the service reads from each resource": the CoCM activity code system.
ACTIVITY_SYSTEM: Final = "http://cocm-api.org/fhir/CodeSystem/cocm-activity"

# api.md activity table; all count except the consultant's own time, which is a setting
# (PSYCHIATRIC_CONSULTATION, TimeEntry.uncounted_reason).
ACTIVITY_CODES: Final = frozenset(
    {
        "initial-assessment",
        "follow-up",
        "outreach",
        "care-coordination",
        "case-review",
        "brief-intervention",
        "relapse-prevention",
        PSYCHIATRIC_CONSULTATION,
    }
)

# api.md EpisodeOfCare: type coding from the activity system chooses the program.
PROGRAM_CODES: Final = frozenset({"cocm", "general-bhi"})

Code = tuple[str, str]  # (system, code), system in canonical form


def canonical_system(system: str) -> str:
    """The spelling facts use for ``system`` (HCPCS http:// -> https://)."""
    return HCPCS if system == HCPCS_HTTP else system


def _cpt(*codes: str) -> frozenset[Code]:
    return frozenset((CPT, code) for code in codes)


def _hcpcs(*codes: str) -> frozenset[Code]:
    return frozenset((HCPCS, code) for code in codes)


# billing.md Prerequisites: initiating visits (E/M new 99202-99205 and established 99212-99215, TCM
# 99495/99496; IPPE G0402, AWV G0438/G0439). 99211 is excluded: it is not a visit by the billing
# practitioner (MLN909432 lists the same E/M levels).
INITIATING_VISIT_CODES: Final = _cpt(
    "99202", "99203", "99204", "99205", "99212", "99213", "99214", "99215", "99495", "99496"
) | _hcpcs("G0402", "G0438", "G0439")

# billing.md APCM add-on codes: the APCM base codes (CY2025 PFS final rule, G0556-G0558).
APCM_BASE_CODES: Final = _hcpcs("G0556", "G0557", "G0558")

# billing.md "What time counts": time of an encounter that is itself a separately billed service does
# not count. E/M office visits (99202-99205, 99211-99215), the other initiating visits (TCM 99495/99496,
# IPPE G0402, AWV G0438/G0439: each is billed on its own), psychiatric diagnostic evaluation
# (90791/90792), psychotherapy (90832-90838), crisis psychotherapy (90839/90840), psychoanalysis
# (90845), family and group psychotherapy (90846, 90847, 90849, 90853) (CPT psychiatry section; AAFP BHI
# coding page). APCM base codes are monthly and carry no time, so they do not exclude an entry.
SEPARATELY_BILLED_CODES: Final = (
    INITIATING_VISIT_CODES
    | _cpt("99211")
    | _cpt("90791", "90792")
    | _cpt("90832", "90833", "90834", "90836", "90837", "90838")
    | _cpt("90839", "90840", "90845", "90846", "90847", "90849", "90853")
)

# api.md Encounter.class: inpatient and observation time does not count (billing.md).
INPATIENT_CLASS_CODES: Final = frozenset({"IMP", "ACUTE", "NONAC", "OBSENC"})
