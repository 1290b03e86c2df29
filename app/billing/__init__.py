"""Pure billing core (billing.md): facts in, ``BillingMonth`` out; no I/O, no FHIR models.

- ``codes``: code systems and code lists (initiating visits, APCM base codes, separately billed codes).
- ``facts``: FHIR R4 dicts -> ``TimeEntry``, ``VisitFact``, ``ConsentFact``, ``EpisodeOfCareFact``.
- ``episodes``: what counts, and episodes (initial and subsequent months).
- ``rules``: rule sets as data by setting and date of service; minutes -> codes and units.
- ``engine``: ``bill_month`` for one patient-month: codes, blockers, notes.
"""
