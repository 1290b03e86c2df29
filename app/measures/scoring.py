"""Scoring PHQ-9, GAD-7 and PHQ-2 from QuestionnaireResponses and total-score Observations.

Pure functions over the already-validated resource as a plain JSON ``dict``; results are frozen
dataclasses. The rules are those of ``measures.md`` (the project spec) ("Scoring a QuestionnaireResponse as it
arrives in the wild"); the instrument tables live in :mod:`app.measures.instruments`.

Choices made here (each a documented decision, not an accident):

Instrument detection (``score_questionnaire_response``)
    1. ``questionnaire`` canonical (without ``|version``) found in the linkId maps: that map decides.
    2. Otherwise the linkIds are read as LOINC codes (a leading ``/`` stripped, nested groups and
       answer-nested items searched) and, failing that, through ``FALLBACK_MAPS`` (``phq9-1``,
       ``PHQ.1``, ``gad7-1``, ...). A canonical that ends in a panel code (``http://loinc.org/q/44249-1``,
       ``.../Questionnaire/69737-5``) is a hint: it wins when the items fit it or when no item is
       recognised, so a PHQ-9 with only items 1-2 answered stays an incomplete PHQ-9, not a PHQ-2.
    3. A response carrying both PHQ-9 and GAD-7 items is scored as the PHQ-9 (the primary CoCM
       instrument) with a warning; PHQ-2 items alone make a PHQ-2. Nothing recognised: ``None`` (the
       caller stores the response unscored).

Answers
    ``valueCoding`` with an LL358-3 code (system absent, ``http://loinc.org`` or the LOINC OID);
    ``valueInteger`` 0-3; ``valueDecimal`` when it is a whole number 0-3. Weight extensions
    (``ordinalValue``, ``itemWeight``, ``iso21090-CO-value``; ``valueDecimal`` or ``valueInteger``; on
    the coding or on the answer) are a cross-check: the LA code wins and a conflicting weight is a
    warning. A coding without a known LA code (another code system, a local code) but with a whole
    weight 0-3 is scored by its weight, silently: that is how SDC forms with local answer codes
    carry their scores.

Errors (``BusinessRuleViolation``, 422)
    Raised for answers that cannot be scored: an integer outside 0-3, an unknown answer code without a
    usable weight, an answer type that carries no score (``valueString``, ...), two answers on one
    scored item, or the same item answered twice with different scores. The issue's ``expression``
    is the FHIRPath of the offending answer, e.g. ``QuestionnaireResponse.item[3].answer[0]`` or
    ``QuestionnaireResponse.item[0].item[2].answer[0]`` for nested groups. Rejecting beats guessing:
    a silently dropped item would turn into a wrong total or a missed safety flag.

Totals and completeness
    Total items (``44261-6``, ``70274-6``, ``55758-7`` and mapped total linkIds) are never trusted:
    the total is recomputed and a disagreeing or unreadable claim is a warning. A status other than
    ``completed``/``amended`` or an unanswered scored item gives ``complete=False``, ``total=None``
    and a warning; the item scores (and item 9) are still reported so that the caller can store them.
    The PHQ-9 difficulty item is never scored and its answer is not checked.

PHQ-2 from a PHQ-9
    ``ScoredResponse.phq2`` carries items 1 + 2 of a PHQ-9 (and the total of a standalone PHQ-2) when
    both are answered in a completed response. It is exposed for display and for a PHQ-2 total claimed
    inside a PHQ-9 (``55758-7``); the store records only the primary instrument, so one response is
    one measurement.

Observations (``score_observation``)
    A total-score Observation (LOINC ``44261-6``, ``70274-6``, ``55758-7``) with status ``final``,
    ``amended`` or ``corrected`` is a measurement; other statuses (``registered``, ``preliminary``,
    ``cancelled``, ``entered-in-error``, ``unknown``) give ``None`` and are stored only. Its value
    comes from ``valueQuantity.value`` (no comparator), ``valueInteger``, ``valueString`` (ASCII
    digits after stripping blanks) or ``valueDecimal`` and must be a whole number in range, else
    ``BusinessRuleViolation`` at ``Observation.value[x]``. ``derived_from`` names the
    ``QuestionnaireResponse/<id>`` it was derived from, so that the store counts the pair once.
    A PHQ-9 total with a ``44260-8`` component carries item 9 (``item9``).

Item 9 on its own (``item9_observation``)
    An item-level Observation coded ``44260-8`` (counted statuses as above) answers the safety item
    without a total: an LL358-3 code or a whole number 0-3. Its value, like a ``44260-8`` component's,
    must be a score; no value (``dataAbsentReason``) means not answered.

Derived Observation (``derived_observation``)
    Severity goes into ``interpretation`` with a code from the service's own code system
    ``http://cocm-api.org/fhir/CodeSystem/score-severity`` (``minimal``, ``mild``, ``moderate``,
    ``moderately-severe``, ``severe``) and the band as text: LOINC has no answer list for these bands.
    A PHQ-9 with item 9 answered carries a ``44260-8`` component (``valueInteger``). Without
    ``authored`` the Observation has no ``effectiveDateTime``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final

from app.domain import Instrument as InstrumentName
from app.errors import BusinessRuleViolation, Issue
from app.measures.instruments import (
    ANSWERS,
    BY_PANEL_CODE,
    BY_TOTAL_CODE,
    FALLBACK_MAPS,
    GAD7,
    INSTRUMENTS,
    LOINC_OID,
    LOINC_SYSTEM,
    MAX_ITEM_SCORE,
    PHQ2,
    PHQ9,
    QUESTIONNAIRE_MAPS,
    WEIGHT_EXTENSION_URLS,
    Instrument,
    LinkIdMap,
    canonical_key,
    severity,
)

SCORED_RESPONSE_STATUSES: Final = frozenset({"completed", "amended"})
COUNTED_OBSERVATION_STATUSES: Final = frozenset({"final", "amended", "corrected"})
SEVERITY_SYSTEM: Final = "http://cocm-api.org/fhir/CodeSystem/score-severity"
OBSERVATION_CATEGORY_SYSTEM: Final = "http://terminology.hl7.org/CodeSystem/observation-category"
UCUM: Final = "http://unitsofmeasure.org"

_LOINC_SYSTEMS: Final = frozenset({LOINC_SYSTEM, LOINC_OID})
_PRIORITY: Final[tuple[InstrumentName, ...]] = ("PHQ-9", "GAD-7", "PHQ-2")
_PANEL_SUFFIX: Final = re.compile(r"(?<!\d)(\d{4,7}-\d)$")
_DIGITS: Final = re.compile(r"[0-9]+")
_QR_REFERENCE: Final = re.compile(r"(?:^|/)QuestionnaireResponse/([A-Za-z0-9\-.]{1,64})(?:/_history/[^/]+)?$")
_VALUE_KEYS: Final = ("valueQuantity", "valueInteger", "valueString", "valueDecimal")


@dataclass(frozen=True)
class ScoredResponse:
    """The score of one QuestionnaireResponse.

    ``item_scores`` maps each answered scored item's LOINC code to its score; ``total`` is ``None``
    unless ``complete``; ``item9`` is the PHQ-9 safety item when answered (complete or not);
    ``warnings`` are plain sentences naming the item concerned.
    """

    instrument: InstrumentName
    total: int | None
    complete: bool
    item_scores: dict[str, int]
    item9: int | None
    severity: str | None
    warnings: tuple[str, ...]
    phq2: int | None


@dataclass(frozen=True)
class ObservationScore:
    """A total-score Observation that counts as a measurement.

    ``effective`` is the Observation's ``effectiveDateTime`` / ``effectiveInstant`` /
    ``effectivePeriod.start`` (else ``issued``) as sent; ``item9`` comes from a ``44260-8`` component.
    """

    instrument: InstrumentName
    score: int
    severity: str | None
    derived_from: str | None
    effective: str | None
    item9: int | None = None


# --- walking a response ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Node:
    link_id: str
    item: Mapping[str, Any]
    path: str  # FHIRPath of the item, e.g. QuestionnaireResponse.item[0].item[2]


def _walk(items: Any, path: str) -> Iterator[_Node]:
    if not isinstance(items, list):
        return
    for i, item in enumerate(items):
        if not isinstance(item, Mapping):
            continue
        here = f"{path}.item[{i}]"
        link_id = item.get("linkId")
        if isinstance(link_id, str):
            yield _Node(link_id.strip(), item, here)
        yield from _walk(item.get("item"), here)
        answers = item.get("answer")
        if isinstance(answers, list):
            for j, answer in enumerate(answers):
                if isinstance(answer, Mapping):
                    yield from _walk(answer.get("item"), f"{here}.answer[{j}]")


def _loinc_link(link_id: str) -> str:
    return link_id.lstrip("/")


# --- numbers -----------------------------------------------------------------------------------


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | Decimal) and not isinstance(value, bool)


def _whole(value: Any) -> int | None:
    """``value`` as an int when it is a JSON number with no fractional part, else ``None``."""
    if not _is_number(value):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Decimal) and not value.is_finite():
        return None
    return int(value) if value == int(value) else None


def _show(value: Any) -> str:
    whole = _whole(value)
    return str(whole) if whole is not None else str(value)


def _violation(diagnostics: str, expression: str) -> BusinessRuleViolation:
    return BusinessRuleViolation(Issue(diagnostics, code="business-rule", expression=(expression,)))


# --- detection ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Plan:
    instrument: Instrument
    mapped: LinkIdMap | None  # the canonical's map, when the canonical is mapped
    fallbacks: tuple[LinkIdMap, ...]  # pattern maps of the instrument
    warnings: tuple[str, ...]


_PHQ9_ONLY = frozenset({*PHQ9.item_codes[2:], *PHQ9.unscored_codes, PHQ9.total})
_PHQ2_CODES = frozenset({*PHQ2.item_codes, PHQ2.total})
_GAD7_CODES = frozenset({*GAD7.item_codes, GAD7.total})


def _loinc_instruments(link_ids: set[str]) -> set[InstrumentName]:
    codes = {_loinc_link(link_id) for link_id in link_ids}
    found: set[InstrumentName] = set()
    if not _PHQ9_ONLY.isdisjoint(codes):
        found.add("PHQ-9")
    elif not _PHQ2_CODES.isdisjoint(codes):
        found.add("PHQ-2")
    if not _GAD7_CODES.isdisjoint(codes):
        found.add("GAD-7")
    return found


def _plan(resource: Mapping[str, Any], nodes: Sequence[_Node], maps: Mapping[str, LinkIdMap]) -> _Plan | None:
    canonical = resource.get("questionnaire")
    key = canonical_key(canonical) if isinstance(canonical, str) else ""
    mapped = maps.get(key) if key else None
    if mapped is not None:
        return _Plan(INSTRUMENTS[mapped.instrument], mapped, (), ())

    link_ids = {node.link_id for node in nodes}
    found = _loinc_instruments(link_ids)
    matching = [m for m in FALLBACK_MAPS if not m.item_link_ids.isdisjoint(link_ids)]
    found |= {m.instrument for m in matching}

    hint_match = _PANEL_SUFFIX.search(key)
    hint = BY_PANEL_CODE.get(hint_match.group(1)) if hint_match else None
    chosen: InstrumentName | None = None
    if hint is not None and (not found or hint.name in found or (hint is PHQ9 and found == {"PHQ-2"})):
        chosen = hint.name
    elif found:
        chosen = next(name for name in _PRIORITY if name in found)
    if chosen is None:
        return None

    warnings: list[str] = []
    ignored = sorted(found - {chosen, "PHQ-2"} if chosen == "PHQ-9" else found - {chosen})
    if ignored:
        warnings.append(
            f"the response also carries {' and '.join(ignored)} items; only the {chosen} is scored"
        )
    if hint is not None and hint.name != chosen:
        warnings.append(
            f"the questionnaire {key} names the {hint.name} panel {hint.panel} "
            f"but the items are those of the {chosen}; scored as the {chosen}"
        )
    fallbacks = tuple(m for m in FALLBACK_MAPS if m.instrument == chosen)
    return _Plan(INSTRUMENTS[chosen], None, fallbacks, tuple(warnings))


@dataclass(frozen=True)
class _Role:
    kind: str  # "item", "unscored" or "total"
    code: str  # item LOINC, or the total code the item claims
    label: str  # how warnings name it


def _role(node: _Node, plan: _Plan) -> _Role | None:
    instrument = plan.instrument
    sources = (plan.mapped,) if plan.mapped is not None else plan.fallbacks
    for linkmap in sources:
        if node.link_id in linkmap.items:
            return _Role("item", linkmap.items[node.link_id], node.link_id)
        if node.link_id in linkmap.unscored:
            return _Role("unscored", linkmap.unscored[node.link_id], node.link_id)
        if node.link_id in linkmap.totals:
            return _Role("total", instrument.total, f"{node.link_id} ({instrument.total})")
    code = _loinc_link(node.link_id)
    if code in instrument.item_codes:
        return _Role("item", code, code)
    if code in instrument.unscored_codes:
        return _Role("unscored", code, code)
    if code in BY_TOTAL_CODE:
        return _Role("total", code, code)
    return None


# --- answers -------------------------------------------------------------------------------------


def _weights(answer: Mapping[str, Any], coding: Mapping[str, Any]) -> list[tuple[str, Any]]:
    found: list[tuple[str, Any]] = []
    for holder in (coding, answer):
        extensions = holder.get("extension")
        if not isinstance(extensions, list):
            continue
        for ext in extensions:
            if isinstance(ext, Mapping) and ext.get("url") in WEIGHT_EXTENSION_URLS:
                value = ext.get("valueDecimal", ext.get("valueInteger"))
                found.append((str(ext["url"]).rsplit("/", 1)[-1], value))
    return found


def _coding_score(
    answer: Mapping[str, Any], coding: Mapping[str, Any], label: str, where: str, warnings: list[str]
) -> int:
    code = coding.get("code")
    code = code.strip() if isinstance(code, str) else None
    system = coding.get("system")
    loinc = system is None or (isinstance(system, str) and system in _LOINC_SYSTEMS)
    known = ANSWERS.get(code) if code and loinc else None
    weights = _weights(answer, coding)
    if known is not None and known.score is not None:
        for name, weight in weights:
            if _whole(weight) != known.score:
                warnings.append(
                    f"{label} answer {known.code} scores {known.score} but its {name} weight says "
                    f"{_show(weight)}; the LA code's {known.score} is used"
                )
        return known.score
    shown = f"{system}|{code}" if system else str(code)
    if not weights:
        raise _violation(
            f"{label} answer {shown} is not an answer of LOINC list LL358-3 and carries no weight", where
        )
    name, weight = weights[0]
    score = _whole(weight)
    if score is None or not 0 <= score <= MAX_ITEM_SCORE:
        raise _violation(
            f"{label} answer {shown} has {name} weight {_show(weight)}; a score must be 0-{MAX_ITEM_SCORE}",
            where,
        )
    for other_name, other in weights[1:]:
        if _whole(other) != score:
            warnings.append(
                f"{label} answer {shown} has {name} weight {score} but {other_name} weight "
                f"{_show(other)}; the {name} weight {score} is used"
            )
    return score


def _answer_score(answer: Mapping[str, Any], label: str, where: str, warnings: list[str]) -> int:
    coding = answer.get("valueCoding")
    if isinstance(coding, Mapping):
        return _coding_score(answer, coding, label, where, warnings)
    for key in ("valueInteger", "valueDecimal"):
        if key in answer:
            value = answer[key]
            score = _whole(value)
            if score is None or not 0 <= score <= MAX_ITEM_SCORE:
                raise _violation(f"{label} answer {_show(value)} is outside 0-{MAX_ITEM_SCORE}", where)
            return score
    value_keys = [k for k in answer if k.startswith("value")]
    if value_keys:
        raise _violation(f"{label} is answered with {value_keys[0]}, which carries no score", where)
    raise _violation(f"{label} has an answer without a value", where)


def _claimed_total(item: Mapping[str, Any]) -> tuple[bool, Any]:
    """(present, value) of a total item's first answer: a number, or ``None`` when unreadable."""
    answers = item.get("answer")
    if not isinstance(answers, list) or not answers or not isinstance(answers[0], Mapping):
        return False, None
    answer = answers[0]
    for key in ("valueInteger", "valueDecimal"):
        if key in answer:
            return True, answer[key] if _is_number(answer[key]) else None
    quantity = answer.get("valueQuantity")
    if isinstance(quantity, Mapping):
        value = quantity.get("value")
        return True, value if _is_number(value) else None
    return True, None


