"""Parse and validate FHIR R4 JSON bodies: what ``fhir.resources`` checks, and what it does not.

Public API: ``SUPPORTED_TYPES``, ``PATIENT_REFERENCE_ELEMENTS``, ``parse_json``,
``validate_resource``, ``check_reference_shapes``, ``patient_reference``, ``bound_paths``.

Choices, and why:

- **Parsing.** ``orjson.loads`` on the bytes (a leading UTF-8 byte-order mark is dropped: some EHR
  stacks send one). orjson refuses nesting deeper than 1024 by itself; the 64-level limit of api.md
  is then checked with an explicit stack over the parsed containers (never recursion), skipped when
  the body holds fewer than 64 brackets. Every failure is ``InvalidInput`` (code ``structure``) whose
  diagnostics give the kind of problem and its position, never the body's content.
- **Model validation once, on the dict.** ``model_validate(dict)`` rather than
  ``model_validate_json(bytes)``: the dict is needed anyway (it is what is stored, and the checks
  below walk it), so parsing the bytes a second time inside pydantic would only add cost. The model
  instance is discarded; nothing is round-tripped through ``model_dump``.
- **Pydantic errors become issues** with a FHIRPath expression built from the error location
  (``('name', 0, 'use')`` -> ``Patient.name[0].use``): ``structure`` for unknown elements and wrong
  JSON shapes, ``required`` for missing elements, ``value`` for the rest. Pydantic's message is
  kept only when it does not contain the input value; otherwise a fixed sentence is used, so a
  name or a birth date never reaches an OperationOutcome or a log.
- **What fhir.resources does not check**, in one iterative pass over the dict driven by a schema
  compiled once per resource type from the model classes (element name -> JSON kind, repetition,
  child schema, bound codes):

  * required bindings (``app.resources.bindings``: a data table keyed by definition path; datatype rows
    such as ``Identifier.use`` apply wherever the datatype appears, because the schema knows each
    element's datatype; backbone rows keep their defining path, so nested ``Consent.provision``
    and ``QuestionnaireResponse.item`` levels are covered). A bad code is ``code-invalid``.
  * JSON kinds pydantic coerces in lax mode: ``"true"`` for a boolean, ``"3"`` or ``2.0`` for an
    integer, a JSON *string* holding an object where a complex element is expected (fhir.resources
    parses it). These are ``structure`` issues.
  * contained resources: a known ``resourceType`` (fhir.resources raises ``KeyError`` on an
    unknown one, which would otherwise surface as a 500) and no nested ``contained`` (dom-2).
  * ``Reference.reference`` shapes (see ``check_reference_shapes``), ``value`` issues.

  Plain string elements without a binding are left out of the schema (pydantic already refuses a
  non-string there), which keeps the walk at about 20 us for a PHQ-9 against about 0.5-0.8 ms for
  ``model_validate``. Matching by element name alone (every ``use`` key, every ``comparator``)
  would be guessing: ``use`` means different things in Identifier, HumanName, ContactPoint and
  Address. The schema walk is exact and costs a dict lookup per key.
- **The patient reference is required** for QuestionnaireResponse, Observation, Encounter,
  EpisodeOfCare and Consent although FHIR makes ``subject`` optional: every fact the service
  counts (a score, a minute, a consent) belongs to one patient, and a resource without one could
  never count. Missing or not ``Patient/<id>`` is a ``BusinessRuleViolation`` (422).
"""

from __future__ import annotations

import datetime
import decimal
import re
import threading
import types
import typing
import uuid
from collections.abc import Mapping
from typing import Any, Final, NamedTuple

import orjson
from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

from app.errors import BusinessRuleViolation, InvalidInput, Issue
from app.resources.bindings import R4_RESOURCE_TYPES, REQUIRED_BINDINGS

__all__ = [
    "PATIENT_REFERENCE_ELEMENTS",
    "SUPPORTED_TYPES",
    "bound_paths",
    "check_reference_shapes",
    "parse_json",
    "patient_reference",
    "validate_resource",
]

SUPPORTED_TYPES: Final = (
    "Patient",
    "QuestionnaireResponse",
    "Observation",
    "Encounter",
    "EpisodeOfCare",
    "Consent",
    "Practitioner",
    "Organization",
    "Subscription",
    "Condition",
)
"""The resource types this service stores."""

