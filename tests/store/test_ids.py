"""New ids are UUIDv7 (RFC 9562 section 5.7): valid FHIR ids, unique, ordered by creation time."""

from __future__ import annotations

import re
import time
import uuid

from hypothesis import given, settings
from hypothesis import strategies as st

from app.store.ids import new_id, new_uuid

FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")


def test_version_variant_and_fhir_id_shape() -> None:
    made = new_uuid()
    assert made.version == 7
    assert made.variant == uuid.RFC_4122
    text = new_id()
    assert FHIR_ID.fullmatch(text) and uuid.UUID(text).version == 7


def test_the_first_48_bits_are_the_creation_time_in_milliseconds() -> None:
    before = time.time_ns() // 1_000_000
    made = new_uuid()
    after = time.time_ns() // 1_000_000
    assert before <= made.int >> 80 <= after


def test_ids_of_later_milliseconds_sort_after_and_none_repeat() -> None:
    first = new_id()
    time.sleep(0.002)
    batch = [new_id() for _ in range(5000)]
    assert all(first < later for later in batch)  # the canonical text sorts as the number does
    assert len(set(batch)) == len(batch)


@settings(max_examples=50)
@given(st.integers(min_value=1, max_value=30))
def test_random_bits_differ_within_one_millisecond(count: int) -> None:
    made = [new_uuid() for _ in range(count)]
    assert len({m.int & ((1 << 74) - 1) for m in made}) == count