# --- public: QuestionnaireResponse -------------------------------------------------------------


def score_questionnaire_response(
    resource: Mapping[str, Any], maps: Mapping[str, LinkIdMap] = QUESTIONNAIRE_MAPS
) -> ScoredResponse | None:
    """Score a QuestionnaireResponse; ``None`` when it is not a known instrument.

    ``maps`` are the canonical-to-linkId maps (default: the shipped ones; an operator may pass more).
    Raises ``BusinessRuleViolation`` for an answer that cannot be scored (see the module docstring).
    """
    resource_type = resource.get("resourceType", "QuestionnaireResponse")
    if resource_type != "QuestionnaireResponse":
        raise ValueError(f"expected a QuestionnaireResponse, got {resource_type!r}")
    nodes = list(_walk(resource.get("item"), "QuestionnaireResponse"))
    plan = _plan(resource, nodes, maps)
    if plan is None:
        return None
    instrument = plan.instrument
    warnings = list(plan.warnings)

    scores: dict[str, int] = {}
    first_seen: dict[str, str] = {}
    claims: list[tuple[_Role, Any]] = []
    for node in nodes:
        role = _role(node, plan)
        if role is None or role.kind == "unscored":
            continue
        if role.kind == "total":
            present, value = _claimed_total(node.item)
            if present:
                claims.append((role, value))
            continue
        answers = node.item.get("answer")
        if not isinstance(answers, list) or not answers:
            continue
        label = instrument.item_labels[role.code]
        if len(answers) > 1:
            raise _violation(
                f"{label} has {len(answers)} answers; a scored item takes one", f"{node.path}.answer[1]"
            )
        where = f"{node.path}.answer[0]"
        if not isinstance(answers[0], Mapping):
            raise _violation(f"{label} answer is not an object", where)
        score = _answer_score(answers[0], label, where, warnings)
        if role.code in scores:
            if scores[role.code] != score:
                raise _violation(
                    f"{label} is answered twice, with {scores[role.code]} at {first_seen[role.code]} "
                    f"and {score} here",
                    where,
                )
            continue
        scores[role.code] = score
        first_seen[role.code] = where

    status = resource.get("status")
    complete = True
    if not isinstance(status, str) or status not in SCORED_RESPONSE_STATUSES:
        complete = False
        warnings.append(f"status is {status!r}; only a completed or amended response gets a total")
    missing = [item for item in instrument.items if item.loinc not in scores]
    if missing:
        complete = False
        names = ", ".join(f"{item.number} ({item.loinc})" for item in missing)
        verb = "is" if len(missing) == 1 else "are"
        noun = "item" if len(missing) == 1 else "items"
        warnings.append(
            f"{instrument.name} {noun} {names} {verb} not answered; an incomplete response gets no total"
        )

    total = sum(scores[code] for code in instrument.item_codes) if complete else None
    phq2: int | None = None
    if (
        instrument is not GAD7
        and isinstance(status, str)
        and status in SCORED_RESPONSE_STATUSES
        and all(code in scores for code in PHQ2.item_codes)
    ):
        phq2 = sum(scores[code] for code in PHQ2.item_codes)

    expected: dict[str, int | None] = {instrument.total: total}
    if instrument is PHQ9:
        expected[PHQ2.total] = phq2
    for role, value in claims:
        if role.code not in expected:
            continue
        recomputed = expected[role.code]
        what = (
            "items 1 and 2 sum to" if role.code == PHQ2.total and instrument is PHQ9 else "the items sum to"
        )
        if value is None:
            warnings.append(f"total item {role.label} carries no number; it is ignored")
        elif recomputed is None:
            warnings.append(
                f"total item {role.label} says {_show(value)} but the response is incomplete; "
                "no total is recorded"
            )
        elif value != recomputed:
            warnings.append(
                f"total item {role.label} says {_show(value)} but {what} {recomputed}; "
                f"the recomputed {recomputed} is used"
            )

    return ScoredResponse(
        instrument=instrument.name,
        total=total,
        complete=complete,
        item_scores=scores,
        item9=scores.get(PHQ9.safety_item or "") if instrument is PHQ9 else None,
        severity=severity(instrument, total) if total is not None else None,
        warnings=tuple(warnings),
        phq2=phq2,
    )


