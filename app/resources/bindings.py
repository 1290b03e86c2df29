"""R4 (4.0.1) data the validator checks that ``fhir.resources`` does not: required bindings and the
resource type names.

Every entry is data, keyed by the element's FHIR definition path: ``<Resource>.<element>...`` for
resource elements (a backbone element keeps its defining path wherever it is reused, so
``Consent.provision.type`` also covers ``Consent.provision.provision.type``), and
``<Datatype>.<element>`` for datatype elements, which apply wherever that datatype appears (a
``Patient.identifier``, an ``Encounter.length`` Duration, an ``Extension.valueQuantity``, ...).
Sources: the R4 value sets of the same names (hl7.org/fhir/R4/valueset-*.html).

Required bindings deliberately left out, with the reason:

- ``Attachment.contentType``, ``Signature.targetFormat``/``sigFormat`` (MimeTypes, BCP 13): a
  grammar, not an enumerable list.
- ``Money.currency`` (ISO 4217), ``DataRequirement.type``/``ParameterDefinition.type``
  (FHIRAllTypes), ``Resource.language`` (preferred only): large external code systems, and no data
  of this service depends on them.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Final

# --- value sets (R4 4.0.1) -------------------------------------------------------------------------

ADMINISTRATIVE_GENDER: Final = ("male", "female", "other", "unknown")
IDENTIFIER_USE: Final = ("usual", "official", "temp", "secondary", "old")
NAME_USE: Final = ("usual", "official", "temp", "nickname", "anonymous", "old", "maiden")
CONTACT_POINT_SYSTEM: Final = ("phone", "fax", "email", "pager", "url", "sms", "other")
CONTACT_POINT_USE: Final = ("home", "work", "temp", "old", "mobile")
ADDRESS_USE: Final = ("home", "work", "temp", "old", "billing")
ADDRESS_TYPE: Final = ("postal", "physical", "both")
QUANTITY_COMPARATOR: Final = ("<", "<=", ">=", ">")
NARRATIVE_STATUS: Final = ("generated", "extensions", "additional", "empty")
UNITS_OF_TIME: Final = ("s", "min", "h", "d", "wk", "mo", "a")
DAYS_OF_WEEK: Final = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
EVENT_TIMING: Final = (
    "MORN", "MORN.early", "MORN.late", "NOON", "AFT", "AFT.early", "AFT.late",
    "EVE", "EVE.early", "EVE.late", "NIGHT", "PHS",
    "HS", "WAKE", "C", "CM", "CD", "CV", "AC", "ACM", "ACD", "ACV", "PC", "PCM", "PCD", "PCV",
)  # fmt: skip
CONTRIBUTOR_TYPE: Final = ("author", "editor", "reviewer", "endorser")
SORT_DIRECTION: Final = ("ascending", "descending")
OPERATION_PARAMETER_USE: Final = ("in", "out")
RELATED_ARTIFACT_TYPE: Final = (
    "documentation", "justification", "citation", "predecessor", "successor",
    "derived-from", "depends-on", "composed-of",
)  # fmt: skip
TRIGGER_TYPE: Final = (
    "named-event", "periodic", "data-changed", "data-added", "data-modified",
    "data-removed", "data-accessed", "data-access-ended",
)  # fmt: skip

LINK_TYPE: Final = ("replaced-by", "replaces", "refer", "seealso")
QUESTIONNAIRE_RESPONSE_STATUS: Final = ("in-progress", "completed", "amended", "entered-in-error", "stopped")
OBSERVATION_STATUS: Final = (
    "registered", "preliminary", "final", "amended", "corrected", "cancelled", "entered-in-error", "unknown",
)  # fmt: skip
ENCOUNTER_STATUS: Final = (
    "planned", "arrived", "triaged", "in-progress", "onleave", "finished", "cancelled",
    "entered-in-error", "unknown",
)  # fmt: skip
ENCOUNTER_LOCATION_STATUS: Final = ("planned", "active", "reserved", "completed")
EPISODE_OF_CARE_STATUS: Final = (
    "planned", "waitlist", "active", "onhold", "finished", "cancelled", "entered-in-error",
)  # fmt: skip
CONSENT_STATE: Final = ("draft", "proposed", "active", "rejected", "inactive", "entered-in-error")
CONSENT_PROVISION_TYPE: Final = ("deny", "permit")
CONSENT_DATA_MEANING: Final = ("instance", "related", "dependents", "authoredby")

# Quantity and its specialisations. ``fhir.resources`` models Age, Count, Distance and Duration as
# classes of their own (SimpleQuantity and MoneyQuantity are Quantity), so each gets the row.
_QUANTITY_TYPES: Final = ("Quantity", "Age", "Count", "Distance", "Duration")

DATATYPE_BINDINGS: Final[MappingProxyType[str, tuple[str, ...]]] = MappingProxyType(
    {
        "Identifier.use": IDENTIFIER_USE,
        "HumanName.use": NAME_USE,
        "ContactPoint.system": CONTACT_POINT_SYSTEM,
        "ContactPoint.use": CONTACT_POINT_USE,
        "Address.use": ADDRESS_USE,
        "Address.type": ADDRESS_TYPE,
        **{f"{name}.comparator": QUANTITY_COMPARATOR for name in _QUANTITY_TYPES},
        "Narrative.status": NARRATIVE_STATUS,
        "Timing.repeat.durationUnit": UNITS_OF_TIME,
        "Timing.repeat.periodUnit": UNITS_OF_TIME,
        "Timing.repeat.dayOfWeek": DAYS_OF_WEEK,
        "Timing.repeat.when": EVENT_TIMING,
        "Contributor.type": CONTRIBUTOR_TYPE,
        "DataRequirement.sort.direction": SORT_DIRECTION,
        "ParameterDefinition.use": OPERATION_PARAMETER_USE,
        "RelatedArtifact.type": RELATED_ARTIFACT_TYPE,
        "TriggerDefinition.type": TRIGGER_TYPE,
    }
)

RESOURCE_BINDINGS: Final[MappingProxyType[str, tuple[str, ...]]] = MappingProxyType(
    {
        "Patient.gender": ADMINISTRATIVE_GENDER,
        "Patient.contact.gender": ADMINISTRATIVE_GENDER,
        "Patient.link.type": LINK_TYPE,
        "Practitioner.gender": ADMINISTRATIVE_GENDER,
        "QuestionnaireResponse.status": QUESTIONNAIRE_RESPONSE_STATUS,
        "Observation.status": OBSERVATION_STATUS,
        "Encounter.status": ENCOUNTER_STATUS,
        "Encounter.statusHistory.status": ENCOUNTER_STATUS,
        "Encounter.location.status": ENCOUNTER_LOCATION_STATUS,
        "EpisodeOfCare.status": EPISODE_OF_CARE_STATUS,
        "EpisodeOfCare.statusHistory.status": EPISODE_OF_CARE_STATUS,
        "Consent.status": CONSENT_STATE,
        "Consent.provision.type": CONSENT_PROVISION_TYPE,
        "Consent.provision.data.meaning": CONSENT_DATA_MEANING,
    }
)

REQUIRED_BINDINGS: Final[MappingProxyType[str, tuple[str, ...]]] = MappingProxyType(
    {**DATATYPE_BINDINGS, **RESOURCE_BINDINGS}
)
"""Every checked binding: definition path -> allowed codes."""

# R4 4.0.1 resource types (hl7.org/fhir/R4/valueset-resource-types.html).
R4_RESOURCE_TYPES: Final = frozenset(
    """
    Account ActivityDefinition AdverseEvent AllergyIntolerance Appointment AppointmentResponse
    AuditEvent Basic Binary BiologicallyDerivedProduct BodyStructure Bundle CapabilityStatement
    CarePlan CareTeam CatalogEntry ChargeItem ChargeItemDefinition Claim ClaimResponse
    ClinicalImpression CodeSystem Communication CommunicationRequest CompartmentDefinition
    Composition ConceptMap Condition Consent Contract Coverage CoverageEligibilityRequest
    CoverageEligibilityResponse DetectedIssue Device DeviceDefinition DeviceMetric DeviceRequest
    DeviceUseStatement DiagnosticReport DocumentManifest DocumentReference EffectEvidenceSynthesis
    Encounter Endpoint EnrollmentRequest EnrollmentResponse EpisodeOfCare EventDefinition Evidence
    EvidenceVariable ExampleScenario ExplanationOfBenefit FamilyMemberHistory Flag Goal
    GraphDefinition Group GuidanceResponse HealthcareService ImagingStudy Immunization
    ImmunizationEvaluation ImmunizationRecommendation ImplementationGuide InsurancePlan Invoice
    Library Linkage List Location Measure MeasureReport Media Medication MedicationAdministration
    MedicationDispense MedicationKnowledge MedicationRequest MedicationStatement MedicinalProduct
    MedicinalProductAuthorization MedicinalProductContraindication MedicinalProductIndication
    MedicinalProductIngredient MedicinalProductInteraction MedicinalProductManufactured
    MedicinalProductPackaged MedicinalProductPharmaceutical MedicinalProductUndesirableEffect
    MessageDefinition MessageHeader MolecularSequence NamingSystem NutritionOrder Observation
    ObservationDefinition OperationDefinition OperationOutcome Organization OrganizationAffiliation
    Parameters Patient PaymentNotice PaymentReconciliation Person PlanDefinition Practitioner
    PractitionerRole Procedure Provenance Questionnaire QuestionnaireResponse RelatedPerson
    RequestGroup ResearchDefinition ResearchElementDefinition ResearchStudy ResearchSubject
    RiskAssessment RiskEvidenceSynthesis Schedule SearchParameter ServiceRequest Slot Specimen
    SpecimenDefinition StructureDefinition StructureMap Subscription Substance SubstanceNucleicAcid
    SubstancePolymer SubstanceProtein SubstanceReferenceInformation SubstanceSourceMaterial
    SubstanceSpecification SupplyDelivery SupplyRequest Task TerminologyCapabilities TestReport
    TestScript ValueSet VerificationResult VisionPrescription
    """.split()  # noqa: SIM905 - a word list reads better than 146 quoted strings
)
