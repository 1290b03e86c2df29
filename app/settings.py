"""Settings: one pydantic-settings class, prefix ``COCM_``, read once by the app factory.

The names and defaults are the contract in api.md. A bad value stops start-up with a one-line
reason (``load_settings`` raises ``SettingsError``, a ``SystemExit``), never a traceback.
"""

from __future__ import annotations

import ipaddress
from functools import cached_property
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AliasChoices, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from app.domain import BillingConfig, CareConfig
from app.quality.measures import QualityConfig

DEFAULT_TENANT = "default"


# Settings read under more than one environment name, the first the preferred one.
ALIASES: dict[str, tuple[str, ...]] = {
    "fallback_covered": ("COCM_FALLBACK_COVERED", "COCM_G2214_COVERED"),
    "add_on_cap": ("COCM_ADD_ON_CAP", "COCM_MAX_99494_UNITS"),
}


class SettingsError(SystemExit):
    """Raised for an unusable setting; its message is the one line printed at start-up."""


def _empty_to_none(value: object) -> object:
    return None if isinstance(value, str) and not value.strip() else value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="COCM_", env_file=".env", extra="ignore", populate_by_name=True
    )

    database_url: str = "sqlite:///./cocm.db"
    # A read replica of database_url for the month-wide billing and registry reads (README,
    # Production); unset: everything reads the primary.
    database_read_url: str | None = None
    timezone: str = "UTC"
    billing_setting: Literal["physician", "fqhc_rhc"] = "physician"
    api_keys: str = ""
    # api.md, Access and tenants: without credentials the service is open only on a loopback
    # address, unless this says that an open service elsewhere is intended.
    allow_anonymous: bool = False
    max_body_bytes: int = Field(5_242_880, gt=0)
    count_consultant_time: bool = False
    # Named for what they do; api.md's first names (COCM_G2214_COVERED, COCM_MAX_99494_UNITS) are
    # accepted too (ALIASES). The fallback under the base code (G2214) is reported; a payer's cap on
    # add-on units a month (99494).
    fallback_covered: bool = Field(True, validation_alias=AliasChoices(*ALIASES["fallback_covered"]))
    add_on_cap: int | None = Field(None, ge=0, validation_alias=AliasChoices(*ALIASES["add_on_cap"]))
    apcm_addons: bool = False
    # billing.md FQHC/RHC: G0511 still accepted 2025-01-01..2025-09-30 (default: 99484).
    fqhc_g0511_transition: bool = False

    # Care-status thresholds (measures.md): COCM_ + flag + unit.
    not_improving_weeks: int = Field(10, ge=0)
    measurement_overdue_days: int = Field(30, ge=0)
    no_recent_contact_days: int = Field(30, ge=0)
    case_review_due_days: int = Field(28, ge=0)
    case_review_due_weeks: int = Field(8, ge=0)

    # FHIR edge limits (api.md).
    max_json_depth: int = Field(64, ge=2)
    default_page_size: int = Field(50, ge=1)
    max_page_size: int = Field(500, ge=1)
    max_bundle_entries: int = Field(1000, ge=1)

    # SMART Backend Services (issue: authentication); off while no client registry is set.
    smart_clients_file: str | None = None
    token_secret: str | None = None  # HS256 key for access tokens, >= 32 bytes, same in every worker
    token_lifetime_seconds: int = Field(300, ge=30, le=3600)
    public_base_url: str | None = None  # e.g. https://cocm.example.org; token URL = <base>/auth/token

    # Subscriptions and notifications (notifications.md).
    subscription_allowed_hosts: str = ""  # comma-separated hosts or addresses exempt from the SSRF rule
    notify_retry_hours: float = Field(24, gt=0)  # retries of one event before the subscription errs
    notify_retention_days: int = Field(30, ge=1)  # how long $events can replay an event
    notify_backoff_seconds: float = Field(5, gt=0)  # the first retry's delay; doubles each time
    notify_backoff_cap_seconds: float = Field(600, gt=0)  # ... up to this
    notify_in_process: bool = True  # each server process delivers; false when `cocm notify` runs
    notify_poll_seconds: float = Field(0.5, gt=0)  # how often a dispatcher looks for due work

    # Bulk Data export (export.md).
    export_dir: str | None = (
        None  # where NDJSON files go; default: "exports" beside the SQLite file, else ./exports
    )
    export_retention_hours: float = Field(24, gt=0)  # files and status expire this long after completion
    export_concurrency: int = Field(1, ge=1)  # jobs run at a time per process
    export_file_lines: int = Field(100_000, ge=1)  # resources per NDJSON file before the next part
    export_batch: int = Field(2000, ge=1)  # resources read per query (memory held vs round trips)
    export_in_process: bool = True  # each server process runs export jobs (false: `cocm export-worker`)

    # Program targets of the quality measures (quality.md), a rate 0-1 shown against each measure's
    # score on /registry/quality and in /api/v1/quality; unset: no target.
    target_depression_remission_12m: float | None = Field(None, ge=0, le=1)
    target_depression_response_6m: float | None = Field(None, ge=0, le=1)
    target_cocm_follow_up_4w: float | None = Field(None, ge=0, le=1)
    target_cocm_consult_not_improving: float | None = Field(None, ge=0, le=1)

    # SQLite durability: NORMAL (WAL; a power cut may lose the last commits, never consistency) or
    # FULL (an fsync per commit: nothing answered 201 is lost; slower).
    sqlite_synchronous: Literal["NORMAL", "FULL"] = "NORMAL"

    # Cached month-wide results (billing month, registry) are brought up to date by recomputing the
    # patients written since, looking back this much further for writes committed late: longer than
    # the longest write transaction (a 1,000-entry Bundle, the largest accepted, takes about 1 s).
    cache_refresh_margin_seconds: float = Field(10, ge=0)

    # Group commit (issue 14, app.services.uow): the most single-resource requests sharing one
    # transaction and commit; 1 turns grouping off.
    group_commit_limit: int = Field(64, ge=1)

    # Connection pool (PostgreSQL).
    db_pool_size: int = Field(10, ge=1)
    db_max_overflow: int = Field(10, ge=0)

    @field_validator(
        "add_on_cap",
        "smart_clients_file",
        "token_secret",
        "public_base_url",
        "database_read_url",
        "export_dir",
        "target_depression_remission_12m",
        "target_depression_response_6m",
        "target_cocm_follow_up_4w",
        "target_cocm_consult_not_improving",
        mode="before",
    )
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return _empty_to_none(value)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown IANA time zone {value!r}") from exc
        return value

    @field_validator("database_url", "database_read_url")
    @classmethod
    def _usable_url(cls, value: str | None) -> str | None:
        if value is not None:
            sqlalchemy_url(value)
        return value

    @cached_property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def sqlalchemy_url(self) -> URL:
        return sqlalchemy_url(self.database_url)

    @property
    def sqlalchemy_read_url(self) -> URL | None:
        return sqlalchemy_url(self.database_read_url) if self.database_read_url else None

    @property
    def has_credentials(self) -> bool:
        """API keys or SMART clients are configured: every non-open route needs credentials."""
        return any(entry.strip() for entry in self.api_keys.split(",")) or self.smart_clients_file is not None

    def open_access_warning(self, host: str) -> str | None:
        """Whether the service may listen on ``host`` as it is configured (api.md, Access and
        tenants): ``None`` when credentials are configured, a warning to log when it runs open
        (on a loopback address, or anywhere with ``COCM_ALLOW_ANONYMOUS``). Raises
        ``SettingsError`` with a one-line reason for an open service on any other address."""
        if self.has_credentials:
            return None
        if is_loopback(host):
            return f"the API is open: no credentials are configured, every caller on {host} is tenant default"
        if self.allow_anonymous:
            return (
                f"the API is open to the network on {host}: no credentials are configured and "
                "COCM_ALLOW_ANONYMOUS=true; every caller is tenant default"
            )
        raise SettingsError(
            f"cocm-api: refusing to serve on {host} without credentials: set COCM_API_KEYS or "
            "COCM_SMART_CLIENTS_FILE (or COCM_ALLOW_ANONYMOUS=true if an open API is intended)"
        )

    @property
    def allowed_hosts(self) -> frozenset[str]:
        return frozenset(h.strip().lower() for h in self.subscription_allowed_hosts.split(",") if h.strip())

    @property
    def fhir_base(self) -> str:
        """The absolute FHIR base that notifications name (``COCM_PUBLIC_BASE_URL`` + ``/fhir``)."""
        return (self.public_base_url or "http://localhost:8000").rstrip("/") + "/fhir"

    @property
    def billing(self) -> BillingConfig:
        return BillingConfig(
            timezone=self.timezone,
            setting=self.billing_setting,
            count_consultant_time=self.count_consultant_time,
            fallback_covered=self.fallback_covered,
            add_on_cap=self.add_on_cap,
            apcm_addons=self.apcm_addons,
            fqhc_g0511_transition=self.fqhc_g0511_transition,
        )

    @property
    def export_path(self) -> Path:
        """``COCM_EXPORT_DIR``, else ``exports`` beside the SQLite file, else ``./exports``."""
        if self.export_dir:
            return Path(self.export_dir)
        url = self.sqlalchemy_url
        if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
            return Path(str(url.database)).resolve().parent / "exports"
        return Path("exports").resolve()

    @property
    def quality(self) -> QualityConfig:
        return QualityConfig(billing=self.billing)

    def target(self, measure_id: str) -> float | None:
        """The program's target for a measure (``COCM_TARGET_<ID>``), None when unset."""
        value = getattr(self, "target_" + measure_id.replace("-", "_"), None)
        return value if isinstance(value, float) else None

    @property
    def care(self) -> CareConfig:
        return CareConfig(
            not_improving_weeks=self.not_improving_weeks,
            measurement_overdue_days=self.measurement_overdue_days,
            no_recent_contact_days=self.no_recent_contact_days,
            case_review_due_days=self.case_review_due_days,
            new_patient_weeks=self.case_review_due_weeks,
        )


