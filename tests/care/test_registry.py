"""Registry order, filters and cursor paging (measures.md, "Care status", last paragraph)."""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import random
from datetime import date, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.care.registry import (
    SortedRegistry,
    UrgencyKey,
    decode_cursor,
    encode_cursor,
    filter_registry,
    page,
    registry_page,
    sort_registry,
    urgency_key,
)
from app.care.status import FLAGS, STATUSES, CareStatus, Flag, Status

AS_OF = date(2026, 3, 31)


def row(
    patient_id: str,
    *flags: Flag,
    last_contact: date | None = None,
    status: Status = "active",
) -> CareStatus:
    return CareStatus(
        patient_id=patient_id,
        as_of=AS_OF,
        status=status,
        episode_start=None if status == "not_enrolled" else date(2026, 1, 5),
        weeks_in_treatment=None if status == "not_enrolled" else 12,
        last_contact=last_contact,
        phq9=None,
        gad7=None,
        flags=tuple(f for f in FLAGS if f in flags),
    )


def ids(items: list[CareStatus]) -> list[str]:
    return [item.patient_id for item in items]


# --- order -----------------------------------------------------------------------------------------


def test_urgency_order() -> None:
    items = [
        row("recent", last_contact=date(2026, 3, 30)),
        row("old", last_contact=date(2026, 1, 10)),
        row("never"),
        row("stuck", "not_improving", last_contact=date(2026, 3, 30)),
        row("stuck-old", "not_improving", "case_review_due", last_contact=date(2026, 2, 1)),
        row("risk-recent", "safety_risk", last_contact=date(2026, 3, 30)),
        row("risk-stuck", "safety_risk", "not_improving", last_contact=date(2026, 3, 30)),
        row("b-tie", last_contact=date(2026, 2, 2)),
        row("a-tie", last_contact=date(2026, 2, 2)),
    ]
    random.Random(7).shuffle(items)
    assert ids(sort_registry(items)) == [
        "risk-stuck",
        "risk-recent",
        "stuck-old",
        "stuck",
        "never",  # no contact at all counts as the longest without contact
        "old",
        "a-tie",  # equal last contact: patient_id
        "b-tie",
        "recent",
    ]


def test_other_flags_do_not_change_the_order() -> None:
    a = row("a", last_contact=date(2026, 3, 1))
    b = row("b", "measurement_overdue", "no_recent_contact", "case_review_due", last_contact=date(2026, 3, 1))
    assert ids(sort_registry([b, a])) == ["a", "b"]


def test_urgency_key_shape() -> None:
    assert urgency_key(row("p", "safety_risk")) == UrgencyKey(0, 1, 0, 0, "p")
    contact = date(2026, 3, 2)
    assert urgency_key(row("p", last_contact=contact)) == (1, 1, 1, contact.toordinal(), "p")


# --- filters ---------------------------------------------------------------------------------------


def test_filter_by_flag_and_status() -> None:
    items = [
        row("a", "safety_risk", status="discharged"),
        row("b", "safety_risk", "case_review_due"),
        row("c", "case_review_due", status="relapse_prevention"),
        row("d", status="not_enrolled"),
    ]
    assert ids(filter_registry(items)) == ["a", "b", "c", "d"]
    assert ids(filter_registry(items, flag="safety_risk")) == ["a", "b"]
    assert ids(filter_registry(items, status="active")) == ["b"]
    assert ids(filter_registry(items, flag="case_review_due", status="relapse_prevention")) == ["c"]
    assert filter_registry(items, flag="not_improving") == []


@pytest.mark.parametrize(("flag", "status"), [("Safety_Risk", None), (None, "enrolled"), ("", None)])
def test_unknown_filter_names_are_value_errors(flag: str | None, status: str | None) -> None:
    with pytest.raises(ValueError, match="unknown"):
        filter_registry([row("a")], flag=flag, status=status)


# --- cursor ----------------------------------------------------------------------------------------


def test_cursor_round_trip_and_is_url_safe() -> None:
    key = urgency_key(row("Patient ä/+?=", last_contact=date(2026, 2, 3)))
    cursor = encode_cursor(key)
    assert set(cursor) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert decode_cursor(cursor) == key


def _b64(data: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "garbage",
    [
        "",
        "!!!",
        "abc",
        "é",
        "a" * 5,
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),
        _b64("not a dict"),
        _b64({"v": 1}),
        _b64({"v": 2, "k": [1, 1, 0, 0, "p"]}),
        _b64({"v": 1, "k": [1, 1, 0, 0, "p"], "x": 1}),
        _b64({"v": 1, "k": [1, 1, 0, 0]}),
        _b64({"v": 1, "k": [1, 1, 0, 0, 5]}),
        _b64({"v": 1, "k": [True, 1, 0, 0, "p"]}),
        _b64({"v": 1, "k": [1.0, 1, 0, 0, "p"]}),
        _b64({"v": 1, "k": [2, 1, 0, 0, "p"]}),
        _b64({"v": 1, "k": [1, 1, 1, -3, "p"]}),
        _b64({"v": 1, "k": [1, 1, 0, 700000, "p"]}),
        _b64({"v": 1, "k": [1, 1, 1, 0, "p"]}),
        _b64({"v": 1, "k": "11100p"}),
    ],
)
def test_decode_cursor_rejects_garbage(garbage: str) -> None:
    with pytest.raises(ValueError, match="malformed cursor"):
        decode_cursor(garbage)


@given(st.text(max_size=40))
def test_decode_cursor_raises_only_value_error(text: str) -> None:
    with contextlib.suppress(ValueError):
        decode_cursor(text)