PATIENT_REFERENCE_ELEMENTS: Final[Mapping[str, str]] = types.MappingProxyType(
    {
        "QuestionnaireResponse": "subject",
        "Observation": "subject",
        "Encounter": "subject",
        "EpisodeOfCare": "patient",
        "Consent": "patient",
        "Condition": "subject",
    }
)
"""Patient-linked type -> the element that holds its (required) Patient reference."""

DEFAULT_MAX_DEPTH: Final = 64

# --- parsing ---------------------------------------------------------------------------------------

_BOM: Final = b"\xef\xbb\xbf"


def parse_json(body: bytes, max_depth: int = DEFAULT_MAX_DEPTH) -> dict[str, Any]:
    """Parse a request body into a JSON object, or raise ``InvalidInput`` (code ``structure``).

    Rejects: bytes that are not UTF-8, unparseable JSON, nesting (objects and arrays) deeper than
    ``max_depth``, and a top level that is not an object. Diagnostics name the problem and its
    position, never the content.
    """
    if body.startswith(_BOM):
        body = body[len(_BOM) :]
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(_json_error_issue(body, exc, max_depth)) from None
    if type(data) is not dict:
        raise InvalidInput(
            Issue("The body must be a JSON object (a FHIR resource)", code="structure"),
        )
    if body.count(b"{") + body.count(b"[") > max_depth:
        _check_depth(data, max_depth)
    return data


def _json_error_issue(body: bytes, exc: orjson.JSONDecodeError, max_depth: int) -> Issue:
    if "depth" in exc.msg:
        return _depth_issue(max_depth)
    if "UTF-8" in exc.msg or "surrogate" in exc.msg:
        try:
            body.decode("utf-8")
        except UnicodeDecodeError as decode_error:
            return Issue(f"The body is not valid UTF-8 (byte {decode_error.start})", code="structure")
    # orjson's messages are fixed sentences of its parser ("unexpected character, expected ...").
    return Issue(
        f"The body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
        code="structure",
    )


def _depth_issue(max_depth: int) -> Issue:
    return Issue(f"JSON nesting is deeper than {max_depth} levels", code="structure")


def _check_depth(data: dict[str, Any], max_depth: int) -> None:
    stack: list[tuple[dict[str, Any] | list[Any], int]] = [(data, 1)]
    while stack:
        container, depth = stack.pop()
        values = container.values() if type(container) is dict else container
        for value in values:
            if isinstance(value, dict | list):
                if depth >= max_depth:
                    raise InvalidInput(_depth_issue(max_depth))
                stack.append((value, depth + 1))


# --- compiled schema -------------------------------------------------------------------------------

_COMPLEX: Final = 0
_RESOURCE: Final = 1
_STRING: Final = 2
_BOOLEAN: Final = 3
_INTEGER: Final = 4
_DECIMAL: Final = 5
_REFERENCE: Final = 6  # Reference.reference: a string with a shape
_TEXT: Final = 7  # a plain str field: pydantic refuses non-strings itself, so the walk skips it

_KIND_NAMES: Final = {
    _COMPLEX: "a JSON object",
    _RESOURCE: "a JSON object (a resource)",
    _STRING: "a JSON string",
    _BOOLEAN: "a JSON boolean",
    _INTEGER: "a JSON integer",
    _DECIMAL: "a JSON number",
    _REFERENCE: "a JSON string",
}


class _Element(NamedTuple):
    kind: int
    repeats: bool
    node: dict[str, _Element] | None  # the child schema of a complex element
    json_types: frozenset[type[Any]]  # the Python types orjson gives for a valid value
    codes: frozenset[str] | None  # required binding
    allowed: str  # the codes for diagnostics, "a, b, c"


_JSON_TYPES: Final[dict[int, frozenset[type[Any]]]] = {
    _COMPLEX: frozenset({dict}),
    _RESOURCE: frozenset({dict}),
    _STRING: frozenset({str}),
    _BOOLEAN: frozenset({bool}),
    _INTEGER: frozenset({int}),
    _DECIMAL: frozenset({int, float}),
    _REFERENCE: frozenset({str}),
}

_Node = dict[str, _Element]

_NODES: dict[type[Any], _Node] = {}
_ROOTS: dict[str, _Node] = {}
_BOUND: set[str] = set()
_COMPILE_LOCK: Final = threading.Lock()


