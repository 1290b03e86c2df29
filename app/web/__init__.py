"""Server-rendered pages for care managers: the registry (caseload) and the month's billing rows."""