def is_loopback(host: str) -> bool:
    """``localhost`` or a loopback IP (127.0.0.0/8, ::1); a wildcard or any other name is not."""
    name = host.strip().strip("[]")
    if name.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def sqlalchemy_url(text: str) -> URL:
    """A plain ``sqlite:///...`` or ``postgresql://...`` URL with the driver the service uses."""
    try:
        url = make_url(text)
    except ArgumentError as exc:
        raise ValueError("not a database URL (expected sqlite:///... or postgresql://...)") from exc
    backend = url.get_backend_name()
    if backend == "sqlite":
        return url.set(drivername="sqlite+pysqlite")
    if backend in {"postgresql", "postgres"}:
        if not url.database:
            raise ValueError("a postgresql URL must name a database")
        return url.set(drivername="postgresql+psycopg")
    raise ValueError(f"unsupported database {backend!r} (expected sqlite or postgresql)")


def _variable(loc: tuple[int | str, ...]) -> str:
    """The environment name(s) of a setting an error is about, e.g. ``COCM_TIMEZONE`` or
    ``COCM_ADD_ON_CAP (or COCM_MAX_99494_UNITS)``."""
    name = "_".join(str(part) for part in loc).upper()
    for names in ALIASES.values():
        if name in names:
            return f"{names[0]} (or {', '.join(names[1:])})"
    return name if name.startswith("COCM_") else f"COCM_{name}"


def load_settings(**overrides: object) -> Settings:
    """Read the environment (and .env); raise SettingsError with one line per bad value."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        reasons = "; ".join(f"{_variable(err['loc'])}: {err['msg']}" for err in exc.errors())
        raise SettingsError(f"cocm-api: invalid settings: {reasons}") from None