# --- public: Observation -----------------------------------------------------------------------


def _total_instrument(code: Any) -> Instrument | None:
    if not isinstance(code, Mapping) or not isinstance(code.get("coding"), list):
        return None
    for coding in code["coding"]:
        if not isinstance(coding, Mapping):
            continue
        system, code = coding.get("system"), coding.get("code")
        loinc = system is None or (isinstance(system, str) and system in _LOINC_SYSTEMS)
        if loinc and isinstance(code, str) and code in BY_TOTAL_CODE:
            return BY_TOTAL_CODE[code]
    return None


def _observation_value(resource: Mapping[str, Any], instrument: Instrument) -> int:
    where = "Observation.value[x]"
    name = f"{instrument.name} total score ({instrument.total})"
    present = [k for k in resource if k.startswith("value")]
    if not present:
        raise _violation(f"{name} Observation has no value", where)
    key = present[0]
    value = resource[key]
    score: int | None = None
    if key == "valueQuantity" and isinstance(value, Mapping):
        if value.get("comparator"):
            raise _violation(f"{name} with comparator {value['comparator']!r} is not an exact score", where)
        value = value.get("value")
        score = _whole(value)
    elif key in ("valueInteger", "valueDecimal"):
        score = _whole(value)
    elif key == "valueString" and isinstance(value, str):
        text = value.strip()
        score = int(text) if _DIGITS.fullmatch(text) else None
    else:
        raise _violation(f"{name} is given as {key}; it must be a number", where)
    if score is None:
        raise _violation(f"{name} {value!r} is not a whole number", where)
    if not 0 <= score <= instrument.max_score:
        raise _violation(f"{name} {score} is outside 0-{instrument.max_score}", where)
    return score


