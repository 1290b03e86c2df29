"""SMART on FHIR Backend Services (SMART App Launch 2.x, "Backend Services"): the client registry,
the check of a client's signed assertion, the used-``jti`` store, and the access tokens.

Every JOSE step (reading a JWT header, building keys from JWKs, checking signatures and claims,
signing access tokens) is PyJWT's; this module only chooses what to accept.

**Client registry** (``COCM_SMART_CLIENTS_FILE``), a JSON file::

    {"clients": [
      {"client_id": "ehr-vendor-1", "tenant": "clinic-a", "scopes": "system/*.rs system/Observation.c",
       "jwks": {"keys": [...]}},
      {"client_id": "ehr-vendor-2", "tenant": "clinic-b", "scopes": ["system/*.cruds"],
       "jwks_path": "keys/vendor-2.jwks.json"}
    ]}

(a bare list of clients is accepted too). ``scopes`` are the scopes the client may be granted;
``jwks`` is the client's public JWK Set inline, ``jwks_path`` a file holding it (relative to the
registry file). Keys must be public RSA (>= 2048 bits, used with RS384) or EC P-384 (ES384) keys
with a ``kid``; keys for other algorithms or for encryption are skipped; a private key, a
duplicate ``kid`` or a client with no usable key stops start-up (``SmartConfigError``). The files
are re-read when their modification time changes (key rotation without a restart); a re-read
that fails keeps the previous registry and logs why.

**Client assertion** (``private_key_jwt``): header ``alg`` RS384 or ES384 and a ``kid`` naming a
registered key of the client; ``iss`` == ``sub`` == the client_id; ``aud`` the token endpoint's
URL (as the request reached it, or under ``COCM_PUBLIC_BASE_URL``); ``exp`` present and at most
300 s ahead; ``iat``/``nbf`` if present not in the future; a ``jti`` not seen before for that client.
Clocks may differ by ``CLOCK_SKEW_SECONDS``. Any failure is ``invalid_client`` (RFC 7521 §4.2).
A ``jku`` header is ignored: keys come only from the registry, never fetched.

**Access tokens**: JWTs signed HS256 with ``COCM_TOKEN_SECRET`` (at least 32 bytes, shared by all
workers), header ``typ`` ``at+jwt``, claims ``iss``/``aud`` ``cocm-api``, ``sub`` and
``client_id`` the client, ``tenant``, ``scope`` (the granted scopes), ``iat``, ``exp`` (lifetime
``COCM_TOKEN_LIFETIME_SECONDS``, default 300), ``jti``. They are not stored; they cannot be revoked
before they expire (hence the short life).
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.exceptions import InvalidSubjectError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.auth.models import CLIENT_ID, JTI, SmartJti
from app.auth.scopes import Scope, ScopeError, grant, parse_scopes
from app.store.db import WRITE_OPTION

log = logging.getLogger("cocm.auth")

TOKEN_PATH = "/auth/token"  # noqa: S105 - not a secret
GRANT_TYPE = "client_credentials"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_ALGORITHMS = ("RS384", "ES384")
MAX_ASSERTION_LIFETIME_SECONDS = 300
CLOCK_SKEW_SECONDS = 30
MIN_RSA_BITS = 2048
PRIVATE_JWK_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "oth", "k")

ACCESS_TOKEN_ALGORITHM = "HS256"  # noqa: S105 - not a secret
ACCESS_TOKEN_TYPE = "at+jwt"  # noqa: S105 - not a secret
ACCESS_TOKEN_ISSUER = "cocm-api"  # noqa: S105 - not a secret
ACCESS_TOKEN_AUDIENCE = "cocm-api"  # noqa: S105 - not a secret
MIN_SECRET_BYTES = 32
DEFAULT_TOKEN_LIFETIME_SECONDS = 300


class SmartSettings(Protocol):
    """The settings this module reads (``app.settings.Settings`` once the fields are added)."""

    @property
    def smart_clients_file(self) -> str | None: ...

    @property
    def token_secret(self) -> str | None: ...

    @property
    def token_lifetime_seconds(self) -> int: ...

    @property
    def public_base_url(self) -> str | None: ...


@dataclass(frozen=True)
class SmartConfig:
    """A plain ``SmartSettings`` (tests, scripts)."""

    smart_clients_file: str | None = None
    token_secret: str | None = None
    token_lifetime_seconds: int = DEFAULT_TOKEN_LIFETIME_SECONDS
    public_base_url: str | None = None


class SmartConfigError(ValueError):
    """The SMART configuration (registry, keys, secret) is unusable; the message is one line."""


class OAuthError(Exception):
    """An OAuth 2.0 token-endpoint error (RFC 6749 §5.2): 401 for ``invalid_client``, else 400."""

    def __init__(self, error: str, description: str) -> None:
        super().__init__(description)
        self.error = error
        self.description = description

    @property
    def status_code(self) -> int:
        return 401 if self.error == "invalid_client" else 400

    def body(self) -> dict[str, str]:
        return {"error": self.error, "error_description": self.description}


# --- client registry ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ClientKey:
    kid: str
    algorithm: str  # RS384 or ES384
    key: Any  # a cryptography public key, as PyJWK built it


@dataclass(frozen=True)
class Client:
    client_id: str
    tenant: str
    allowed: tuple[Scope, ...]
    keys: tuple[ClientKey, ...]

    def key(self, kid: str, algorithm: str) -> ClientKey | None:
        for key in self.keys:
            if key.kid == kid and key.algorithm == algorithm:
                return key
        return None


def load_jwks(data: Any, source: str) -> tuple[ClientKey, ...]:
    """The usable signing keys of a public JWK Set (see the module docstring for the rules)."""
    if not isinstance(data, Mapping) or not isinstance(data.get("keys"), list):
        raise SmartConfigError(f"{source}: a JWK Set must be an object with a 'keys' list")
    keys: list[ClientKey] = []
    kids: set[str] = set()
    for index, jwk in enumerate(data["keys"]):
        where = f"{source}: key {index}"
        if not isinstance(jwk, Mapping):
            raise SmartConfigError(f"{where} is not an object")
        if any(member in jwk for member in PRIVATE_JWK_MEMBERS):
            raise SmartConfigError(
                f"{where} holds private or symmetric key material; register public keys only"
            )
        kid = jwk.get("kid")
        if not isinstance(kid, str) or not kid:
            raise SmartConfigError(f"{where} has no 'kid'")
        if kid in kids:
            raise SmartConfigError(f"{where}: kid {kid!r} is not unique in the set")
        kids.add(kid)
        algorithm = _signing_algorithm(jwk)
        if algorithm is None:
            log.info("%s (kid %r): not an RS384/ES384 signing key; skipped", where, kid)
            continue
        try:
            built = jwt.PyJWK(dict(jwk), algorithm=algorithm)
        except jwt.PyJWTError as exc:
            raise SmartConfigError(f"{where} (kid {kid!r}) is not a valid JWK: {exc}") from None
        if isinstance(built.key, rsa.RSAPublicKey) and built.key.key_size < MIN_RSA_BITS:
            raise SmartConfigError(f"{where} (kid {kid!r}): RSA keys must have at least {MIN_RSA_BITS} bits")
        keys.append(ClientKey(kid, algorithm, built.key))
    return tuple(keys)


def _signing_algorithm(jwk: Mapping[str, Any]) -> str | None:
    if jwk.get("use") not in (None, "sig"):
        return None
    ops = jwk.get("key_ops")
    if ops is not None and (not isinstance(ops, list) or "verify" not in ops):
        return None
    kty, alg = jwk.get("kty"), jwk.get("alg")
    if kty == "RSA" and alg in (None, "RS384"):
        return "RS384"
    if kty == "EC" and jwk.get("crv") == "P-384" and alg in (None, "ES384"):
        return "ES384"
    return None


class _ClientEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    client_id: str = Field(min_length=1, max_length=CLIENT_ID)
    tenant: str = Field(min_length=1, max_length=64)
    scopes: str | list[str]
    jwks: dict[str, Any] | None = None
    jwks_path: str | None = None
    name: str | None = None
    description: str | None = None

    @model_validator(mode="after")
    def _one_key_source(self) -> _ClientEntry:
        if (self.jwks is None) == (self.jwks_path is None):
            raise ValueError("give exactly one of 'jwks' and 'jwks_path'")
        return self


class _RegistryFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    clients: list[_ClientEntry]


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SmartConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise SmartConfigError(f"{path} is not JSON: {exc}") from None


@dataclass(frozen=True)
class ClientRegistry:
    clients: Mapping[str, Client]
    files: tuple[Path, ...] = ()  # the registry file and the JWKS files it names

    def get(self, client_id: str) -> Client | None:
        return self.clients.get(client_id)

    @classmethod
    def load(cls, path: str | Path) -> ClientRegistry:
        path = Path(path)
        raw = _read_json(path)
        try:
            entries = _RegistryFile.model_validate({"clients": raw} if isinstance(raw, list) else raw).clients
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise SmartConfigError(f"{path}: {where}: {first['msg']}") from None
        clients: dict[str, Client] = {}
        files = [path]
        for entry in entries:
            if entry.client_id in clients:
                raise SmartConfigError(f"{path}: client_id {entry.client_id!r} is listed twice")
            try:
                allowed = parse_scopes(entry.scopes)
            except ScopeError as exc:
                raise SmartConfigError(f"{path}: client {entry.client_id!r}: {exc}") from None
            if not allowed:
                raise SmartConfigError(f"{path}: client {entry.client_id!r} is allowed no scopes")
            if entry.jwks_path is not None:
                jwks_file = (path.parent / entry.jwks_path).resolve()
                files.append(jwks_file)
                keys = load_jwks(_read_json(jwks_file), str(jwks_file))
            else:
                keys = load_jwks(entry.jwks, f"{path}: client {entry.client_id!r} jwks")
            if not keys:
                raise SmartConfigError(
                    f"{path}: client {entry.client_id!r} has no usable RS384/ES384 public key"
                )
            clients[entry.client_id] = Client(entry.client_id, entry.tenant, allowed, keys)
        return cls(clients, tuple(files))


# --- used assertion ids --------------------------------------------------------------------------


class JtiStore(Protocol):
    def remember(self, jti: str, client_id: str, expires_at: datetime) -> bool:
        """Record that ``client_id`` used ``jti``, kept until ``expires_at``; False if already seen."""
        ...


class SqlJtiStore:
    """The ``smart_jti`` table: the primary key (client_id, jti) makes a second use fail in every
    worker, including two racing ones. Commits its own transaction when the session has none
    open, else works in a savepoint of the caller's transaction (which the caller commits)."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def remember(self, jti: str, client_id: str, expires_at: datetime) -> bool:
        now = datetime.now(UTC)
        nested = self.session.in_transaction()
        try:
            with self.session.begin_nested() if nested else self.session.begin():
                if not nested:
                    self.session.connection(execution_options={WRITE_OPTION: True})
                self.session.execute(delete(SmartJti).where(SmartJti.expires_at < now))
                self.session.add(SmartJti(client_id=client_id, jti=jti, expires_at=expires_at))
                self.session.flush()
        except IntegrityError:
            return False
        return True


