"""Use cases: scope checks, audit and the unit of work, between the edge and the store (persistence)."""
