"""SMART Backend Services: discovery, the token endpoint (private_key_jwt with RS384/ES384), the
used-jti stores, the access tokens and ``authenticate_bearer``.

The router is mounted on a small FastAPI app with the registry and keys written to tmp_path."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from fastapi import FastAPI
from fastapi.testclient import TestClient
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from app.auth.models import SmartJti
from app.auth.routes import router
from app.auth.scopes import parse_scopes
from app.auth.smart import (
    ACCESS_TOKEN_AUDIENCE,
    ACCESS_TOKEN_ISSUER,
    ASSERTION_TYPE,
    ClientRegistry,
    SmartConfig,
    SmartConfigError,
    SqlJtiStore,
    TokenIdentity,
    authenticate_bearer,
    issue_access_token,
    load_smart_server,
    verify_access_token,
)
from tests.auth.jti import MemoryJtiStore

SECRET = "s" * 40
BASE = "http://testserver"
TOKEN_URL = f"{BASE}/auth/token"
PUBLIC_BASE = "https://cocm.example.org"
FORM = "application/x-www-form-urlencoded"

RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP384R1())
OTHER_RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def public_jwk(key: Any, kid: str, **extra: Any) -> dict[str, Any]:
    if isinstance(key, rsa.RSAPrivateKey):
        jwk: dict[str, Any] = RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    else:
        jwk = ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
    return {**jwk, "kid": kid, **extra}


@pytest.fixture
def registry_file(tmp_path: Path) -> Path:
    (tmp_path / "ec.jwks.json").write_text(json.dumps({"keys": [public_jwk(EC_KEY, "ec1", alg="ES384")]}))
    path = tmp_path / "clients.json"
    path.write_text(
        json.dumps(
            {
                "clients": [
                    {
                        "client_id": "rsa-client",
                        "tenant": "clinic-a",
                        "scopes": "system/*.rs system/Observation.c",
                        "jwks": {"keys": [public_jwk(RSA_KEY, "rsa1", use="sig")]},
                    },
                    {
                        "client_id": "ec-client",
                        "tenant": "clinic-b",
                        "scopes": ["system/*.cruds"],
                        "jwks_path": "ec.jwks.json",
                    },
                ]
            }
        )
    )
    return path


@pytest.fixture
def config(registry_file: Path) -> SmartConfig:
    return SmartConfig(
        smart_clients_file=str(registry_file), token_secret=SECRET, public_base_url=PUBLIC_BASE
    )


@pytest.fixture
def client(config: SmartConfig) -> TestClient:
    app = FastAPI()
    app.include_router(router)
    app.state.smart_server = load_smart_server(config)
    app.state.jti_store = MemoryJtiStore()
    return TestClient(app)


def assertion(
    key: Any = RSA_KEY,
    *,
    alg: str = "RS384",
    kid: str | None = "rsa1",
    client_id: str = "rsa-client",
    drop: tuple[str, ...] = (),
    **claims: Any,
) -> str:
    now = int(time.time())
    payload: dict[str, Any] = {
        "iss": client_id,
        "sub": client_id,
        "aud": TOKEN_URL,
        "exp": now + 240,
        "iat": now,
        "jti": uuid.uuid4().hex,
        **claims,
    }
    for name in drop:
        payload.pop(name)
    headers = {"kid": kid} if kid is not None else {}
    return jwt.encode(payload, key, algorithm=alg, headers=headers)


def token_form(client_assertion: str, scope: str = "system/Patient.rs", **extra: str) -> dict[str, str]:
    return {
        "grant_type": "client_credentials",
        "scope": scope,
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": client_assertion,
        **extra,
    }


def post_token(client: TestClient, form: dict[str, str]) -> Any:
    return client.post("/auth/token", data=form)


def granted(response: Any, config: SmartConfig) -> TokenIdentity:
    """An accepted token request: 200, and the token it issued names rsa-client's tenant and the
    scope the response says was granted."""
    assert response.status_code == 200, response.text
    identity = authenticate_bearer(response.json()["access_token"], config)
    assert identity is not None
    assert (identity.tenant, identity.client_id) == ("clinic-a", "rsa-client")
    assert identity.scopes == parse_scopes(response.json()["scope"])
    return identity


# --- discovery -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/.well-known/smart-configuration", "/fhir/.well-known/smart-configuration"]
)
def test_smart_configuration(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 200
    body = response.json()
    assert body["token_endpoint"] == f"{PUBLIC_BASE}/auth/token"
    assert body["token_endpoint_auth_methods_supported"] == ["private_key_jwt"]
    assert body["token_endpoint_auth_signing_alg_values_supported"] == ["RS384", "ES384"]
    assert body["grant_types_supported"] == ["client_credentials"]
    assert "client-confidential-asymmetric" in body["capabilities"]
    assert "system/*.rs" in body["scopes_supported"]


def test_smart_configuration_without_public_base_uses_the_request_url() -> None:
    app = FastAPI()
    app.include_router(router)
    body = TestClient(app).get("/.well-known/smart-configuration").json()
    assert body["token_endpoint"] == TOKEN_URL


# --- good token requests -------------------------------------------------------------------------


def test_rs384_assertion_gets_a_token(client: TestClient, config: SmartConfig) -> None:
    response = post_token(client, token_form(assertion(), "system/Patient.rs system/Observation.c"))
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 300
    assert body["scope"] == "system/Patient.rs system/Observation.c"
    claims = jwt.decode(
        body["access_token"],
        SECRET,
        algorithms=["HS256"],
        audience=ACCESS_TOKEN_AUDIENCE,
        issuer=ACCESS_TOKEN_ISSUER,
    )
    assert claims["tenant"] == "clinic-a"
    assert claims["client_id"] == claims["sub"] == "rsa-client"
    assert claims["scope"] == body["scope"]
    assert claims["exp"] - claims["iat"] == 300

    identity = authenticate_bearer(body["access_token"], config)
    assert identity == TokenIdentity("clinic-a", "rsa-client", parse_scopes(body["scope"]))
    tenant, client_id, scopes = identity
    assert (tenant, client_id) == ("clinic-a", "rsa-client")
    assert scopes == parse_scopes("system/Patient.rs system/Observation.c")


def test_es384_assertion_with_jwks_file(client: TestClient, config: SmartConfig) -> None:
    form = token_form(assertion(EC_KEY, alg="ES384", kid="ec1", client_id="ec-client"), "system/*.cruds")
    response = post_token(client, form)
    assert response.status_code == 200, response.text
    identity = authenticate_bearer(response.json()["access_token"], config)
    assert identity is not None
    assert identity.tenant == "clinic-b"
    assert identity.scopes == parse_scopes("system/*.cruds")


def test_aud_may_be_the_public_token_url(client: TestClient, config: SmartConfig) -> None:
    response = post_token(client, token_form(assertion(aud=f"{PUBLIC_BASE}/auth/token")))
    assert granted(response, config).scopes == parse_scopes("system/Patient.rs")


def test_aud_as_a_list_containing_the_token_url(client: TestClient, config: SmartConfig) -> None:
    response = post_token(client, token_form(assertion(aud=["https://elsewhere", TOKEN_URL])))
    assert granted(response, config).scopes == parse_scopes("system/Patient.rs")


def test_matching_client_id_parameter_is_accepted(client: TestClient, config: SmartConfig) -> None:
    response = post_token(client, token_form(assertion(), client_id="rsa-client"))
    assert granted(response, config).scopes == parse_scopes("system/Patient.rs")


def test_clock_skew_is_tolerated(client: TestClient, config: SmartConfig) -> None:
    now = int(time.time())
    cases: list[dict[str, Any]] = [
        {"exp": now + 300},
        {"exp": now + 310, "iat": now + 10},
        {"exp": now - 5, "iat": now - 200},
    ]
    for claims in cases:
        response = post_token(client, token_form(assertion(**claims)))
        assert granted(response, config).scopes == parse_scopes("system/Patient.rs"), claims


def test_assertion_without_iat_is_accepted(client: TestClient, config: SmartConfig) -> None:
    response = post_token(client, token_form(assertion(drop=("iat",))))
    assert granted(response, config).scopes == parse_scopes("system/Patient.rs")


def test_token_lifetime_setting(registry_file: Path) -> None:
    app = FastAPI()
    app.include_router(router)
    app.state.smart_server = load_smart_server(
        SmartConfig(str(registry_file), SECRET, token_lifetime_seconds=120)
    )
    app.state.jti_store = MemoryJtiStore()
    response = post_token(TestClient(app), token_form(assertion()))
    assert response.json()["expires_in"] == 120
    claims = jwt.decode(response.json()["access_token"], options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 120


# --- scopes --------------------------------------------------------------------------------------


def test_scope_subset_is_granted(client: TestClient, config: SmartConfig) -> None:
    """SMART: the server may grant a subset of the requested scopes; the response says which."""
    response = post_token(
        client, token_form(assertion(), "system/Patient.cruds system/Encounter.d user/Patient.rs openid")
    )
    assert response.json()["scope"] == "system/Patient.rs"
    assert granted(response, config).scopes == parse_scopes("system/Patient.rs")


def test_wildcard_request_narrowed_to_allowed(client: TestClient, config: SmartConfig) -> None:
    response = post_token(client, token_form(assertion(), "system/*.*"))
    assert response.json()["scope"] == "system/*.rs system/Observation.c"
    assert granted(response, config).scopes == parse_scopes("system/*.rs system/Observation.c")


def test_v1_scope_granted_as_written(client: TestClient, config: SmartConfig) -> None:
    response = post_token(client, token_form(assertion(), "system/Patient.read"))
    assert response.json()["scope"] == "system/Patient.read"
    assert granted(response, config).scopes == parse_scopes("system/Patient.read")


@pytest.mark.parametrize("scope", ["system/Patient.cud", "user/*.read", "patient/Patient.rs", "openid"])
def test_nothing_grantable_is_invalid_scope(client: TestClient, scope: str) -> None:
    response = post_token(client, token_form(assertion(), scope))
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_scope"


# --- bad requests --------------------------------------------------------------------------------


def test_bad_grant_type(client: TestClient) -> None:
    response = post_token(client, {**token_form(assertion()), "grant_type": "authorization_code"})
    assert response.status_code == 400
    assert response.json()["error"] == "unsupported_grant_type"
    assert response.headers["cache-control"] == "no-store"


@pytest.mark.parametrize("missing", ["grant_type", "scope", "client_assertion_type", "client_assertion"])
def test_missing_parameter(client: TestClient, missing: str) -> None:
    form = token_form(assertion())
    del form[missing]
    response = post_token(client, form)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
    assert missing in response.json()["error_description"]


def test_wrong_assertion_type(client: TestClient) -> None:
    form = {
        **token_form(assertion()),
        "client_assertion_type": "urn:ietf:params:oauth:grant-type:saml2-bearer",
    }
    response = post_token(client, form)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


def test_repeated_parameter(client: TestClient) -> None:
    body = "&".join(f"{k}={v}" for k, v in token_form(assertion()).items()) + "&scope=system/*.rs"
    response = client.post("/auth/token", content=body, headers={"Content-Type": FORM})
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


def test_json_body_is_not_a_token_request(client: TestClient) -> None:
    response = client.post("/auth/token", json=token_form(assertion()))
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


def test_oversized_request(client: TestClient) -> None:
    response = post_token(client, token_form("x" * 70_000))
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


def test_no_clients_configured() -> None:
    app = FastAPI()
    app.include_router(router)
    response = post_token(TestClient(app), token_form(assertion()))
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


# --- bad assertions: all 401 invalid_client -------------------------------------------------------


def hmac_with_public_pem() -> str:
    """The algorithm-confusion attack: HMAC keyed with the registered public key's PEM (built by
    hand: PyJWT refuses to make one)."""
    pem = RSA_KEY.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    claims = {
        "iss": "rsa-client",
        "sub": "rsa-client",
        "aud": TOKEN_URL,
        "exp": int(time.time()) + 60,
        "jti": "z",
    }
    signing_input = b".".join(
        jwt.utils.base64url_encode(json.dumps(part).encode())
        for part in ({"alg": "HS384", "kid": "rsa1", "typ": "JWT"}, claims)
    )
    signature = jwt.utils.base64url_encode(hmac.new(pem, signing_input, hashlib.sha384).digest())
    return (signing_input + b"." + signature).decode()


BAD_ASSERTIONS: dict[str, Callable[[], str]] = {
    "HS256": lambda: assertion(SECRET, alg="HS256"),
    "HS384 keyed with the public key PEM": hmac_with_public_pem,
    "none": lambda: jwt.encode(
        {
            "iss": "rsa-client",
            "sub": "rsa-client",
            "aud": TOKEN_URL,
            "exp": int(time.time()) + 60,
            "jti": "y",
        },
        "",
        algorithm="none",
        headers={"kid": "rsa1"},
    ),
    "RS256": lambda: assertion(alg="RS256"),
    "ES384 header on the RSA key's kid": lambda: assertion(EC_KEY, alg="ES384", kid="rsa1"),
    "no kid": lambda: assertion(kid=None),
    "unknown kid": lambda: assertion(kid="rsa2"),
    "key not in the JWKS": lambda: assertion(OTHER_RSA_KEY),
    "another client's key": lambda: assertion(EC_KEY, alg="ES384", kid="ec1", client_id="rsa-client"),
    "unknown client": lambda: assertion(client_id="nobody"),
    "sub is not iss": lambda: assertion(sub="someone-else"),
    "no sub": lambda: assertion(drop=("sub",)),
    "no iss": lambda: assertion(drop=("iss",)),
    "wrong aud": lambda: assertion(aud="https://evil.example/auth/token"),
    "aud is the FHIR base": lambda: assertion(aud=f"{BASE}/fhir"),
    "no aud": lambda: assertion(drop=("aud",)),
    "exp more than 5 minutes ahead": lambda: assertion(exp=int(time.time()) + 600),
    "no exp": lambda: assertion(drop=("exp",)),
    "expired": lambda: assertion(exp=int(time.time()) - 120, iat=int(time.time()) - 300),
    "iat in the future": lambda: assertion(iat=int(time.time()) + 120),
    "nbf in the future": lambda: assertion(nbf=int(time.time()) + 120),
    "no jti": lambda: assertion(drop=("jti",)),
    "empty jti": lambda: assertion(jti=""),
    "numeric jti": lambda: assertion(jti=12345),
    "not a JWT": lambda: "not.a.jwt",
}


EXPECTED_REASON = {
    "HS256": "alg must be RS384 or ES384",
    "HS384 keyed with the public key PEM": "alg must be RS384 or ES384",
    "none": "alg must be RS384 or ES384",
    "RS256": "alg must be RS384 or ES384",
    "ES384 header on the RSA key's kid": "no registered ES384 key",
    "no kid": "kid",
    "unknown kid": "no registered RS384 key with kid 'rsa2'",
    "key not in the JWKS": "signature does not verify",
    "another client's key": "no registered ES384 key",
    "unknown client": "unknown client",
    "sub is not iss": "iss and sub",
    "no sub": "no sub claim",
    "no iss": "no iss",
    "wrong aud": "aud must be the token endpoint URL",
    "aud is the FHIR base": "aud must be the token endpoint URL",
    "no aud": "no aud claim",
    "exp more than 5 minutes ahead": "at most 300 s",
    "no exp": "no exp claim",
    "expired": "expired",
    "iat in the future": "in the future",
    "nbf in the future": "in the future",
    "no jti": "no jti claim",
    "empty jti": "jti must be a string",
    "numeric jti": "JWT ID must be a string",
    "not a JWT": "not a signed JWT",
}


def test_every_bad_assertion_has_a_reason() -> None:
    assert set(EXPECTED_REASON) == set(BAD_ASSERTIONS)


@pytest.mark.parametrize("case", list(BAD_ASSERTIONS))
def test_bad_assertion_is_invalid_client(client: TestClient, case: str) -> None:
    response = post_token(client, token_form(BAD_ASSERTIONS[case]()))
    assert response.status_code == 401, (case, response.text)
    body = response.json()
    assert EXPECTED_REASON[case] in body["error_description"], (case, body)
    assert body["error"] == "invalid_client", (case, body)
    assert body["error_description"]
    assert "access_token" not in body


def test_tampered_assertion(client: TestClient) -> None:
    header, payload, signature = assertion().split(".")
    claims = json.loads(jwt.utils.base64url_decode(payload))
    claims["sub"] = claims["iss"] = "ec-client"
    forged = jwt.utils.base64url_encode(json.dumps(claims).encode()).decode()
    response = post_token(client, token_form(f"{header}.{forged}.{signature}"))
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


def test_client_id_parameter_must_match(client: TestClient) -> None:
    response = post_token(client, token_form(assertion(), client_id="ec-client"))
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


def test_replayed_jti_is_refused(client: TestClient) -> None:
    signed = assertion()
    assert post_token(client, token_form(signed)).status_code == 200
    again = post_token(client, token_form(signed))
    assert again.status_code == 401
    assert again.json()["error"] == "invalid_client"
    assert "jti" in again.json()["error_description"]
    # a fresh assertion reusing the jti is refused too
    jti = jwt.decode(signed, options={"verify_signature": False})["jti"]
    assert post_token(client, token_form(assertion(jti=jti))).status_code == 401
    # the same jti from another client is that client's own
    other = assertion(EC_KEY, alg="ES384", kid="ec1", client_id="ec-client", jti=jti)
    assert post_token(client, token_form(other)).status_code == 200


# --- access tokens and authenticate_bearer -------------------------------------------------------


def test_authenticate_bearer_rejects_expired_token(config: SmartConfig) -> None:
    token = issue_access_token(SECRET, "clinic-a", "rsa-client", "system/*.rs", 300, now=time.time() - 301)
    assert authenticate_bearer(token, config) is None
    fresh = issue_access_token(SECRET, "clinic-a", "rsa-client", "system/*.rs", 300)
    assert authenticate_bearer(fresh, config) == TokenIdentity(
        "clinic-a", "rsa-client", parse_scopes("system/*.rs")
    )


def _resign(token: str, secret: str, alg: str = "HS256", **changes: Any) -> str:
    decoded = jwt.decode_complete(token, options={"verify_signature": False})
    claims = {**decoded["payload"], **changes}
    for name in [k for k, v in changes.items() if v is None]:
        claims.pop(name)
    return jwt.encode(claims, secret, algorithm=alg, headers={"typ": decoded["header"].get("typ")})


def test_authenticate_bearer_rejects_tampered_tokens(config: SmartConfig) -> None:
    token = issue_access_token(SECRET, "clinic-a", "rsa-client", "system/Patient.r", 300)
    header, payload, signature = token.split(".")
    claims = json.loads(jwt.utils.base64url_decode(payload))
    claims["tenant"] = "clinic-b"
    forged = jwt.utils.base64url_encode(json.dumps(claims).encode()).decode()
    assert authenticate_bearer(f"{header}.{forged}.{signature}", config) is None
    assert authenticate_bearer(f"{header}.{payload}.{signature[:-2]}AA", config) is None
    assert authenticate_bearer(_resign(token, "x" * 40, tenant="clinic-b"), config) is None
    assert authenticate_bearer(_resign(token, "", alg="none"), config) is None
    assert authenticate_bearer(_resign(token, SECRET, aud="other"), config) is None
    assert authenticate_bearer(_resign(token, SECRET, iss="other"), config) is None
    assert authenticate_bearer(_resign(token, SECRET, tenant=None), config) is None
    assert authenticate_bearer(_resign(token, SECRET, scope="user/Patient.rs"), config) is None
    assert authenticate_bearer(_resign(token, SECRET, sub="ec-client"), config) is None
    # a client assertion is not an access token
    assert authenticate_bearer(assertion(), config) is None
    # the untouched token still works
    assert authenticate_bearer(_resign(token, SECRET), config) is not None


def test_authenticate_bearer_requires_the_at_jwt_type(config: SmartConfig) -> None:
    token = issue_access_token(SECRET, "clinic-a", "rsa-client", "system/Patient.r", 300)
    claims = jwt.decode(token, options={"verify_signature": False})
    assert authenticate_bearer(jwt.encode(claims, SECRET, algorithm="HS256"), config) is None


@pytest.mark.parametrize("token", ["", "an-api-key", "a.b", "a.b.c", "...."])
def test_authenticate_bearer_ignores_non_tokens(config: SmartConfig, token: str) -> None:
    assert authenticate_bearer(token, config) is None


def test_authenticate_bearer_without_secret(config: SmartConfig) -> None:
    token = issue_access_token(SECRET, "clinic-a", "rsa-client", "system/Patient.r", 300)
    assert authenticate_bearer(token, SmartConfig()) is None
    assert authenticate_bearer(token, SmartConfig(token_secret="short")) is None
    assert verify_access_token(token, SECRET) == TokenIdentity(
        "clinic-a", "rsa-client", parse_scopes("system/Patient.r")
    )


# --- jti stores ----------------------------------------------------------------------------------


def test_memory_jti_store() -> None:
    store = MemoryJtiStore()
    later = datetime.now(UTC) + timedelta(minutes=10)
    assert store.remember("j1", "c1", later)
    assert not store.remember("j1", "c1", later)
    assert store.remember("j1", "c2", later)
    assert store.remember("j2", "c1", datetime.now(UTC) - timedelta(seconds=1))
    assert store.remember("j2", "c1", later)  # the first one had lapsed and was forgotten


def test_sql_jti_store(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'jti.db'}")
    SmartJti.metadata.tables["smart_jti"].create(engine)
    later = datetime.now(UTC) + timedelta(minutes=10)
    with Session(engine) as session:
        store = SqlJtiStore(session)
        assert store.remember("j1", "c1", later)
        assert not store.remember("j1", "c1", later)
        assert store.remember("j1", "c2", later)
        assert store.remember("old", "c1", datetime.now(UTC) - timedelta(seconds=1))
    with Session(engine) as session:  # another worker sees the same rows
        store = SqlJtiStore(session)
        assert not store.remember("j1", "c1", later)
        assert store.remember("j3", "c1", later)  # and purges the lapsed row
        rows = set(session.execute(select(SmartJti.client_id, SmartJti.jti)).all())
    assert rows == {("c1", "j1"), ("c2", "j1"), ("c1", "j3")}
    with Session(engine) as session, session.begin():  # inside the caller's transaction
        store = SqlJtiStore(session)
        assert not store.remember("j3", "c1", later)
        assert store.remember("j4", "c1", later)
    with Session(engine) as session:
        assert session.get(SmartJti, ("c1", "j4")) is not None
    engine.dispose()


def test_token_endpoint_with_sql_jti_store(config: SmartConfig, tmp_path: Path) -> None:
    from sqlalchemy.orm import sessionmaker

    engine = create_engine(f"sqlite:///{tmp_path / 'jti.db'}")
    SmartJti.metadata.tables["smart_jti"].create(engine)
    app = FastAPI()
    app.include_router(router)
    app.state.smart_server = load_smart_server(config)
    app.state.sessionmaker = sessionmaker(engine)
    client = TestClient(app)
    signed = assertion()
    assert post_token(client, token_form(signed)).status_code == 200
    assert post_token(client, token_form(signed)).status_code == 401
    engine.dispose()


# --- configuration -------------------------------------------------------------------------------


def _write_registry(tmp_path: Path, clients: Any) -> str:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(clients))
    return str(path)


def _client(**changes: Any) -> dict[str, Any]:
    entry = {
        "client_id": "c",
        "tenant": "t",
        "scopes": "system/*.rs",
        "jwks": {"keys": [public_jwk(RSA_KEY, "k1")]},
    }
    entry.update(changes)
    return {key: value for key, value in entry.items() if value is not None}


@pytest.mark.parametrize(
    ("clients", "message"),
    [
        ([_client(), _client()], "listed twice"),
        ([_client(scopes="user/*.rs")], "not granted"),
        ([_client(scopes="")], "no scopes"),
        ([_client(tenant=None)], "tenant"),
        ([_client(jwks=None)], "exactly one"),
        ([_client(jwks_path="x.json")], "exactly one"),
        ([_client(jwks_url="https://x")], "jwks_url"),
        ([_client(jwks={"keys": [{**public_jwk(RSA_KEY, "k1"), "d": "AAAA"}]})], "private"),
        ([_client(jwks={"keys": [{**public_jwk(RSA_KEY, "k1"), "alg": "RS256"}]})], "no usable"),
        ([_client(jwks={"keys": [public_jwk(RSA_KEY, "k1"), public_jwk(EC_KEY, "k1")]})], "not unique"),
        ([_client(jwks={"keys": [{**public_jwk(RSA_KEY, "k1"), "kid": None}]})], "kid"),
        (
            [
                _client(
                    jwks={
                        "keys": [
                            public_jwk(rsa.generate_private_key(public_exponent=65537, key_size=1024), "k")
                        ]
                    }
                )
            ],
            "2048",
        ),
        (
            [_client(jwks={"keys": [public_jwk(ec.generate_private_key(ec.SECP256R1()), "k")]})],
            "no usable",
        ),
        ([_client(jwks={"keys": [{"kty": "RSA", "kid": "k", "n": "!!", "e": "AQAB"}]})], "not a valid JWK"),
        ({"client": []}, "clients"),
    ],
)
def test_bad_registry(tmp_path: Path, clients: Any, message: str) -> None:
    with pytest.raises(SmartConfigError, match=message):
        ClientRegistry.load(_write_registry(tmp_path, clients))


def test_registry_as_a_bare_list_and_skipped_keys(tmp_path: Path) -> None:
    keys = [
        public_jwk(RSA_KEY, "enc", use="enc"),
        public_jwk(EC_KEY, "sig1"),
        public_jwk(OTHER_RSA_KEY, "sig2"),
    ]
    registry = ClientRegistry.load(_write_registry(tmp_path, [_client(jwks={"keys": keys})]))
    client = registry.get("c")
    assert client is not None
    assert [(k.kid, k.algorithm) for k in client.keys] == [("sig1", "ES384"), ("sig2", "RS384")]


def test_missing_registry_file(tmp_path: Path) -> None:
    with pytest.raises(SmartConfigError, match="cannot read"):
        load_smart_server(SmartConfig(str(tmp_path / "none.json"), SECRET))


@pytest.mark.parametrize("secret", [None, "", "too-short"])
def test_token_secret_required(registry_file: Path, secret: str | None) -> None:
    with pytest.raises(SmartConfigError, match="COCM_TOKEN_SECRET"):
        load_smart_server(SmartConfig(str(registry_file), secret))


def test_no_registry_no_server() -> None:
    assert load_smart_server(SmartConfig()) is None
    assert load_smart_server(SmartConfig(smart_clients_file="  ", token_secret=None)) is None


def test_registry_reloaded_when_changed(client: TestClient, registry_file: Path) -> None:
    assert post_token(client, token_form(assertion(client_id="new-client"))).status_code == 401
    data = json.loads(registry_file.read_text())
    data["clients"].append(
        {
            "client_id": "new-client",
            "tenant": "clinic-c",
            "scopes": "system/*.rs",
            "jwks": {"keys": [public_jwk(RSA_KEY, "rsa1")]},
        }
    )
    registry_file.write_text(json.dumps(data))
    response = post_token(client, token_form(assertion(client_id="new-client")))
    assert response.status_code == 200, response.text
    # a broken edit keeps the last good registry
    registry_file.write_text("{not json")
    assert post_token(client, token_form(assertion(client_id="new-client"))).status_code == 200
