"""The instrument tables against the published codes and bands, severity, and the linkId maps."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from app.domain import Instrument as InstrumentName
from app.measures import instruments as ins
from app.measures.instruments import (
    ANSWERS,
    DIFFICULTY_ANSWERS,
    FALLBACK_MAPS,
    GAD7,
    INSTRUMENTS,
    PHQ2,
    PHQ9,
    QUESTIONNAIRE_MAPS,
    canonical_key,
    linkid_map,
    severity,
)

# The published facts, written out here once (measures.md transcribes the same tables) so that the
# module's tables are checked against an independent copy, not against themselves.
# Sources: Kroenke, Spitzer, Williams 2001 (PHQ-9, J Gen Intern Med 16:606); Spitzer et al. 2006
# (GAD-7, Arch Intern Med 166:1092); LOINC panels 44249-1, 69737-5, 55757-9 and answer list LL358-3
# as used by LHC-Forms (test/data/R4/phq9.json) and the HL7 US Core PHQ-9 example.
PANELS = {  # instrument: (panel, total score, maximum)
    "PHQ-9": ("44249-1", "44261-6", 27),
    "GAD-7": ("69737-5", "70274-6", 21),
    "PHQ-2": ("55757-9", "55758-7", 6),
}
PHQ9_ITEMS = [
    (1, "44250-9"),  # little interest or pleasure
    (2, "44255-8"),  # down, depressed, hopeless
    (3, "44259-0"),  # sleep
    (4, "44254-1"),  # tired, little energy
    (5, "44251-7"),  # appetite
    (6, "44258-2"),  # feeling bad about yourself
    (7, "44252-5"),  # concentration
    (8, "44253-3"),  # moving slowly / restless
    (9, "44260-8"),  # better off dead or self-harm: the safety item
]
PHQ9_DIFFICULTY = (10, "69722-7")  # how difficult (not scored)
GAD7_ITEMS = ["69725-0", "68509-9", "69733-4", "69734-2", "69735-9", "69689-8", "69736-7"]
PHQ2_ITEMS = ["44250-9", "44255-8"]
ANSWER_LIST = [  # LL358-3 (LA18938-3: GAD-7 item 2 in the LHC-Forms GAD-7)
    ("LA6568-5", "Not at all", 0),
    ("LA6569-3", "Several days", 1),
    ("LA6570-1", "More than half the days", 2),
    ("LA18938-3", "More days than not", 2),
    ("LA6571-9", "Nearly every day", 3),
]
DIFFICULTY_ANSWER_CODES = ["LA6572-7", "LA6573-5", "LA6575-0", "LA6574-3"]
BANDS = {
    "PHQ-9": [(0, 4, "minimal"), (5, 9, "mild"), (10, 14, "moderate"), (15, 19, "moderately severe"),
              (20, 27, "severe")],
    "GAD-7": [(0, 4, "minimal"), (5, 9, "mild"), (10, 14, "moderate"), (15, 21, "severe")],
}  # fmt: skip


# --- against the published tables ------------------------------------------------------------------


def test_panels_totals_and_ranges() -> None:
    assert set(PANELS) == set(INSTRUMENTS)
    for name, (panel, total, maximum) in PANELS.items():
        definition = INSTRUMENTS[name]
        assert (definition.panel, definition.total, definition.max_score) == (panel, total, maximum)


def test_phq9_items() -> None:
    assert [(item.number, item.loinc) for item in PHQ9.items] == PHQ9_ITEMS
    assert [(item.number, item.loinc) for item in PHQ9.unscored] == [PHQ9_DIFFICULTY]
    assert PHQ9.safety_item == "44260-8"


def test_gad7_items() -> None:
    assert list(GAD7.item_codes) == GAD7_ITEMS
    assert GAD7.unscored == ()


def test_phq2_items() -> None:
    assert list(PHQ2.item_codes) == PHQ2_ITEMS
    assert PHQ2.items == PHQ9.items[:2]  # the same objects: defined once


def test_answer_list() -> None:
    assert {code: score for code, _, score in ANSWER_LIST} == {a.code: a.score for a in ANSWERS.values()}
    for code, text, _ in ANSWER_LIST:
        assert ANSWERS[code].text.startswith(text)


def test_difficulty_answers() -> None:
    assert list(DIFFICULTY_ANSWERS) == DIFFICULTY_ANSWER_CODES
    assert all(a.score is None for a in DIFFICULTY_ANSWERS.values())
    assert not set(DIFFICULTY_ANSWERS) & set(ANSWERS)


def test_severity_bands() -> None:
    for name, bands in BANDS.items():
        definition = INSTRUMENTS[name]
        assert [(b.low, b.high, b.label) for b in definition.bands] == bands
        # contiguous and covering the whole range
        assert definition.bands[0].low == 0
        assert definition.bands[-1].high == definition.max_score
        for before, after in zip(definition.bands, definition.bands[1:], strict=False):
            assert after.low == before.high + 1
    assert PHQ2.bands == ()


def test_codes_seen_wrong_in_public_code_are_not_used() -> None:
    # measures.md: 69726-8..69731-8 are not GAD-7 items, 70273-8 is the PHQ-15 total (not GAD-2),
    # 55757-9 is the PHQ-2 panel, not its total.
    every_code = {
        code
        for definition in INSTRUMENTS.values()
        for code in (*definition.item_codes, definition.total, *(i.loinc for i in definition.unscored))
    }
    assert not any(69726 <= int(code.split("-")[0]) <= 69731 for code in GAD7.item_codes)
    assert "70273-8" not in every_code
    assert PHQ2.total != "55757-9"
    assert PHQ2.panel == "55757-9"


def test_max_scores() -> None:
    assert (PHQ9.max_score, GAD7.max_score, PHQ2.max_score) == (27, 21, 6)


def test_no_code_is_typed_twice() -> None:
    source = Path(ins.__file__).read_text(encoding="utf-8")
    for definition in INSTRUMENTS.values():
        for item in definition.items + definition.unscored:
            assert len(re.findall(rf'"{re.escape(item.loinc)}"', source)) == 1, item.loinc
    for code in (*ANSWERS, *DIFFICULTY_ANSWERS):
        assert len(re.findall(rf'"{re.escape(code)}"', source)) == 1, code


# --- severity --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("instrument", "score", "expected"),
    [
        ("PHQ-9", 0, "minimal"),
        ("PHQ-9", 4, "minimal"),
        ("PHQ-9", 5, "mild"),
        ("PHQ-9", 9, "mild"),
        ("PHQ-9", 10, "moderate"),
        ("PHQ-9", 14, "moderate"),
        ("PHQ-9", 15, "moderately severe"),
        ("PHQ-9", 19, "moderately severe"),
        ("PHQ-9", 20, "severe"),
        ("PHQ-9", 27, "severe"),
        ("GAD-7", 0, "minimal"),
        ("GAD-7", 4, "minimal"),
        ("GAD-7", 5, "mild"),
        ("GAD-7", 9, "mild"),
        ("GAD-7", 10, "moderate"),
        ("GAD-7", 14, "moderate"),
        ("GAD-7", 15, "severe"),
        ("GAD-7", 21, "severe"),
        ("PHQ-2", 0, None),
        ("PHQ-2", 6, None),
    ],
)
def test_severity_band_boundaries(instrument: InstrumentName, score: int, expected: str | None) -> None:
    assert severity(instrument, score) == expected
    assert severity(INSTRUMENTS[instrument], score) == expected


@pytest.mark.parametrize(("instrument", "score"), [("PHQ-9", 28), ("PHQ-9", -1), ("GAD-7", 22), ("PHQ-2", 7)])
def test_severity_rejects_scores_out_of_range(instrument: InstrumentName, score: int) -> None:
    with pytest.raises(ValueError, match="score must be"):
        severity(instrument, score)


def test_severity_rejects_unknown_instrument() -> None:
    with pytest.raises(ValueError, match="unknown instrument"):
        severity("PHQ-15", 3)  # type: ignore[arg-type]


def test_phq2_screen_cutoff() -> None:
    assert PHQ2.screen_positive_at == 3


# --- linkId maps -----------------------------------------------------------------------------------


def test_access_maps() -> None:
    phq9 = QUESTIONNAIRE_MAPS["http://example.org/Questionnaire/PHQ9Questionnaire"]
    assert phq9.instrument == "PHQ-9"
    assert [phq9.items[f"phq9-{n}"] for n in range(1, 10)] == list(PHQ9.item_codes)
    assert phq9.unscored == {"phq9-10": "69722-7"}
    assert phq9.totals == {"total-score"}
    gad7 = QUESTIONNAIRE_MAPS["http://example.org/Questionnaire/GAD7Questionnaire"]
    assert [gad7.items[f"gad7-{n}"] for n in range(1, 8)] == list(GAD7.item_codes)
    assert gad7.totals == {"total-score"}


def test_mii_maps_accept_every_published_scheme() -> None:
    base = "https://www.medizininformatik-initiative.de/fhir/ext/modul-pro/Questionnaire/"
    phq9 = QUESTIONNAIRE_MAPS[base + "mii-qst-pro-phq-9"]
    for scheme in (
        [f"phq-phq2{c}" for c in "abcdefghi"],
        [f"phq-phq9-q{n:02d}" for n in range(1, 10)],
        [f"PHQ.{n}" for n in range(1, 10)],
        [f"PHQ-9.{n}" for n in range(1, 10)],
    ):
        assert [phq9.items[link] for link in scheme] == list(PHQ9.item_codes)
    assert set(phq9.unscored) == {"phq-phq9-difficulty", "phq-phq9-q10", "PHQ.10"}
    assert phq9.totals == {"phq-phq9-score-total"}
    gad7 = QUESTIONNAIRE_MAPS[base + "mii-qst-pro-gad-7"]
    for scheme in (
        [f"phq-phq5{c}" for c in "abcdefg"],
        [f"phq-gad7-q{n:02d}" for n in range(1, 8)],
        [f"gad7-q{n:02d}" for n in range(1, 8)],
    ):
        assert [gad7.items[link] for link in scheme] == list(GAD7.item_codes)
    assert gad7.totals == {"phq-gad7-score-total"}


def test_fallback_patterns() -> None:
    phq9, gad7 = FALLBACK_MAPS
    assert phq9.instrument == "PHQ-9" and gad7.instrument == "GAD-7"
    for prefix in ("phq9-", "PHQ.", "PHQ-9."):
        assert [phq9.items[f"{prefix}{n}"] for n in range(1, 10)] == list(PHQ9.item_codes)
        assert phq9.unscored[f"{prefix}10"] == "69722-7"
    assert [gad7.items[f"gad7-{n}"] for n in range(1, 8)] == list(GAD7.item_codes)


def test_every_map_points_at_defined_items_only() -> None:
    for linkmap in (*QUESTIONNAIRE_MAPS.values(), *FALLBACK_MAPS):
        definition = INSTRUMENTS[linkmap.instrument]
        assert set(linkmap.items.values()) == set(definition.item_codes)
        assert set(linkmap.unscored.values()) <= {i.loinc for i in definition.unscored}
        assert not linkmap.totals & set(linkmap.items)
        assert linkmap.link_ids >= set(linkmap.items)


def test_linkid_map_rejects_bad_schemes() -> None:
    with pytest.raises(ValueError, match="lists 7 to 7 linkIds"):
        linkid_map("GAD-7", ["a", "b"])
    with pytest.raises(ValueError, match="names two items"):
        linkid_map("PHQ-2", ["a", "b"], ["b", "a"])
    with pytest.raises(ValueError, match="also name items"):
        linkid_map("PHQ-2", ["a", "b"], totals=["a"])


def test_canonical_key_drops_version() -> None:
    assert canonical_key(" http://a/Questionnaire/x|1.2.3 ") == "http://a/Questionnaire/x"
    assert canonical_key("http://a/Questionnaire/x") == "http://a/Questionnaire/x"
