"""FHIR and HTTP primitives shared by every layer, with no I/O and no framework: the neutral package
the edge, the store and the pure cores may all import (architecture: edge -> services -> store ->
cores, with ``app.resources`` beside the cores)."""