def _classify(annotation: Any) -> tuple[int, bool, type[Any] | None] | None:
    """(kind, repeats, model class) of a field annotation of fhir.resources, None if unknown."""
    repeats = False
    target: Any = annotation
    while True:
        origin = typing.get_origin(target)
        if origin is typing.Annotated:
            target = typing.get_args(target)[0]
        elif origin is typing.Union or origin is types.UnionType:
            args = [arg for arg in typing.get_args(target) if arg is not type(None)]
            target = str if str in args else args[0]  # Union[AnyUrl, str] is a JSON string
        elif origin is list:
            repeats = True
            target = typing.get_args(target)[0]
        else:
            break
    if hasattr(target, "get_model_klass"):
        model = target.get_model_klass()
        kind = _RESOURCE if model.__name__ in ("Resource", "DomainResource") else _COMPLEX
        return kind, repeats, model
    if target is bool:
        return _BOOLEAN, repeats, None
    if target is int:
        return _INTEGER, repeats, None
    if target in (decimal.Decimal, float):
        return _DECIMAL, repeats, None
    if target is str:
        return _TEXT, repeats, None
    if target in (bytes, uuid.UUID, datetime.date, datetime.datetime, datetime.time):
        return _STRING, repeats, None
    return None  # unknown to this walk: left to pydantic alone


def _compile(model: type[Any], definition_path: str) -> _Node:
    """The schema of ``model`` whose elements are defined at ``definition_path``; memoised per class
    (a backbone class has one defining path, a datatype is its own root), cycles included."""
    node = _NODES.get(model)
    if node is not None:
        return node
    node = {}
    _NODES[model] = node
    for name, field in model.model_fields.items():
        if name == "fhir_comments":
            continue
        element_name = field.alias or name
        classified = _classify(field.annotation)
        if classified is None:
            continue
        kind, repeats, child_model = classified
        path = f"{definition_path}.{element_name}"
        child: _Node | None = None
        if kind == _COMPLEX and child_model is not None:
            same_definition = child_model.__module__ == model.__module__
            child = _compile(child_model, path if same_definition else child_model.__name__)
        codes = REQUIRED_BINDINGS.get(path) if kind == _TEXT else None
        if codes is not None:
            _BOUND.add(path)
            kind = _STRING
        elif kind == _TEXT:
            if model.__name__ != "Reference" or element_name != "reference":
                continue  # nothing to check that pydantic does not: keep the walk small
            kind = _REFERENCE
        node[element_name] = _Element(
            kind,
            repeats,
            child,
            _JSON_TYPES[kind],
            frozenset(codes) if codes is not None else None,
            ", ".join(codes) if codes is not None else "",
        )
    return node


def _root(resource_type: str) -> _Node | None:
    """The compiled schema of an R4 resource type that fhir.resources models, else None."""
    node = _ROOTS.get(resource_type)
    if node is not None or resource_type not in R4_RESOURCE_TYPES:
        return node
    with _COMPILE_LOCK:
        node = _ROOTS.get(resource_type)
        if node is None:
            try:
                model = get_fhir_model_class(resource_type)
            except ValueError:  # an R4 type that R4B dropped (MedicinalProduct, ...)
                return None
            node = _compile(model, resource_type)
            _ROOTS[resource_type] = node  # published only once complete
    return node


def bound_paths() -> frozenset[str]:
    """Definition paths of the required bindings the compiled schemas check (for tests and docs)."""
    for resource_type in SUPPORTED_TYPES:
        _root(resource_type)
    return frozenset(_BOUND)


for _type in SUPPORTED_TYPES:  # compile at import: the first request pays nothing
    _root(_type)

# --- references ------------------------------------------------------------------------------------

_ID: Final = r"[A-Za-z0-9\-\.]{1,64}"
_RELATIVE_REFERENCE: Final = re.compile(rf"([A-Z][A-Za-z]+)/({_ID})(?:/_history/{_ID})?")
_ABSOLUTE_REFERENCE: Final = re.compile(r"https?://[^\s/]+(?:/\S*)?")
_OTHER_REFERENCE: Final = re.compile(
    r"#[A-Za-z0-9\-\.]{0,64}"
    r"|urn:uuid:[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
    r"|urn:oid:[0-2](?:\.(?:0|[1-9][0-9]*))+"
)