# --- paging ----------------------------------------------------------------------------------------


def test_paging_example() -> None:
    items = sort_registry(row(f"p{i}", last_contact=date(2026, 3, i + 1)) for i in range(5))
    first, cursor = page(items, None, 2)
    assert ids(first) == ["p0", "p1"]
    assert cursor is not None
    second, cursor = page(items, cursor, 2)
    assert ids(second) == ["p2", "p3"]
    assert cursor is not None
    third, cursor = page(items, cursor, 2)
    assert (ids(third), cursor) == (["p4"], None)


def test_exact_last_page_has_no_next_cursor() -> None:
    items = sort_registry([row("a"), row("b")])
    assert page(items, None, 2) == (items, None)
    assert page([], None, 10) == ([], None)


def test_keyset_paging_survives_changes_between_requests() -> None:
    items = sort_registry(row(f"p{i}", last_contact=date(2026, 3, i + 1)) for i in range(6))
    first, cursor = page(items, None, 3)
    # p1 (already shown) is removed and a less urgent patient appears before the next request:
    # nothing is skipped or repeated.
    changed = sort_registry([*(x for x in items if x.patient_id != "p1"), row("z", last_contact=AS_OF)])
    second, cursor = page(changed, cursor, 10)
    assert ids(first) == ["p0", "p1", "p2"]
    assert (ids(second), cursor) == (["p3", "p4", "p5", "z"], None)


def test_limit_must_be_positive() -> None:
    with pytest.raises(ValueError, match="limit"):
        page([row("a")], None, 0)


def test_registry_page_filters_sorts_and_pages() -> None:
    items = [
        row("c", "case_review_due", last_contact=date(2026, 3, 1)),
        row("b", "safety_risk", "case_review_due", last_contact=date(2026, 3, 20)),
        row("a", last_contact=date(2026, 1, 1)),
    ]
    first, cursor = registry_page(items, flag="case_review_due", limit=1)
    assert ids(first) == ["b"]
    rest, cursor = registry_page(items, flag="case_review_due", cursor=cursor, limit=1)
    assert (ids(rest), cursor) == (["c"], None)


# --- properties ------------------------------------------------------------------------------------

FLAG_SETS = st.sets(st.sampled_from(FLAGS))
CONTACTS = st.none() | st.integers(min_value=0, max_value=120).map(lambda n: AS_OF - timedelta(days=n))


@st.composite
def registries(draw: st.DrawFn) -> list[CareStatus]:
    patient_ids = draw(st.lists(st.text(min_size=1, max_size=4), unique=True, max_size=25))
    return [
        row(
            pid,
            *draw(FLAG_SETS),
            last_contact=draw(CONTACTS),
            status=draw(st.sampled_from(STATUSES)),
        )
        for pid in patient_ids
    ]


@settings(max_examples=200)
@given(registries(), st.randoms(use_true_random=False))
def test_sort_is_a_total_order_and_a_permutation(items: list[CareStatus], rnd: random.Random) -> None:
    ordered = sort_registry(items)
    assert sorted(ids(ordered)) == sorted(ids(items))  # a permutation
    shuffled = list(items)
    rnd.shuffle(shuffled)
    assert sort_registry(shuffled) == ordered  # independent of input order
    keys = [urgency_key(x) for x in ordered]
    assert all(a < b for a, b in itertools.pairwise(keys))  # strict: no two rows equal
    # measures.md: safety_risk first, then not_improving.
    risk = [x.has_flag("safety_risk") for x in ordered]
    assert risk == sorted(risk, reverse=True)
    for group in (True, False):
        stuck = [x.has_flag("not_improving") for x in ordered if x.has_flag("safety_risk") is group]
        assert stuck == sorted(stuck, reverse=True)


@settings(max_examples=200)
@given(registries(), st.integers(min_value=1, max_value=30))
def test_paging_yields_every_item_once_in_order(items: list[CareStatus], limit: int) -> None:
    ordered = sort_registry(items)
    seen: list[CareStatus] = []
    cursor: str | None = None
    for _ in range(len(items) + 2):
        chunk, cursor = page(ordered, cursor, limit)
        assert len(chunk) <= limit
        seen.extend(chunk)
        if cursor is None:
            break
        assert chunk  # a next cursor never follows an empty page
    assert cursor is None
    assert seen == ordered


@settings(max_examples=200)
@given(registries(), st.sampled_from([None, *FLAGS]), st.sampled_from([None, *STATUSES]))
def test_filter_keeps_exactly_the_matching_rows(
    items: list[CareStatus], flag: str | None, status: str | None
) -> None:
    kept = filter_registry(items, flag=flag, status=status)
    for item in items:
        matches = (flag is None or flag in item.flags) and (status is None or item.status == status)
        assert (item in kept) is matches


@settings(max_examples=200)
@given(
    registries(),
    st.sampled_from([None, *FLAGS]),
    st.sampled_from([None, *STATUSES]),
    st.integers(min_value=1, max_value=30),
)
def test_a_sorted_registry_pages_like_filter_sort_page(
    items: list[CareStatus], flag: str | None, status: str | None, limit: int
) -> None:
    """The cached SortedRegistry (sorted once, keys kept) answers every page exactly as filtering,
    sorting and paging from scratch would."""
    caseload = SortedRegistry(reversed(items))
    expected = sort_registry(filter_registry(items, flag=flag, status=status))
    cursor: str | None = None
    for _ in range(len(items) + 2):
        got = caseload.page(flag=flag, status=status, cursor=cursor, limit=limit)
        assert got == page(expected, cursor, limit)
        cursor = got[1]
        if cursor is None:
            break
    assert cursor is None