# --- access tokens -------------------------------------------------------------------------------


class TokenIdentity(NamedTuple):
    """Who an access token speaks for."""

    tenant: str
    client_id: str
    scopes: tuple[Scope, ...]


def _secret_bytes(secret: str | None) -> bytes:
    if not secret:
        raise SmartConfigError("COCM_TOKEN_SECRET is required when SMART clients are configured")
    raw = secret.encode()
    if len(raw) < MIN_SECRET_BYTES:
        raise SmartConfigError(f"COCM_TOKEN_SECRET must be at least {MIN_SECRET_BYTES} bytes")
    return raw


def issue_access_token(
    secret: str, tenant: str, client_id: str, scope: str, lifetime_seconds: int, *, now: float | None = None
) -> str:
    issued = int(time.time() if now is None else now)
    claims = {
        "iss": ACCESS_TOKEN_ISSUER,
        "aud": ACCESS_TOKEN_AUDIENCE,
        "sub": client_id,
        "client_id": client_id,
        "tenant": tenant,
        "scope": scope,
        "iat": issued,
        "exp": issued + lifetime_seconds,
        "jti": secrets.token_urlsafe(16),
    }
    return jwt.encode(
        claims, _secret_bytes(secret), algorithm=ACCESS_TOKEN_ALGORITHM, headers={"typ": ACCESS_TOKEN_TYPE}
    )


