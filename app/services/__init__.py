"""Use cases: scopes checks, audit writes and the unit of work, between the edge and the store."""
