"""New resource and audit ids: UUIDv7 (RFC 9562, section 5.7), ordered by creation time.

A random id (UUIDv4) lands each new row at a random place in every index keyed by it, so each
write dirties pages of its own; ids that sort by creation time append to the same few pages. On
SQLite a group commit of eight PHQ-9 POSTs wrote 1.2 MB (WAL and checkpoint) with v4 ids and
0.5 MB with these (benchmarks/RESULTS.md, "Analysis"); PostgreSQL's B-trees gain the same
locality. 74 random bits per id keep ids unguessable. The first 48 bits are the creation time in
milliseconds, so an id tells when its resource (or audit event) was created, as its first
version's ``meta.lastUpdated`` does; ids are ordered by it to the millisecond, not within one.
"""

from __future__ import annotations

import os
import time
import uuid

_RAND_A_SHIFT = 68  # of 80 random bits: the top 12 are rand_a, the low 62 rand_b
_RAND_B = (1 << 62) - 1


def new_uuid() -> uuid.UUID:
    millis = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (millis << 80) | (0x7 << 76) | ((rand >> _RAND_A_SHIFT) << 64) | (0b10 << 62) | (rand & _RAND_B)
    return uuid.UUID(int=value)


def new_id() -> str:
    """A resource id: the canonical UUID text (36 characters, a valid FHIR id)."""
    return str(new_uuid())
