"""SMART on FHIR Backend Services: client registry, client-assertion checks, access tokens
(``smart``), scopes (``scopes``), the discovery and token routes (``routes``), and the table of
used assertion ids (``models``)."""
