"""The instrument tables as data: PHQ-9, GAD-7 and PHQ-2 (LOINC), their answer list and severity bands.

Everything here is transcribed once from ``shared/spec/measures.md`` (itself from Kroenke, Spitzer,
Williams 2001 for the PHQ-9; Spitzer et al. 2006 for the GAD-7; Kroenke, Spitzer, Williams 2003 for the
PHQ-2) and checked against that page by ``tests/measures/test_instruments.py``. Every other table in
this module (the questionnaire linkId maps) refers to the items defined here by position, so no LOINC
code is typed twice.

Choices made here:

- **PHQ-2 severity**: the PHQ-2 is a screen, not a severity measure, so it has *no* severity bands and
  ``severity("PHQ-2", n)`` is ``None``. Its screening cut-off (a score of 3 or more is a positive
  screen, Kroenke 2003) is kept as ``Instrument.screen_positive_at`` for whoever wants it.
- ``severity()`` raises ``ValueError`` for a score outside the instrument's range: scores are range
  checked when they enter the service, so an out-of-range score here is a programming error.
- **Questionnaires with their own linkIds** are described by :class:`LinkIdMap` values: for a
  ``QuestionnaireResponse.questionnaire`` canonical (compared without a ``|version`` suffix) the
  instrument, which linkId is which item, the total-score linkIds (read only to cross-check) and the
  unscored linkIds (the PHQ-9 difficulty item). Shipped maps (``QUESTIONNAIRE_MAPS``):

  * CMS ACCESS Model IG (DSACMS/cmmi-access-model, version 0.9.8):
    ``http://example.org/Questionnaire/PHQ9Questionnaire`` (``phq9-1``..``phq9-9``, ``phq9-10``
    difficulty, ``total-score``) and ``http://example.org/Questionnaire/GAD7Questionnaire``
    (``gad7-1``..``gad7-7``, ``total-score``). These ``example.org`` canonicals are the ones the IG
    publishes (``Questionnaire-PHQ9QuestionnaireExample.json``,
    ``Questionnaire-GAD7QuestionnaireExample.json``).
  * MII PRO IG (medizininformatik-initiative/kerndatensatzmodul-proms):
    ``https://www.medizininformatik-initiative.de/fhir/ext/modul-pro/Questionnaire/mii-qst-pro-phq-9``
    and ``.../mii-qst-pro-gad-7``. The IG renamed its linkIds between releases, so each map accepts
    every published scheme: PHQ-9 ``phq-phq2a``..``phq-phq2i`` + ``phq-phq9-difficulty`` (2026.5.0 on),
    ``phq-phq9-q01``..``q10`` (2026.4.x, see its ConceptMap ``mii-cm-pro-phq-9-linkid-migration``),
    ``PHQ-9.1``..``PHQ-9.9`` (early drafts) and ``PHQ.1``..``PHQ.10`` (its example response), total
    ``phq-phq9-score-total``; GAD-7 ``phq-phq5a``..``phq-phq5g``, ``phq-gad7-q01``..``q07`` and
    ``gad7-q01``..``q07`` (ConceptMap ``mii-cm-pro-gad-7-linkids``), total ``phq-gad7-score-total``.

  ``FALLBACK_MAPS`` are used when the canonical is not mapped and the linkIds are not LOINC codes:
  ``phq9-1``..``phq9-9`` (+ ``phq9-10``), ``PHQ.1``..``PHQ.9`` (+ ``PHQ.10``), ``PHQ-9.1``..``PHQ-9.9``
  and ``gad7-1``..``gad7-7``. A linkId such as ``g1.q1`` names no instrument by itself and is only
  understood through a canonical map. More maps are built with :func:`linkid_map` and passed to the
  scorer; nothing here is global mutable state.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from types import MappingProxyType
from typing import Final

from app.domain import Instrument as InstrumentName

LOINC_SYSTEM: Final = "http://loinc.org"
LOINC_OID: Final = "urn:oid:2.16.840.1.113883.6.1"
INSTRUMENT_NAMES: Final[tuple[InstrumentName, ...]] = ("PHQ-9", "GAD-7", "PHQ-2")

# Weight extensions seen on answer codings (measures.md): a cross-check only, the LA code wins.
ORDINAL_VALUE_URL: Final = "http://hl7.org/fhir/StructureDefinition/ordinalValue"
ITEM_WEIGHT_URL: Final = "http://hl7.org/fhir/StructureDefinition/itemWeight"
CO_VALUE_URL: Final = "http://hl7.org/fhir/StructureDefinition/iso21090-CO-value"
WEIGHT_EXTENSION_URLS: Final = (ORDINAL_VALUE_URL, ITEM_WEIGHT_URL, CO_VALUE_URL)


@dataclass(frozen=True)
class Item:
    """One question of an instrument: its 1-based position, LOINC code and short text."""

    number: int
    loinc: str
    text: str


@dataclass(frozen=True)
class Answer:
    """One LOINC answer (LA code). ``score`` is ``None`` for the unscored difficulty answers."""

    code: str
    text: str
    score: int | None


@dataclass(frozen=True)
class Band:
    """A severity band, inclusive at both ends."""

    low: int
    high: int
    label: str


@dataclass(frozen=True)
class Instrument:
    name: InstrumentName
    panel: str
    panel_display: str
    total: str
    total_display: str
    items: tuple[Item, ...]  # scored, in order
    unscored: tuple[Item, ...] = ()  # asked but never summed (PHQ-9 item 10)
    bands: tuple[Band, ...] = ()
    safety_item: str | None = None  # PHQ-9 item 9
    screen_positive_at: int | None = None  # PHQ-2 screening cut-off

    @property
    def max_score(self) -> int:
        return MAX_ITEM_SCORE * len(self.items)

    @cached_property
    def item_codes(self) -> tuple[str, ...]:
        return tuple(item.loinc for item in self.items)

    @cached_property
    def unscored_codes(self) -> frozenset[str]:
        return frozenset(item.loinc for item in self.unscored)

    @cached_property
    def item_labels(self) -> Mapping[str, str]:
        """Item LOINC -> how warnings name the item, e.g. "PHQ-9 item 9 (44260-8)"."""
        return {item.loinc: f"{self.name} item {item.number} ({item.loinc})" for item in self.items}


# Answer list LL358-3 (measures.md "Answers"); LA18938-3 appears in the LHC-Forms GAD-7 item 2.
ANSWERS: Final[Mapping[str, Answer]] = MappingProxyType(
    {
        a.code: a
        for a in (
            Answer("LA6568-5", "Not at all", 0),
            Answer("LA6569-3", "Several days", 1),
            Answer("LA6570-1", "More than half the days", 2),
            Answer("LA18938-3", "More days than not", 2),
            Answer("LA6571-9", "Nearly every day", 3),
        )
    }
)
MAX_ITEM_SCORE: Final = 3

# PHQ-9 item 10 answers (LL359-3 in LOINC), never scored (measures.md).
DIFFICULTY_ANSWERS: Final[Mapping[str, Answer]] = MappingProxyType(
    {
        a.code: a
        for a in (
            Answer("LA6572-7", "Not difficult at all", None),
            Answer("LA6573-5", "Somewhat difficult", None),
            Answer("LA6575-0", "Very difficult", None),
            Answer("LA6574-3", "Extremely difficult", None),
        )
    }
)

_PHQ9_ITEMS: Final = (
    Item(1, "44250-9", "little interest or pleasure"),
    Item(2, "44255-8", "down, depressed, hopeless"),
    Item(3, "44259-0", "sleep"),
    Item(4, "44254-1", "tired, little energy"),
    Item(5, "44251-7", "appetite"),
    Item(6, "44258-2", "feeling bad about yourself"),
    Item(7, "44252-5", "concentration"),
    Item(8, "44253-3", "moving slowly / restless"),
    Item(9, "44260-8", "thoughts of being better off dead or self-harm (safety item)"),
)

PHQ9: Final = Instrument(
    name="PHQ-9",
    panel="44249-1",
    panel_display="PHQ-9 quick depression assessment panel [Reported.PHQ]",
    total="44261-6",
    total_display="Patient Health Questionnaire 9 item (PHQ-9) total score [Reported]",
    items=_PHQ9_ITEMS,
    unscored=(Item(10, "69722-7", "how difficult (not scored)"),),
    # Kroenke 2001: 5, 10, 15, 20 are the cut points for mild, moderate, moderately severe, severe.
    bands=(
        Band(0, 4, "minimal"),
        Band(5, 9, "mild"),
        Band(10, 14, "moderate"),
        Band(15, 19, "moderately severe"),
        Band(20, 27, "severe"),
    ),
    safety_item=_PHQ9_ITEMS[8].loinc,
)

GAD7: Final = Instrument(
    name="GAD-7",
    panel="69737-5",
    panel_display="Generalized anxiety disorder 7 item (GAD-7)",
    total="70274-6",
    total_display="Generalized anxiety disorder 7 item (GAD-7) total score [Reported.PHQ]",
    items=(
        Item(1, "69725-0", "feeling nervous, anxious or on edge"),
        Item(2, "68509-9", "not being able to stop or control worrying"),
        Item(3, "69733-4", "worrying too much about different things"),
        Item(4, "69734-2", "trouble relaxing"),
        Item(5, "69735-9", "so restless that it is hard to sit still"),
        Item(6, "69689-8", "easily annoyed or irritable"),
        Item(7, "69736-7", "afraid as if something awful might happen"),
    ),
    # Spitzer 2006: 5, 10, 15 are the cut points for mild, moderate, severe anxiety.
    bands=(
        Band(0, 4, "minimal"),
        Band(5, 9, "mild"),
        Band(10, 14, "moderate"),
        Band(15, 21, "severe"),
    ),
)

PHQ2: Final = Instrument(
    name="PHQ-2",
    panel="55757-9",
    panel_display="Patient Health Questionnaire 2 item (PHQ-2) [Reported]",
    total="55758-7",
    total_display="Patient Health Questionnaire 2 item (PHQ-2) total score [Reported]",
    items=_PHQ9_ITEMS[:2],  # the first two PHQ-9 items (measures.md)
    screen_positive_at=3,  # Kroenke, Spitzer, Williams 2003 (Med Care 41:1284); no severity bands
)

INSTRUMENTS: Final[Mapping[InstrumentName, Instrument]] = MappingProxyType(
    {i.name: i for i in (PHQ9, GAD7, PHQ2)}
)
BY_TOTAL_CODE: Final[Mapping[str, Instrument]] = MappingProxyType({i.total: i for i in INSTRUMENTS.values()})
BY_PANEL_CODE: Final[Mapping[str, Instrument]] = MappingProxyType({i.panel: i for i in INSTRUMENTS.values()})


def severity(instrument: InstrumentName | Instrument, score: int) -> str | None:
    """The severity band of a total score (measures.md), ``None`` for the PHQ-2 (no bands).

    Raises ``ValueError`` for an unknown instrument or a score outside ``0..max_score``.
    """
    definition = instrument if isinstance(instrument, Instrument) else INSTRUMENTS.get(instrument)
    if definition is None:
        raise ValueError(f"unknown instrument {instrument!r}")
    if isinstance(score, bool) or not 0 <= score <= definition.max_score:
        raise ValueError(f"{definition.name} score must be 0-{definition.max_score}, got {score!r}")
    for band in definition.bands:
        if band.low <= score <= band.high:
            return band.label
    return None


# --- questionnaires with their own linkIds ---------------------------------------------------------


@dataclass(frozen=True)
class LinkIdMap:
    """How one questionnaire's linkIds map onto an instrument.

    ``items``: linkId -> scored item LOINC; ``unscored``: linkId -> unscored item LOINC (difficulty);
    ``totals``: linkIds of total-score items (never trusted, only cross-checked); ``source``: where
    the map comes from, for people reading it.
    """

    instrument: InstrumentName
    items: Mapping[str, str]
    totals: frozenset[str] = frozenset()
    unscored: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    source: str = ""

    @cached_property
    def item_link_ids(self) -> frozenset[str]:
        """The linkIds of its items, scored or not."""
        return frozenset(self.items) | frozenset(self.unscored)

    @property
    def link_ids(self) -> frozenset[str]:
        return self.item_link_ids | self.totals


def linkid_map(
    instrument: InstrumentName,
    *schemes: Sequence[str],
    totals: Sequence[str] = (),
    source: str = "",
) -> LinkIdMap:
    """Build a map from one or more linkId schemes, each listing the linkIds in item order.

    A scheme names item 1, item 2, ... of the instrument; for the PHQ-9 a tenth linkId names the
    unscored difficulty item. Several schemes may be given when a questionnaire renamed its linkIds
    between versions; a linkId may not name two different items.
    """
    definition = INSTRUMENTS[instrument]
    ordered = definition.items + definition.unscored
    items: dict[str, str] = {}
    unscored: dict[str, str] = {}
    for scheme in schemes:
        if not len(definition.items) <= len(scheme) <= len(ordered):
            raise ValueError(
                f"a {instrument} linkId scheme lists {len(definition.items)} "
                f"to {len(ordered)} linkIds, got {len(scheme)}"
            )
        for link_id, item in zip(scheme, ordered, strict=False):
            target = items if item in definition.items else unscored
            known = items.get(link_id, unscored.get(link_id))
            if known is not None and known != item.loinc:
                raise ValueError(f"linkId {link_id!r} names two items ({known} and {item.loinc})")
            target[link_id] = item.loinc
    overlap = set(totals) & (set(items) | set(unscored))
    if overlap:
        raise ValueError(f"total linkIds {sorted(overlap)} also name items")
    return LinkIdMap(
        instrument=instrument,
        items=MappingProxyType(items),
        totals=frozenset(totals),
        unscored=MappingProxyType(unscored),
        source=source,
    )


def canonical_key(canonical: str) -> str:
    """A canonical as compared by the maps: without a ``|version`` suffix or surrounding blanks."""
    return canonical.split("|", 1)[0].strip()


def _numbered(prefix: str, count: int, *, width: int = 1, first: int = 1) -> list[str]:
    return [f"{prefix}{n:0{width}d}" for n in range(first, first + count)]


_LETTERS: Final = "abcdefghi"

# CMS ACCESS Model IG 0.9.8 (DSACMS/cmmi-access-model): Questionnaire-PHQ9QuestionnaireExample.json,
# Questionnaire-GAD7QuestionnaireExample.json.
ACCESS_PHQ9_CANONICAL: Final = "http://example.org/Questionnaire/PHQ9Questionnaire"
ACCESS_GAD7_CANONICAL: Final = "http://example.org/Questionnaire/GAD7Questionnaire"
# MII PRO IG (medizininformatik-initiative/kerndatensatzmodul-proms), aliases.fsh.
MII_PHQ9_CANONICAL: Final = (
    "https://www.medizininformatik-initiative.de/fhir/ext/modul-pro/Questionnaire/mii-qst-pro-phq-9"
)
MII_GAD7_CANONICAL: Final = (
    "https://www.medizininformatik-initiative.de/fhir/ext/modul-pro/Questionnaire/mii-qst-pro-gad-7"
)

QUESTIONNAIRE_MAPS: Final[Mapping[str, LinkIdMap]] = MappingProxyType(
    {
        ACCESS_PHQ9_CANONICAL: linkid_map(
            "PHQ-9", _numbered("phq9-", 10), totals=["total-score"], source="CMS ACCESS Model IG PHQ-9"
        ),
        ACCESS_GAD7_CANONICAL: linkid_map(
            "GAD-7", _numbered("gad7-", 7), totals=["total-score"], source="CMS ACCESS Model IG GAD-7"
        ),
        MII_PHQ9_CANONICAL: linkid_map(
            "PHQ-9",
            [*(f"phq-phq2{c}" for c in _LETTERS), "phq-phq9-difficulty"],  # 2026.5.0 on
            _numbered("phq-phq9-q", 10, width=2),  # 2026.4.x
            _numbered("PHQ-9.", 9),  # early drafts
            _numbered("PHQ.", 10),  # the IG's example response
            totals=["phq-phq9-score-total"],
            source="MII PRO IG PHQ-9",
        ),
        MII_GAD7_CANONICAL: linkid_map(
            "GAD-7",
            [f"phq-phq5{c}" for c in _LETTERS[:7]],
            _numbered("phq-gad7-q", 7, width=2),
            _numbered("gad7-q", 7, width=2),
            totals=["phq-gad7-score-total"],
            source="MII PRO IG GAD-7",
        ),
    }
)

# Used when the canonical is not mapped and the linkIds are not LOINC codes (measures.md: phq9-1..,
# PHQ.1..PHQ.10). Generic totals are only read when an instrument was recognised from its items.
FALLBACK_MAPS: Final[tuple[LinkIdMap, ...]] = (
    linkid_map(
        "PHQ-9",
        _numbered("phq9-", 10),
        _numbered("PHQ.", 10),
        _numbered("PHQ-9.", 10),
        totals=["total-score", "phq9-total", "PHQ.total", "PHQ-9.total"],
        source="linkId pattern phq9-N / PHQ.N / PHQ-9.N",
    ),
    linkid_map(
        "GAD-7",
        _numbered("gad7-", 7),
        totals=["total-score", "gad7-total"],
        source="linkId pattern gad7-N",
    ),
)