def _reference_shape_ok(reference: str) -> bool:
    match = _RELATIVE_REFERENCE.fullmatch(reference)
    if match is not None:
        return match.group(1) in R4_RESOURCE_TYPES
    return bool(_ABSOLUTE_REFERENCE.fullmatch(reference) or _OTHER_REFERENCE.fullmatch(reference))


# --- the walk --------------------------------------------------------------------------------------

_CODE_ECHO: Final = re.compile(r"[A-Za-z0-9\-\.\_<>=:/+]{1,32}")


# A walk entry: (schema, object, index of the parent entry, key in the parent, list index or -1).
_Entry = tuple[_Node, dict[str, Any], int, str, int]


def _path(work: list[_Entry], entry: int, key: str, index: int) -> str:
    """The FHIRPath of ``key``[``index``] in ``work[entry]``, built only when an issue needs it."""
    parts = [key if index < 0 else f"{key}[{index}]"]
    while entry >= 0:
        _, _, parent, parent_key, parent_index = work[entry]
        parts.append(parent_key if parent_index < 0 else f"{parent_key}[{parent_index}]")
        entry = parent
    return ".".join(reversed(parts))


def _walk(root: _Node, data: dict[str, Any], root_path: str) -> tuple[list[Issue], list[Issue]]:
    """One breadth-first pass over ``data`` along the compiled schema; (issues, reference issues).

    Keys the schema does not know are skipped (pydantic reports unknown elements), so the walk is
    safe on data that failed model validation. Paths are reconstructed only for issues.
    """
    issues: list[Issue] = []
    reference_issues: list[Issue] = []
    work: list[_Entry] = [(root, data, -1, root_path, -1)]
    entry = 0
    while entry < len(work):  # ``work`` grows while it is read: a queue, no recursion
        node, obj, _, _, _ = work[entry]
        for key, value in obj.items():
            element = node.get(key)
            if element is None:
                continue
            kind, repeats, child, json_types, codes, allowed = element
            if not repeats:
                if type(value) not in json_types:
                    issues.append(_kind_issue(_path(work, entry, key, -1), kind))
                elif kind == _COMPLEX:
                    if child is not None:
                        work.append((child, value, entry, key, -1))
                elif codes is not None:
                    if value not in codes:
                        issues.append(_code_issue(_path(work, entry, key, -1), value, allowed))
                elif kind == _REFERENCE:
                    if not _reference_shape_ok(value):
                        reference_issues.append(_reference_issue(_path(work, entry, key, -1)))
                elif kind == _RESOURCE:
                    _contained(work, entry, key, -1, item=value, issues=issues)
                continue
            if type(value) is not list:
                path = _path(work, entry, key, -1)
                issues.append(Issue(f"{path} must be a JSON array", "structure", "error", (path,)))
                continue
            for index, item in enumerate(value):
                if item is None:  # a null in a list: pydantic reports it where it is not allowed
                    continue
                if type(item) not in json_types:
                    issues.append(_kind_issue(_path(work, entry, key, index), kind))
                elif kind == _COMPLEX:
                    if child is not None:
                        work.append((child, item, entry, key, index))
                elif codes is not None:
                    if item not in codes:
                        issues.append(_code_issue(_path(work, entry, key, index), item, allowed))
                elif kind == _REFERENCE:
                    if not _reference_shape_ok(item):
                        reference_issues.append(_reference_issue(_path(work, entry, key, index)))
                elif kind == _RESOURCE:
                    _contained(work, entry, key, index, item=item, issues=issues)
        entry += 1
    return issues, reference_issues


def _contained(
    work: list[_Entry], entry: int, key: str, index: int, *, item: dict[str, Any], issues: list[Issue]
) -> None:
    """Queue a contained resource under the schema of its own resourceType."""
    resource_type = item.get("resourceType")
    node = _root(resource_type) if isinstance(resource_type, str) else None
    path = _path(work, entry, key, index)
    if node is None:
        issues.append(
            Issue(
                f"{path}.resourceType: a contained resource needs a known R4 resourceType",
                "structure",
                "error",
                (f"{path}.resourceType",),
            )
        )
        return
    if "contained" in item:
        issues.append(
            Issue(
                f"{path}.contained: a contained resource cannot contain resources (dom-2)",
                "structure",
                "error",
                (f"{path}.contained",),
            )
        )
    work.append((node, item, entry, key, index))