def verify_access_token(token: str, secret: str) -> TokenIdentity | None:
    """The identity an access token carries, or None if it is not one of ours, altered, or
    expired."""
    try:
        decoded = jwt.decode_complete(
            token,
            _secret_bytes(secret),
            algorithms=[ACCESS_TOKEN_ALGORITHM],
            audience=ACCESS_TOKEN_AUDIENCE,
            issuer=ACCESS_TOKEN_ISSUER,
            options={"require": ["iss", "aud", "sub", "exp", "iat", "client_id", "tenant", "scope"]},
        )
    except jwt.PyJWTError:
        return None
    if decoded["header"].get("typ") != ACCESS_TOKEN_TYPE:
        return None
    claims = decoded["payload"]
    tenant, client_id, scope = claims["tenant"], claims["client_id"], claims["scope"]
    if not all(isinstance(value, str) for value in (tenant, client_id, scope)) or client_id != claims["sub"]:
        return None
    try:
        scopes = parse_scopes(scope)
    except ScopeError:
        return None
    return TokenIdentity(tenant, client_id, scopes)


def authenticate_bearer(token: str, settings: SmartSettings) -> TokenIdentity | None:
    """For ``get_caller``: the identity of a SMART access token, or None (no secret configured,
    not a token of ours, bad signature, expired, malformed). Never raises on a bad token."""
    secret = settings.token_secret
    if not secret or token.count(".") != 2:
        return None
    try:
        return verify_access_token(token, secret)
    except SmartConfigError:  # a too-short secret: load_smart_server refuses it at start-up
        return None