def _is_item9(code: Any) -> bool:
    """A CodeableConcept naming PHQ-9 item 9 (LOINC, system absent or LOINC)."""
    codings = code.get("coding") if isinstance(code, Mapping) else None
    return isinstance(codings, list) and any(
        isinstance(c, Mapping)
        and c.get("code") == PHQ9.safety_item
        and (c.get("system") is None or c.get("system") in _LOINC_SYSTEMS)
        for c in codings
    )


def _item9_value(element: Mapping[str, Any], label: str, where: str) -> int | None:
    """The item 9 score carried by ``element`` (an Observation or one of its components): an LL358-3
    answer code, or a whole number 0-3 as valueInteger, valueDecimal, valueQuantity or digits in
    valueString. ``None`` without a value (e.g. dataAbsentReason: not answered); any other value
    raises ``BusinessRuleViolation`` at ``where`` (rejecting beats a silently missed safety item)."""
    present = [k for k in element if k.startswith("value")]
    if not present:
        return None
    key, value = present[0], element[present[0]]
    score: int | None = None
    if key in ("valueInteger", "valueDecimal"):
        score = _whole(value)
    elif key == "valueQuantity" and isinstance(value, Mapping) and not value.get("comparator"):
        score = _whole(value.get("value"))
    elif key == "valueString" and isinstance(value, str) and _DIGITS.fullmatch(value.strip()):
        score = int(value.strip())
    elif key == "valueCodeableConcept" and isinstance(value, Mapping):
        for coding in value.get("coding") or []:
            code = coding.get("code") if isinstance(coding, Mapping) else None
            answer = ANSWERS.get(code) if isinstance(code, str) else None
            if answer is not None:
                score = answer.score
                break
    if score is None or not 0 <= score <= MAX_ITEM_SCORE:
        raise _violation(f"{label} is not an answer code or a score 0-{MAX_ITEM_SCORE}", where)
    return score


