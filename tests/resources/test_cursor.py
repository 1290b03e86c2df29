"""The one cursor codec: whatever JSON goes in comes back; what it did not make is a ValueError."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.resources import cursor

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


@given(JSON)
def test_round_trip(value: object) -> None:
    text = cursor.encode(value)
    assert cursor.decode(text) == value
    assert "=" not in text and "+" not in text and "/" not in text  # URL-safe, no padding


# not JSON, not base64, not ASCII, a lone character, a cut-off object
@pytest.mark.parametrize("garbage", ["", "!!!", "bm90IGpzb24", "é", "a", "eyJvIjo=="])
def test_what_it_did_not_make_is_a_value_error(garbage: str) -> None:
    with pytest.raises(ValueError, match="malformed cursor"):
        cursor.decode(garbage)