def _kind_issue(path: str, kind: int) -> Issue:
    return Issue(f"{path} must be {_KIND_NAMES[kind]}", "structure", "error", (path,))


def _code_issue(path: str, code: str, allowed: str) -> Issue:
    shown = f"'{code}'" if _CODE_ECHO.fullmatch(code) else "the value"
    return Issue(f"{path}: {shown} is not one of {allowed}", "code-invalid", "error", (path,))


def _reference_issue(path: str) -> Issue:
    return Issue(
        f"{path} must be Type/id, Type/id/_history/vid, an absolute http(s) URL, "
        "#local-id, urn:uuid: or urn:oid:",
        "value",
        "error",
        (path,),
    )


# --- pydantic errors -------------------------------------------------------------------------------

_STRUCTURE_ERRORS: Final = frozenset(
    {
        "extra_forbidden",
        "list_type",
        "dict_type",
        "model_type",
        "model_attributes_type",
        "json_invalid",
        "json_type",
        "model_validation_format",
    }
)
_REQUIRED_ERRORS: Final = frozenset({"missing", "model_field_validation.missing"})
_NAME: Final = re.compile(r"_?[A-Za-z][A-Za-z0-9_]*")


def _fhirpath(resource_type: str, loc: tuple[int | str, ...]) -> str:
    parts = [resource_type]
    for segment in loc:
        if isinstance(segment, int):
            parts[-1] = f"{parts[-1]}[{segment}]"
        elif segment == "resource_type":
            parts.append("resourceType")
        elif segment != "root" and _NAME.fullmatch(segment):
            parts.append("_" + segment[:-5] if segment.endswith("__ext") else segment)
    return ".".join(parts)


def _safe_message(error: Mapping[str, Any]) -> str:
    """Pydantic's message unless it could carry the input value."""
    message = str(error.get("msg", ""))
    value = error.get("input")
    if isinstance(value, str | int | float | decimal.Decimal) and not isinstance(value, bool):
        text = str(value)
        if text and (text in message or text[:8] in message):  # also a truncated echo
            return f"invalid value ({error.get('type')})"
    return message


def _model_issues(resource_type: str, exc: ValidationError) -> list[Issue]:
    issues = []
    for error in exc.errors(include_url=False, include_context=False):
        error_type = str(error["type"])
        path = _fhirpath(resource_type, tuple(error["loc"]))
        leaf = path.rsplit(".", 1)[-1].split("[", 1)[0]
        if error_type == "extra_forbidden":
            issues.append(Issue(f"Unknown element '{leaf}' at {path}", "structure", "error", (path,)))
        elif error_type in _REQUIRED_ERRORS:
            issues.append(Issue(f"Missing required element '{leaf}' at {path}", "required", "error", (path,)))
        else:
            code = "structure" if error_type in _STRUCTURE_ERRORS else "value"
            issues.append(Issue(f"{path}: {_safe_message(error)}", code, "error", (path,)))
    return issues


# --- public checks ---------------------------------------------------------------------------------


def validate_resource(data: dict[str, Any], expected_type: str | None = None) -> dict[str, Any]:
    """Validate a parsed resource; return ``data`` unchanged (the raw JSON is what is stored).

    Checks the R4B model of ``data["resourceType"]`` (any R4 type that fhir.resources models; the
    routes pass ``expected_type``), then in one pass the required bindings, the JSON kinds, the
    contained resources and the reference shapes (``check_reference_shapes``). Raises
    ``InvalidInput`` with one issue per problem.
    """
    if type(data) is not dict:
        raise InvalidInput(Issue("A resource must be a JSON object", "structure"))
    resource_type = data.get("resourceType")
    if resource_type is None:
        raise InvalidInput(Issue("resourceType is required", "required", "error", ("resourceType",)))
    root = _root(resource_type) if type(resource_type) is str else None
    if root is None:
        shown = (
            f"resourceType '{resource_type}'"
            if isinstance(resource_type, str) and _NAME.fullmatch(resource_type)
            else "resourceType"
        )
        raise InvalidInput(
            Issue(
                f"{shown} is not an R4 resource type this server knows",
                "not-supported",
                "error",
                ("resourceType",),
            )
        )
    if expected_type is not None and resource_type != expected_type:
        raise InvalidInput(
            Issue(
                f"resourceType '{resource_type}' does not match the endpoint's type '{expected_type}'",
                "invalid",
                "error",
                ("resourceType",),
            )
        )
    checked = _as_r4(data)
    issues: list[Issue] = []
    model_failed = False
    try:
        get_fhir_model_class(resource_type).model_validate(checked)
    except ValidationError as exc:
        issues = _model_issues(resource_type, exc)
    except (KeyError, TypeError, ValueError, AttributeError):
        model_failed = True  # fhir.resources bugs on odd input; the walk below names the spot
    walk_issues, reference_issues = _walk(root, checked, resource_type)
    if walk_issues or reference_issues:
        seen = {issue.expression for issue in issues}
        issues.extend(i for i in (*walk_issues, *reference_issues) if i.expression not in seen)
    if issues:
        raise InvalidInput(issues)
    if model_failed:
        raise InvalidInput(Issue(f"The {resource_type} could not be validated", "structure"))
    return data


