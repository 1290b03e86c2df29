"""Prometheus counters (no web framework): written by the store and the services, served by app.main."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

REQUESTS = Counter("cocm_http_requests_total", "HTTP requests", ["method", "route", "status"])
LATENCY = Histogram(
    "cocm_http_request_duration_seconds",
    "HTTP request latency",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
INGESTED = Counter("cocm_resources_ingested_total", "Resources created or updated", ["type"])
SCORING_WARNINGS = Counter("cocm_scoring_warnings_total", "Scoring warnings returned with a response")
BILLING_RUNS = Counter("cocm_billing_runs_total", "Billing month computations", ["scope"])