def _component_item9(resource: Mapping[str, Any]) -> int | None:
    components = resource.get("component")
    if not isinstance(components, list):
        return None
    for i, component in enumerate(components):
        if isinstance(component, Mapping) and _is_item9(component.get("code")):
            return _item9_value(
                component,
                f"PHQ-9 item 9 ({PHQ9.safety_item}) component",
                f"Observation.component[{i}].value[x]",
            )
    return None


def item9_observation(resource: Mapping[str, Any]) -> int | None:
    """The answer of an item-level PHQ-9 item 9 Observation (code ``44260-8``, status final,
    amended or corrected); ``None`` for any other Observation or one without a value (api.md: "an
    item-level Observation with code 44260-8 (value an answer code or an integer)").

    Raises ``BusinessRuleViolation`` at ``Observation.value[x]`` for a value that is not a score.
    """
    status = resource.get("status")
    if not _is_item9(resource.get("code")) or status not in COUNTED_OBSERVATION_STATUSES:
        return None
    return _item9_value(resource, f"PHQ-9 item 9 ({PHQ9.safety_item})", "Observation.value[x]")


def _derived_from(resource: Mapping[str, Any]) -> str | None:
    references = resource.get("derivedFrom")
    if not isinstance(references, list):
        return None
    for ref in references:
        target = ref.get("reference") if isinstance(ref, Mapping) else None
        match = _QR_REFERENCE.search(target) if isinstance(target, str) else None
        if match:
            return f"QuestionnaireResponse/{match.group(1)}"
    return None


