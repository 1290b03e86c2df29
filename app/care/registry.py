"""The registry (caseload): filtering, urgency order and cursor paging (measures.md, last paragraph
of "Care status"; api.md, "Registry").

Urgency order (measures.md: "safety_risk first, then not_improving, then the longest without
contact"), as a total order so that paging is stable:

1. patients flagged ``safety_risk`` before the others;
2. then those flagged ``not_improving``;
3. then the longest without contact: a patient with no counted contact at all (``last_contact``
   ``None``) counts as the longest of all (an enrolled patient nobody has reached is the registry's
   first outreach target, AIMS Center registry practice), then the oldest ``last_contact`` first;
4. ties broken by ``patient_id`` (ascending), so that two patients never compare equal.

Within one registry every status shares one ``as_of``, so "oldest last_contact" is the same as "most
days since contact"; the key uses the date itself, which keeps a cursor meaningful even when the next
page is asked for on another day.

Paging is keyset paging: the cursor is the urgency key of the last item handed out, and the next
page starts at the first item whose key is greater. A patient added or removed between two requests
therefore never shifts the others (no item repeated or skipped because of an offset). The cursor is
opaque to clients: urlsafe base64 (without padding) of ``{"v": 1, "k": [...]}``.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Sequence
from typing import Any, Final, NamedTuple

from app.care.status import FLAGS, STATUSES, CareStatus
from app.resources import cursor as cursor_codec

CURSOR_VERSION: Final = 1


class UrgencyKey(NamedTuple):
    """Sort key: smaller is more urgent. Compares like the plain tuple it is."""

    no_safety_risk: int  # 0 when flagged safety_risk
    no_not_improving: int  # 0 when flagged not_improving
    ever_contacted: int  # 0 when last_contact is None (never contacted sorts first)
    last_contact_ordinal: int  # date.toordinal() of last_contact, 0 when None; older first
    patient_id: str


def urgency_key(status: CareStatus) -> UrgencyKey:
    """The urgency key of one registry row (module docstring)."""
    return UrgencyKey(
        no_safety_risk=0 if status.has_flag("safety_risk") else 1,
        no_not_improving=0 if status.has_flag("not_improving") else 1,
        ever_contacted=0 if status.last_contact is None else 1,
        last_contact_ordinal=0 if status.last_contact is None else status.last_contact.toordinal(),
        patient_id=status.patient_id,
    )


def sort_registry(items: Iterable[CareStatus]) -> list[CareStatus]:
    """Most urgent first; a total order as long as patient ids are unique."""
    return sorted(items, key=urgency_key)


def filter_registry(
    items: Iterable[CareStatus], flag: str | None = None, status: str | None = None
) -> list[CareStatus]:
    """Keep the rows carrying ``flag`` (when given) and having ``status`` (when given), in order.

    Raises ValueError for a flag or status name that measures.md does not define, so that a typo in
    a query answers 400 rather than an empty registry.
    """
    if flag is not None and flag not in FLAGS:
        raise ValueError(f"unknown flag {flag!r}; expected one of {', '.join(FLAGS)}")
    if status is not None and status not in STATUSES:
        raise ValueError(f"unknown status {status!r}; expected one of {', '.join(STATUSES)}")
    return [
        item
        for item in items
        if (flag is None or item.has_flag(flag)) and (status is None or item.status == status)
    ]


def encode_cursor(key: UrgencyKey) -> str:
    """Opaque cursor for the position after ``key``."""
    return cursor_codec.encode({"v": CURSOR_VERSION, "k": list(key)})


def decode_cursor(cursor: str) -> UrgencyKey:
    """Inverse of :func:`encode_cursor`; raises ValueError for anything it did not produce."""
    data: Any = cursor_codec.decode(cursor)
    if not isinstance(data, dict) or data.get("v") != CURSOR_VERSION or set(data) != {"v", "k"}:
        raise ValueError("malformed cursor")
    key = data["k"]
    if not isinstance(key, list) or len(key) != len(UrgencyKey._fields):
        raise ValueError("malformed cursor")
    *numbers, patient_id = key
    if not all(type(n) is int for n in numbers) or not isinstance(patient_id, str):
        raise ValueError("malformed cursor")
    no_safety, no_not_improving, contacted, ordinal = numbers
    if (
        no_safety not in (0, 1)
        or no_not_improving not in (0, 1)
        or contacted not in (0, 1)
        or ordinal < 0
        or (contacted == 0) != (ordinal == 0)
    ):
        raise ValueError("malformed cursor")
    return UrgencyKey(no_safety, no_not_improving, contacted, ordinal, patient_id)


def page(
    items_sorted: Sequence[CareStatus],
    cursor: str | None,
    limit: int,
    keys: Sequence[UrgencyKey] | None = None,
) -> tuple[list[CareStatus], str | None]:
    """One page of a registry sorted by :func:`sort_registry` (``keys``: their urgency keys, when
    already computed).

    Returns the items after the cursor's position (the start without a cursor), at most ``limit``,
    and the cursor of the next page, ``None`` on the last page. Raises ValueError for a malformed
    cursor or a ``limit`` below 1.
    """
    if limit < 1:
        raise ValueError("limit must be at least 1")
    keys = keys if keys is not None else [urgency_key(item) for item in items_sorted]
    start = 0 if cursor is None else bisect_right(keys, decode_cursor(cursor))
    end = min(start + limit, len(items_sorted))
    next_cursor = encode_cursor(keys[end - 1]) if end < len(items_sorted) else None
    return list(items_sorted[start:end]), next_cursor


def registry_page(
    items: Iterable[CareStatus],
    *,
    flag: str | None = None,
    status: str | None = None,
    cursor: str | None = None,
    limit: int = 100,
) -> tuple[list[CareStatus], str | None]:
    """Filter, sort and page in one call (api.md, ``GET /api/v1/registry``)."""
    return SortedRegistry(items).page(flag=flag, status=status, cursor=cursor, limit=limit)


class SortedRegistry:
    """A caseload sorted once, with its keys, to be paged many times (a cached registry): a page
    costs a bisection, plus one pass when filtered (filtering keeps the order)."""

    def __init__(self, items: Iterable[CareStatus]) -> None:
        self.items = sort_registry(items)
        self.keys = [urgency_key(item) for item in self.items]

    def page(
        self,
        *,
        flag: str | None = None,
        status: str | None = None,
        cursor: str | None = None,
        limit: int = 100,
    ) -> tuple[list[CareStatus], str | None]:
        if flag is None and status is None:
            return page(self.items, cursor, limit, self.keys)
        kept = filter_registry(self.items, flag=flag, status=status)
        return page(kept, cursor, limit)
