"""The one codec of opaque paging cursors (FHIR searchset ``_cursor``, ``/api/v1`` ``cursor``, the
registry's keyset position): JSON, URL-safe base64 without padding. What a cursor holds and how it
is checked is its owner's business; this module only makes it opaque and reads it back."""

from __future__ import annotations

import base64
import binascii
from typing import Any

import orjson


def encode(value: object) -> str:
    """``value`` (JSON-serialisable) as an opaque, URL-safe cursor."""
    return base64.urlsafe_b64encode(orjson.dumps(value)).decode("ascii").rstrip("=")


def decode(cursor: str) -> Any:
    """The value :func:`encode` put in ``cursor``; ``ValueError`` for anything it did not produce."""
    try:
        raw = cursor.encode("ascii")
        return orjson.loads(base64.b64decode(raw + b"=" * (-len(raw) % 4), altchars=b"-_", validate=True))
    except (binascii.Error, ValueError) as exc:  # UnicodeError and orjson.JSONDecodeError are ValueErrors
        raise ValueError("malformed cursor") from exc