def _effective(resource: Mapping[str, Any]) -> str | None:
    for key in ("effectiveDateTime", "effectiveInstant"):
        if isinstance(resource.get(key), str):
            return str(resource[key])
    period = resource.get("effectivePeriod")
    if isinstance(period, Mapping) and isinstance(period.get("start"), str):
        return str(period["start"])
    issued = resource.get("issued")
    return issued if isinstance(issued, str) else None


def score_observation(resource: Mapping[str, Any]) -> ObservationScore | None:
    """The measurement carried by a total-score Observation, ``None`` when it carries none.

    Raises ``BusinessRuleViolation`` (expression ``Observation.value[x]``) for a counted
    total-score Observation whose value is missing, not a whole number, or out of range.
    """
    instrument = _total_instrument(resource.get("code"))
    status = resource.get("status")
    if instrument is None or not isinstance(status, str) or status not in COUNTED_OBSERVATION_STATUSES:
        return None
    score = _observation_value(resource, instrument)
    return ObservationScore(
        instrument=instrument.name,
        score=score,
        severity=severity(instrument, score),
        derived_from=_derived_from(resource),
        effective=_effective(resource),
        item9=_component_item9(resource) if instrument is PHQ9 else None,
    )


# --- public: the derived Observation -----------------------------------------------------------


