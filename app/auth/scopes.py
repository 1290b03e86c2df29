"""SMART on FHIR scopes for backend services: parsing, granting and checking.

Forms accepted (SMART App Launch 2.x, "Scopes for requesting FHIR resources"):

- v2: ``system/<Type>.<permissions>`` where permissions is a non-empty subsequence of ``cruds``
  in that order (``c`` create, ``r`` read, ``u`` update, ``d`` delete, ``s`` search), e.g.
  ``system/Patient.cruds``, ``system/Observation.rs``. ``<Type>`` may be ``*`` (every type).
- v1: ``system/<Type>.read`` (= ``rs``), ``system/<Type>.write`` (= ``cud``),
  ``system/<Type>.*`` (= ``cruds``); so ``system/*.*`` is every interaction on every type.

Contexts: only ``system/`` is meaningful for a backend-services client (there is no user and no
patient in a client-credentials grant). ``user/`` and ``patient/`` scopes are well-formed but are
never granted: ``parse_scope`` rejects them with ``ScopeError`` and the token endpoint leaves them
out of the grant (like any other scope it does not know, e.g. ``openid`` or ``launch``). SMART v2
granular scopes with a query (``system/Observation.rs?category=...``) cannot be enforced here and
are treated the same way: not granted.

Granting (``grant``): the requested scopes intersected with the client's allowed ones. A requested
scope wholly covered by the allowed ones is granted as written (a v1 client gets its v1 text
back); one only partly covered is narrowed to the covered part, in v2 form (SMART: "the server may
grant a subset of the requested scopes"); an empty grant is the caller's ``invalid_scope``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

PERMISSION_ORDER = "cruds"
ALL_INTERACTIONS: frozenset[str] = frozenset(PERMISSION_ORDER)
V1_PERMISSIONS = {"read": "rs", "write": "cud", "*": "cruds"}
CONTEXTS = ("system", "user", "patient")
GRANTABLE_CONTEXT = "system"

_SCOPE = re.compile(r"^(?P<context>[a-z]+)/(?P<type>\*|[A-Z][A-Za-z0-9]{0,63})\.(?P<perms>[A-Za-z*]+)$")


class ScopeError(ValueError):
    """A scope string that is malformed or not grantable to a backend-services client."""


@dataclass(frozen=True, order=True)
class Scope:
    """One ``system/`` scope: a resource type (or ``*``) and the permitted interactions."""

    resource_type: str
    interactions: frozenset[str]

    def covers(self, resource_type: str, interaction: str) -> bool:
        return (self.resource_type in {"*", resource_type}) and interaction in self.interactions

    def __str__(self) -> str:
        letters = "".join(ch for ch in PERMISSION_ORDER if ch in self.interactions)
        return f"{GRANTABLE_CONTEXT}/{self.resource_type}.{letters}"


# What an API key has unless configured otherwise: every interaction on every type of its tenant.
ALL_SCOPES: tuple[Scope, ...] = (Scope("*", ALL_INTERACTIONS),)


def _permissions(text: str) -> frozenset[str]:
    if text in V1_PERMISSIONS:
        return frozenset(V1_PERMISSIONS[text])
    # v2: a non-empty subsequence of "cruds", letters in that order, each at most once.
    position = -1
    for ch in text:
        index = PERMISSION_ORDER.find(ch)
        if index <= position:
            raise ScopeError(
                f"permissions {text!r} must be read, write, * or letters of 'cruds' in that order"
            )
        position = index
    return frozenset(text)


def parse_scope(text: str) -> Scope:
    """One scope string -> ``Scope``; ``ScopeError`` if malformed or not a ``system/`` scope."""
    match = _SCOPE.match(text)
    if match is None:
        raise ScopeError(f"{text!r} is not a SMART scope of the form system/<Type>.<permissions>")
    context = match["context"]
    if context != GRANTABLE_CONTEXT:
        if context in CONTEXTS:
            raise ScopeError(f"{text!r}: {context}/ scopes are not granted to backend services")
        raise ScopeError(f"{text!r}: unknown scope context {context!r}")
    return Scope(match["type"], _permissions(match["perms"]))


def parse_scopes(text: str | Iterable[str]) -> tuple[Scope, ...]:
    """A space-separated scope string (or a list of scopes) -> scopes; strict: any bad one raises
    ``ScopeError``. For configuration (a client's allowed scopes, an API key's scopes) and for
    reading the scopes carried by an access token."""
    items = text.split() if isinstance(text, str) else [part for item in text for part in item.split()]
    return tuple(parse_scope(item) for item in items)


def allows(granted: Iterable[Scope], resource_type: str, interaction: str) -> bool:
    """Whether the granted scopes permit ``interaction`` (one of ``c r u d s``) on
    ``resource_type``. An unknown interaction letter is never allowed."""
    if interaction not in ALL_INTERACTIONS:
        return False
    return any(scope.covers(resource_type, interaction) for scope in granted)


def _intersect(requested: Scope, allowed: Scope) -> Scope | None:
    if requested.resource_type == "*":
        rtype = allowed.resource_type
    elif allowed.resource_type in {"*", requested.resource_type}:
        rtype = requested.resource_type
    else:
        return None
    common = requested.interactions & allowed.interactions
    return Scope(rtype, common) if common else None


def _normalise(scopes: Iterable[Scope]) -> list[Scope]:
    """Merge scopes on the same type and drop those implied by a ``*`` scope."""
    by_type: dict[str, set[str]] = {}
    for scope in scopes:
        by_type.setdefault(scope.resource_type, set()).update(scope.interactions)
    wildcard = by_type.get("*", set())
    result = []
    for rtype, interactions in sorted(by_type.items()):
        if rtype != "*" and interactions <= wildcard:
            continue
        result.append(Scope(rtype, frozenset(interactions)))
    return result


@dataclass(frozen=True)
class Grant:
    """The outcome of a scope request: the granted scope text (for the token and the response)
    and the requested scopes left out, with why (for the error description / logs)."""

    scope: str
    refused: tuple[str, ...]

    @property
    def scopes(self) -> tuple[Scope, ...]:
        return parse_scopes(self.scope)


def _covered(granted: Iterable[Scope], scope: Scope) -> bool:
    """Whether ``granted`` permits everything ``scope`` does (a ``*`` scope only by a ``*``)."""
    granted = tuple(granted)
    if scope.resource_type == "*":
        return all(
            any(g.resource_type == "*" and ch in g.interactions for g in granted) for ch in scope.interactions
        )
    return all(allows(granted, scope.resource_type, ch) for ch in scope.interactions)


def grant(requested: str, allowed: Iterable[Scope]) -> Grant:
    """Requested scope string (space separated) ∩ the client's allowed scopes.

    Requested scopes that are not ``system/`` scopes (``user/``, ``patient/``, ``openid``...),
    granular ones with a query, and ones outside the allowed set are left out; those partly
    covered are narrowed. The grant may be empty (then ``scope == ""``)."""
    allowed = tuple(allowed)
    verbatim: list[str] = []
    narrowed: list[Scope] = []
    refused: list[str] = []
    for item in dict.fromkeys(requested.split()):
        try:
            scope = parse_scope(item)
        except ScopeError:
            refused.append(item)
            continue
        if _covered(allowed, scope):
            verbatim.append(item)
            continue
        parts = [p for a in allowed if (p := _intersect(scope, a)) is not None]
        if not parts:
            refused.append(item)
        narrowed.extend(parts)
    granted = [parse_scope(text) for text in verbatim]
    extra = [str(s) for s in _normalise(narrowed) if not _covered(granted, s)]
    return Grant(" ".join(verbatim + extra), tuple(refused))


def www_authenticate(
    error: str | None = None, description: str | None = None, scope: str | None = None
) -> str:
    """A ``WWW-Authenticate`` value for a Bearer challenge (RFC 6750 §3): ``invalid_token`` on a
    401 for a bad or expired token, ``insufficient_scope`` (with the needed ``scope``) on a 403,
    no error at all when no credentials were sent."""
    params = ['realm="cocm-api"']
    for name, value in (("error", error), ("error_description", description), ("scope", scope)):
        if value:
            params.append(f'{name}="{value.replace(chr(92), "").replace(chr(34), "")}"')
    return "Bearer " + ", ".join(params)
