"""FHIR primitives shared by every layer, with no I/O and no framework: validation and required
bindings, OperationOutcome shapes, the cursor codec. The edge, the services, the store and the pure
cores may all import it; it imports none of them (``make lint``'s import contracts)."""