def derived_observation(
    resource_id_of_response: str, response: Mapping[str, Any], scored: ScoredResponse
) -> dict[str, Any]:
    """The total-score Observation derived from a scored response (JSON, no ``id``).

    Raises ``ValueError`` when the response has no total (incomplete).
    """
    if scored.total is None:
        raise ValueError("an incomplete response has no total and no derived Observation")
    instrument = INSTRUMENTS[scored.instrument]
    observation: dict[str, Any] = {
        "resourceType": "Observation",
        "status": "final",
        "category": [
            {
                "coding": [{"system": OBSERVATION_CATEGORY_SYSTEM, "code": "survey", "display": "Survey"}],
                "text": "Survey",
            }
        ],
        "code": {
            "coding": [
                {"system": LOINC_SYSTEM, "code": instrument.total, "display": instrument.total_display}
            ],
            "text": f"{instrument.name} total score",
        },
    }
    if isinstance(response.get("subject"), Mapping):
        observation["subject"] = dict(response["subject"])
    if isinstance(response.get("encounter"), Mapping):
        observation["encounter"] = dict(response["encounter"])
    if isinstance(response.get("authored"), str):
        observation["effectiveDateTime"] = response["authored"]
    observation["valueQuantity"] = {
        "value": scored.total,
        "unit": "{score}",
        "system": UCUM,
        "code": "{score}",
    }
    if scored.severity is not None:
        observation["interpretation"] = [
            {
                "coding": [
                    {
                        "system": SEVERITY_SYSTEM,
                        "code": scored.severity.replace(" ", "-"),
                        "display": scored.severity,
                    }
                ],
                "text": f"{scored.severity} ({instrument.name})",
            }
        ]
    observation["derivedFrom"] = [{"reference": f"QuestionnaireResponse/{resource_id_of_response}"}]
    if instrument is PHQ9 and scored.item9 is not None:
        item9 = PHQ9.items[8]
        observation["component"] = [
            {
                "code": {"coding": [{"system": LOINC_SYSTEM, "code": item9.loinc}], "text": item9.text},
                "valueInteger": scored.item9,
            }
        ]
    return observation