# --- the token endpoint --------------------------------------------------------------------------


@dataclass(frozen=True)
class TokenResponse:
    access_token: str
    expires_in: int
    scope: str
    token_type: str = "bearer"  # noqa: S105 - the OAuth token type, not a secret

    def body(self) -> dict[str, str | int]:
        return {
            "access_token": self.access_token,
            "token_type": self.token_type,
            "expires_in": self.expires_in,
            "scope": self.scope,
        }


def _invalid_client(description: str) -> OAuthError:
    return OAuthError("invalid_client", description)


def _single(form: Mapping[str, Sequence[str]], name: str, *, required: bool = True) -> str | None:
    values = form.get(name) or []
    if len(values) > 1:
        raise OAuthError("invalid_request", f"parameter {name!r} is repeated")
    if not values or not values[0]:
        if required:
            raise OAuthError("invalid_request", f"parameter {name!r} is required")
        return None
    return values[0]


def token_url(base_url: str) -> str:
    return base_url.rstrip("/") + TOKEN_PATH


class SmartServer:
    """The token endpoint's logic, built once at start-up (``load_smart_server``)."""

    def __init__(
        self,
        registry: ClientRegistry,
        token_secret: str,
        *,
        token_lifetime_seconds: int = DEFAULT_TOKEN_LIFETIME_SECONDS,
        public_base_url: str | None = None,
        registry_path: str | Path | None = None,
    ) -> None:
        _secret_bytes(token_secret)
        if token_lifetime_seconds <= 0:
            raise SmartConfigError("COCM_TOKEN_LIFETIME_SECONDS must be positive")
        self._registry = registry
        self._stamp = _stamp(registry.files)
        self._reload_lock = threading.Lock()
        self.registry_path = Path(registry_path) if registry_path is not None else None
        self.token_secret = token_secret
        self.token_lifetime_seconds = token_lifetime_seconds
        self.public_base_url = public_base_url.rstrip("/") if public_base_url else None

    @property
    def registry(self) -> ClientRegistry:
        """The registry, re-read first if one of its files changed."""
        if self.registry_path is None:
            return self._registry
        stamp = _stamp(self._registry.files)
        if stamp != self._stamp:
            with self._reload_lock:
                if stamp != self._stamp:
                    try:
                        self._registry = ClientRegistry.load(self.registry_path)
                        log.info("SMART client registry reloaded: %d clients", len(self._registry.clients))
                        stamp = _stamp(self._registry.files)  # it may name other JWKS files now
                    except SmartConfigError as exc:
                        log.warning("SMART client registry not reloaded, keeping the previous one: %s", exc)
                    self._stamp = stamp
        return self._registry

    def audiences(self, request_token_url: str) -> list[str]:
        """The ``aud`` values accepted: the token URL as the request reached it, and the one under
        the configured public base URL."""
        urls = [request_token_url]
        if self.public_base_url:
            urls.append(token_url(self.public_base_url))
        return list(dict.fromkeys(urls))

    def verify_assertion(
        self, assertion: str, audiences: Sequence[str], *, now: float | None = None
    ) -> tuple[Client, str, int]:
        """Check a client assertion; (client, jti, exp) or ``OAuthError(invalid_client)``. Does not
        record the jti (``token`` does, once everything else passed)."""
        current = time.time() if now is None else now
        try:
            header = jwt.get_unverified_header(assertion)
            unverified = jwt.decode(assertion, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise _invalid_client("client_assertion is not a signed JWT") from None
        algorithm = header.get("alg")
        if algorithm not in ASSERTION_ALGORITHMS:
            raise _invalid_client(f"client_assertion alg must be RS384 or ES384, not {algorithm!r}")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise _invalid_client("client_assertion header must name its key (kid)")
        issuer = unverified.get("iss")
        if not isinstance(issuer, str) or not issuer:
            raise _invalid_client("client_assertion has no iss (the client_id)")
        client = self.registry.get(issuer)
        if client is None:
            raise _invalid_client("unknown client")
        key = client.key(kid, algorithm)
        if key is None:
            raise _invalid_client(f"no registered {algorithm} key with kid {kid!r} for this client")
        try:
            claims = jwt.decode(
                assertion,
                key.key,
                algorithms=[algorithm],
                audience=list(audiences),
                issuer=client.client_id,
                subject=client.client_id,
                leeway=CLOCK_SKEW_SECONDS,
                options={"require": ["iss", "sub", "aud", "exp", "jti"]},
            )
        except jwt.InvalidSignatureError:
            raise _invalid_client("client_assertion signature does not verify") from None
        except jwt.ExpiredSignatureError:
            raise _invalid_client("client_assertion has expired") from None
        except jwt.ImmatureSignatureError:
            raise _invalid_client("client_assertion iat or nbf is in the future") from None
        except jwt.MissingRequiredClaimError as exc:
            raise _invalid_client(f"client_assertion has no {exc.claim} claim") from None
        except jwt.InvalidAudienceError:
            raise _invalid_client(
                f"client_assertion aud must be the token endpoint URL {audiences[0]}"
            ) from None
        except (jwt.InvalidIssuerError, InvalidSubjectError):
            raise _invalid_client("client_assertion iss and sub must both be the client_id") from None
        except jwt.PyJWTError as exc:
            raise _invalid_client(f"client_assertion is invalid: {exc}") from None
        expires = int(claims["exp"])
        if expires - current > MAX_ASSERTION_LIFETIME_SECONDS + CLOCK_SKEW_SECONDS:
            raise _invalid_client(
                f"client_assertion exp must be at most {MAX_ASSERTION_LIFETIME_SECONDS} s in the future"
            )
        jti = claims["jti"]
        if not isinstance(jti, str) or not jti or len(jti) > JTI:
            raise _invalid_client(f"client_assertion jti must be a string of 1..{JTI} characters")
        return client, jti, expires

    def token(
        self,
        form: Mapping[str, Sequence[str]],
        request_token_url: str,
        jti_store: JtiStore,
        *,
        now: float | None = None,
    ) -> TokenResponse:
        """Answer a token request (form fields as lists of values) or raise ``OAuthError``."""
        current = time.time() if now is None else now
        grant_type = _single(form, "grant_type")
        if grant_type != GRANT_TYPE:
            raise OAuthError("unsupported_grant_type", f"only grant_type={GRANT_TYPE} is supported")
        assertion_type = _single(form, "client_assertion_type")
        if assertion_type != ASSERTION_TYPE:
            raise OAuthError("invalid_request", f"client_assertion_type must be {ASSERTION_TYPE}")
        assertion = _single(form, "client_assertion")
        requested = _single(form, "scope")
        assert assertion is not None and requested is not None
        named_client = _single(form, "client_id", required=False)

        client, jti, expires = self.verify_assertion(
            assertion, self.audiences(request_token_url), now=current
        )
        if named_client is not None and named_client != client.client_id:
            raise _invalid_client("client_id does not match the client_assertion iss")
        keep_until = datetime.fromtimestamp(
            expires + MAX_ASSERTION_LIFETIME_SECONDS + CLOCK_SKEW_SECONDS, UTC
        )
        if not jti_store.remember(jti, client.client_id, keep_until):
            log.warning("SMART client %s replayed an assertion (jti already used)", client.client_id)
            raise _invalid_client("client_assertion jti was already used")

        granted = grant(requested, client.allowed)
        if not granted.scope:
            raise OAuthError(
                "invalid_scope", "none of the requested scopes may be granted to this client: " + requested
            )
        access_token = issue_access_token(
            self.token_secret,
            client.tenant,
            client.client_id,
            granted.scope,
            self.token_lifetime_seconds,
            now=current,
        )
        log.info(
            "SMART token issued to %s (tenant %s, scope %r%s)",
            client.client_id,
            client.tenant,
            granted.scope,
            f", refused {' '.join(granted.refused)!r}" if granted.refused else "",
        )
        return TokenResponse(access_token, self.token_lifetime_seconds, granted.scope)


def _stamp(files: Sequence[Path]) -> tuple[tuple[str, int, int], ...]:
    stamps = []
    for path in files:
        try:
            info = path.stat()
            stamps.append((str(path), info.st_mtime_ns, info.st_size))
        except OSError:
            stamps.append((str(path), -1, -1))
    return tuple(stamps)


def load_smart_server(settings: SmartSettings) -> SmartServer | None:
    """Build the token endpoint's logic from the settings at start-up; None when no client
    registry is configured. Raises ``SmartConfigError`` (one line) for an unusable registry, a
    missing or short token secret, or a bad lifetime."""
    path = settings.smart_clients_file
    if not path or not path.strip():
        return None
    if not settings.token_secret:
        raise SmartConfigError("COCM_TOKEN_SECRET is required when COCM_SMART_CLIENTS_FILE is set")
    registry = ClientRegistry.load(path.strip())
    return SmartServer(
        registry,
        settings.token_secret,
        token_lifetime_seconds=settings.token_lifetime_seconds,
        public_base_url=settings.public_base_url,
        registry_path=path.strip(),
    )
