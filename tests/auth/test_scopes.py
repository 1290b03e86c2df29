"""SMART scopes: parsing (v2 cruds, v1 read/write/*), checks, grants (requested ∩ allowed)."""

from __future__ import annotations

import pytest

from app.auth.scopes import (
    ALL_SCOPES,
    Scope,
    ScopeError,
    allows,
    grant,
    parse_scope,
    parse_scopes,
    www_authenticate,
)


@pytest.mark.parametrize(
    ("text", "rtype", "letters"),
    [
        ("system/Patient.cruds", "Patient", "cruds"),
        ("system/Patient.rs", "Patient", "rs"),
        ("system/Observation.c", "Observation", "c"),
        ("system/Observation.cud", "Observation", "cud"),
        ("system/*.rs", "*", "rs"),
        ("system/*.cruds", "*", "cruds"),
        ("system/Patient.read", "Patient", "rs"),
        ("system/Patient.write", "Patient", "cud"),
        ("system/Patient.*", "Patient", "cruds"),
        ("system/*.*", "*", "cruds"),
        ("system/*.read", "*", "rs"),
    ],
)
def test_parse(text: str, rtype: str, letters: str) -> None:
    assert parse_scope(text) == Scope(rtype, frozenset(letters))


@pytest.mark.parametrize(
    "text",
    [
        "system/Patient.rc",  # out of order
        "system/Patient.rr",  # repeated
        "system/Patient.x",
        "system/Patient.",
        "system/.rs",
        "system/patient.rs",  # types start upper case
        "system/Patient",
        "Patient.read",
        "system/Patient.rs?category=vital-signs",  # granular: not enforceable, not granted
        "user/Patient.rs",  # no user in a backend-services grant
        "patient/*.read",  # no patient context either
        "other/Patient.rs",
        "openid",
        "launch",
        "",
    ],
)
def test_parse_rejects(text: str) -> None:
    with pytest.raises(ScopeError):
        parse_scope(text)


def test_str_is_canonical_v2() -> None:
    assert str(parse_scope("system/Patient.read")) == "system/Patient.rs"
    assert str(parse_scope("system/*.*")) == "system/*.cruds"


def test_parse_scopes_list_and_string() -> None:
    assert parse_scopes("system/Patient.rs  system/*.c") == parse_scopes(["system/Patient.rs", "system/*.c"])
    with pytest.raises(ScopeError):
        parse_scopes("system/Patient.rs user/Patient.rs")


@pytest.mark.parametrize(
    ("granted", "rtype", "interaction", "expected"),
    [
        ("system/Patient.cruds", "Patient", "c", True),
        ("system/Patient.cruds", "Patient", "d", True),
        ("system/Patient.cruds", "Observation", "r", False),
        ("system/Patient.rs", "Patient", "r", True),
        ("system/Patient.rs", "Patient", "s", True),
        ("system/Patient.rs", "Patient", "u", False),
        ("system/Patient.rs", "Patient", "c", False),
        ("system/Patient.r", "Patient", "s", False),
        ("system/Patient.s", "Patient", "r", False),
        ("system/Patient.read", "Patient", "r", True),
        ("system/Patient.read", "Patient", "s", True),
        ("system/Patient.read", "Patient", "c", False),
        ("system/Patient.write", "Patient", "c", True),
        ("system/Patient.write", "Patient", "u", True),
        ("system/Patient.write", "Patient", "d", True),
        ("system/Patient.write", "Patient", "r", False),
        ("system/Patient.*", "Patient", "d", True),
        ("system/*.rs", "Observation", "r", True),
        ("system/*.rs", "Observation", "c", False),
        ("system/*.*", "AuditEvent", "d", True),
        ("system/*.cruds", "QuestionnaireResponse", "u", True),
        ("system/*.read system/Observation.c", "Observation", "c", True),
        ("system/*.read system/Observation.c", "Patient", "c", False),
        ("", "Patient", "r", False),
        ("system/*.cruds", "Patient", "x", False),  # not an interaction letter
        ("system/*.cruds", "Patient", "", False),
    ],
)
def test_allows(granted: str, rtype: str, interaction: str, expected: bool) -> None:
    assert allows(parse_scopes(granted), rtype, interaction) is expected


def test_all_scopes_for_api_keys() -> None:
    for letter in "cruds":
        assert allows(ALL_SCOPES, "Patient", letter)


@pytest.mark.parametrize(
    ("requested", "allowed", "granted", "refused"),
    [
        # wholly covered: granted as written (v1 text stays v1)
        ("system/Patient.rs", "system/*.cruds", "system/Patient.rs", ()),
        ("system/Patient.read", "system/Patient.rs", "system/Patient.read", ()),
        ("system/*.rs", "system/*.*", "system/*.rs", ()),
        # partly covered: narrowed to the covered part, in v2 form
        ("system/Patient.cruds", "system/Patient.rs", "system/Patient.rs", ()),
        ("system/Patient.*", "system/*.read", "system/Patient.rs", ()),
        (
            "system/*.rs",
            "system/Patient.rs system/Observation.r",
            "system/Observation.r system/Patient.rs",
            (),
        ),
        ("system/*.cruds", "system/*.s system/Patient.rs", "system/*.s system/Patient.rs", ()),
        # not covered at all / not grantable: left out (a subset is granted)
        (
            "system/Patient.rs system/Observation.c",
            "system/Patient.rs",
            "system/Patient.rs",
            ("system/Observation.c",),
        ),
        ("user/Patient.rs system/Patient.r", "system/*.*", "system/Patient.r", ("user/Patient.rs",)),
        ("openid system/Patient.r", "system/*.*", "system/Patient.r", ("openid",)),
        ("system/Observation.c", "system/Patient.rs", "", ("system/Observation.c",)),
        ("patient/*.read", "system/*.*", "", ("patient/*.read",)),
        # duplicates collapse; a narrowed part already granted is not repeated
        ("system/Patient.r system/Patient.r", "system/*.*", "system/Patient.r", ()),
        ("system/Patient.rs system/*.rs", "system/Patient.rs", "system/Patient.rs", ()),
    ],
)
def test_grant(requested: str, allowed: str, granted: str, refused: tuple[str, ...]) -> None:
    result = grant(requested, parse_scopes(allowed))
    assert result.scope == granted
    assert result.refused == refused
    # nothing beyond the allowed set is ever granted
    for scope in result.scopes:
        for letter in scope.interactions:
            rtype = "SomeType" if scope.resource_type == "*" else scope.resource_type
            assert allows(parse_scopes(allowed), rtype, letter)


def test_www_authenticate() -> None:
    assert www_authenticate() == 'Bearer realm="cocm-api"'
    assert (
        www_authenticate("insufficient_scope", scope="system/Patient.u")
        == 'Bearer realm="cocm-api", error="insufficient_scope", scope="system/Patient.u"'
    )
    assert '"' not in www_authenticate("invalid_token", 'bad "quoted"').split("error_description=")[1][1:-1]