def _as_r4(data: dict[str, Any]) -> dict[str, Any]:
    """api.md counts a total-score ``Observation.valueDecimal`` as a measurement although R4's
    Observation has no decimal value (integration engines send it): such a body is validated as
    if the number were ``valueQuantity.value`` and stored as sent."""
    if data.get("resourceType") != "Observation" or "valueDecimal" not in data:
        return data
    if any(key.startswith("value") and key != "valueDecimal" for key in data):
        return data  # two values: let the model say what is wrong
    checked = {k: v for k, v in data.items() if k != "valueDecimal"}
    checked["valueQuantity"] = {"value": data["valueDecimal"]}
    return checked


def check_reference_shapes(data: dict[str, Any]) -> None:
    """Every ``Reference.reference`` in the resource (contained ones too) must be ``Type/id`` (an R4
    type, an id of 1-64 ``[A-Za-z0-9-.]``), optionally ``/_history/vid``, an absolute http(s) URL,
    ``#local-id``, or ``urn:uuid:``/``urn:oid:`` (bundle-internal). Raises ``InvalidInput`` with one
    issue per bad reference. ``validate_resource`` already applies it; this is for data that was
    validated elsewhere (for example after a transaction rewrote its ``urn:uuid:`` references).
    """
    resource_type = data.get("resourceType")
    root = _root(resource_type) if isinstance(resource_type, str) else None
    if root is None or not isinstance(resource_type, str):
        raise InvalidInput(
            Issue("resourceType is missing or unknown", "structure", "error", ("resourceType",))
        )
    _, reference_issues = _walk(root, data, resource_type)
    if reference_issues:
        raise InvalidInput(reference_issues)


_PATIENT_REFERENCE: Final = re.compile(rf"Patient/({_ID})(?:/_history/{_ID})?")


def patient_reference(data: dict[str, Any]) -> tuple[str, str] | None:
    """The patient of a patient-linked resource as (FHIRPath of the element, Patient id).

    None for types that are not patient-linked (Patient, Practitioner, Organization, ...). For the
    types in ``PATIENT_REFERENCE_ELEMENTS`` the reference is required and must be a relative
    ``Patient/<id>`` (a versioned one gives the same id): otherwise ``BusinessRuleViolation`` (422),
    because every counted fact belongs to a patient of this server. Whether that Patient exists in
    the caller's tenant is the store's check.
    """
    resource_type = data.get("resourceType")
    element = PATIENT_REFERENCE_ELEMENTS.get(resource_type) if type(resource_type) is str else None
    if element is None:
        return None
    path = f"{resource_type}.{element}"
    value = data.get(element)
    reference = value.get("reference") if type(value) is dict else None
    if type(reference) is not str:
        raise BusinessRuleViolation(
            Issue(
                f"{path} is required: a {resource_type} must reference the Patient it belongs to "
                "(Patient/<id> on this server)",
                "required",
                "error",
                (path,),
            )
        )
    match = _PATIENT_REFERENCE.fullmatch(reference)
    if match is None:
        raise BusinessRuleViolation(
            Issue(
                f"{path} must be a relative reference Patient/<id> to a Patient on this server",
                "business-rule",
                "error",
                (path,),
            )
        )
    return path, match.group(1)
