"""The CapabilityStatement: generated from the same tables the routes and the search use, so it
lists exactly what is implemented."""

from __future__ import annotations

from typing import Any

from app.notifications.subscriptions import SERVER_CAPABILITY, TOPIC_CANONICAL, TOPICS
from app.resources.validation import SUPPORTED_TYPES
from app.store.search import params_for

SEARCH_PARAM_TYPES = {
    "_id": "token",
    "_lastUpdated": "date",
    "identifier": "token",
    "patient": "reference",
    "subject": "reference",
    "date": "date",
    "status": "token",
    "code": "token",
    "derived-from": "reference",
    "questionnaire": "reference",
    "url": "uri",
    "criteria": "string",
    "clinical-status": "token",
    "onset-date": "date",
}
INTERACTIONS = ["read", "vread", "update", "delete", "history-instance", "create", "search-type"]
SOFTWARE_VERSION = "0.1.0"
EXPORT_DOCUMENTATION = (
    "Bulk Data 2.0 (export.md): Prefer: respond-async; _outputFormat application/fhir+ndjson, _since, _type "
    "(Prefer: handling=lenient drops unknown types into the error file); AuditEvent at system level when _type "
    "names it; _typeFilter is not supported (400)"
)


def capability_statement(base: str, token_url: str | None = None) -> dict[str, Any]:
    resources = [
        {
            "type": rtype,
            "interaction": [{"code": code} for code in INTERACTIONS],
            "versioning": "versioned-update",
            "readHistory": True,
            "updateCreate": True,
            "conditionalCreate": True,
            "conditionalUpdate": True,
            "conditionalDelete": "not-supported",
            "searchParam": [{"name": name, "type": SEARCH_PARAM_TYPES[name]} for name in params_for(rtype)],
        }
        for rtype in SUPPORTED_TYPES
    ]
    patient = next(r for r in resources if r["type"] == "Patient")
    patient["operation"] = [  # export.md: the patient compartment
        {
            "name": "export",
            "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/patient-export",
            "documentation": EXPORT_DOCUMENTATION,
        }
    ]
    subscription = next(r for r in resources if r["type"] == "Subscription")
    subscription["operation"] = [  # notifications.md Operations
        {
            "name": "status",
            "definition": "http://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition/backport-subscription-status",
        },
        {
            "name": "events",
            "definition": "http://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition/backport-subscription-events",
        },
    ]
    subscription["extension"] = [{"url": TOPIC_CANONICAL, "valueCanonical": topic} for topic in TOPICS]
    resources += [
        {
            "type": "CarePlan",
            "documentation": "Computed, read only: the patient's CoCM care plan with its care status",
            "interaction": [{"code": "search-type"}],
            "searchParam": [
                {"name": "patient", "type": "reference"},
                {"name": "date", "type": "date", "documentation": "the as-of date (default today)"},
            ],
        },
        {
            "type": "ChargeItem",
            "documentation": "Computed, read only: one ChargeItem per billing code of a month",
            "interaction": [{"code": "search-type"}],
            "searchParam": [
                {"name": "patient", "type": "reference"},
                {"name": "occurrence", "type": "date", "documentation": "the month, YYYY-MM"},
            ],
        },
        {
            "type": "Questionnaire",
            "documentation": "Read only: the PHQ-9, GAD-7 and PHQ-2 definitions the service scores",
            "interaction": [{"code": "read"}, {"code": "search-type"}],
            "searchParam": [{"name": "url", "type": "uri"}, {"name": "_id", "type": "token"}],
        },
        {
            "type": "Measure",
            "documentation": "Read only: the four quality measures of quality.md, evaluated by $evaluate-measure",
            "interaction": [{"code": "read"}, {"code": "search-type"}],
            "searchParam": [{"name": "url", "type": "uri"}, {"name": "_id", "type": "token"}],
            "operation": [
                {
                    "name": "evaluate-measure",
                    "definition": "http://hl7.org/fhir/OperationDefinition/Measure-evaluate-measure",
                    "documentation": "periodStart, periodEnd (required), reportType summary | subject-list | "
                    "subject, subject=Patient/{id}; answers a MeasureReport",
                }
            ],
        },
        {
            "type": "AuditEvent",
            "documentation": "Written by the service for every interaction; read and search only",
            "interaction": [{"code": "read"}, {"code": "search-type"}],
            "searchParam": [
                {"name": "entity", "type": "reference"},
                {
                    "name": "agent",
                    "type": "token",
                    "documentation": "the agent name (key fingerprint or client id)",
                },
                {"name": "action", "type": "token"},
                {"name": "date", "type": "date"},
            ],
        },
    ]
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-11-28",
        "kind": "instance",
        "software": {"name": "cocm-api", "version": SOFTWARE_VERSION},
        "implementation": {"description": "cocm-api: Collaborative Care registry and billing", "url": base},
        "instantiates": [SERVER_CAPABILITY, "http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data"],
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json"],
        "rest": [
            {
                "mode": "server",
                **({"security": _security(token_url)} if token_url else {}),
                "resource": resources,
                "interaction": [{"code": "transaction"}, {"code": "batch"}],
                "operation": [
                    {
                        "name": "export",
                        "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export",
                        "documentation": EXPORT_DOCUMENTATION,
                    }
                ],
            }
        ],
    }


def _security(token_url: str) -> dict[str, Any]:
    """SMART Backend Services: the token endpoint (SMART App Launch, "oauth-uris" extension)."""
    return {
        "cors": True,
        "service": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                        "code": "SMART-on-FHIR",
                    }
                ],
                "text": "SMART Backend Services (client_credentials, private_key_jwt) and static API keys",
            }
        ],
        "extension": [
            {
                "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
                "extension": [{"url": "token", "valueUri": token_url}],
            }
        ],
    }
