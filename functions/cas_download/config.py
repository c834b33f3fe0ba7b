"""Runtime configuration: read once from the environment, validated into a typed, frozen object.

Nothing else in the package reads ``os.environ``; logic receives a :class:`Settings`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

from msgspec import Struct

# A Lambda response is capped at 6 MB (6,291,456 bytes); base64 grows the body by 4/3 and the JSON
# envelope and headers need a little room, so this is the largest body the service can ever return.
MAX_BODY_BYTES_LIMIT = 4_500_000
PRESIGN_TTL_LIMIT_SECONDS = 3600
# What one verifier invocation may spend hashing: its 900 s timeout less a minute kept for the stream's
# bookkeeping and slow starts. VERIFY_MAX_BYTES defaults to this times VERIFY_BYTES_PER_SECOND.
VERIFY_BUDGET_SECONDS = 840

REQUIRED_ENV_VARS = ("BACKENDS_TABLE", "MAPPINGS_TABLE")
# Chainloop's DefaultIssuer (internal/robotaccount/cas): what its control plane puts in iss
DEFAULT_CHAINLOOP_ISSUER = "cp.chainloop"
ENV_VARS = (
    *REQUIRED_ENV_VARS,
    "ORG_CLAIM",
    "MAX_BODY_BYTES",
    "PRESIGN_TTL_SECONDS",
    "REQUEST_DEADLINE_SECONDS",
    "S3_CONNECT_TIMEOUT_SECONDS",
    "S3_READ_TIMEOUT_SECONDS",
    "MAX_HASH_BYTES",
    "VERIFICATIONS_TABLE",
    "VERIFICATION_RECORD_TTL_DAYS",
    "FAILURE_MEMORY_SECONDS",
    "VALIDATOR_CONCURRENCY",
    "SECRET_CACHE_TTL_SECONDS",
    "BACKEND_CACHE_TTL_SECONDS",
    "AZURE_AUTHORITY_HOST",
    "CHAINLOOP_DATABASE_SECRET_ARN",
    # What RDS's managed master secret lacks (issue 23): used when the secret names none
    "CHAINLOOP_DATABASE_HOST",
    "CHAINLOOP_DATABASE_PORT",
    "CHAINLOOP_DATABASE_NAME",
    "CHAINLOOP_DATABASE_SSLMODE",
    "SYNC_OVERLAP_SECONDS",
    # Verifying ahead of requests (issue 19)
    "VERIFIER_FUNCTION_NAME",
    "VERIFY_MAX_BYTES",
    "VERIFY_BYTES_PER_SECOND",
    "VERIFY_READ_CONCURRENCY",
    # The verifier's shared capacity (issue 28): asks in flight per org, how long an ask may wait
    "VERIFY_ASKS_PER_ORG",
    "VERIFY_ASK_MAX_EVENT_AGE_SECONDS",
    # Chainloop download links (issue 20)
    "CHAINLOOP_CAS_PUBLIC_KEYS",
    "CHAINLOOP_CAS_ISSUER",
    "CHAINLOOP_LINK_MAX_LIFETIME_SECONDS",
    # Chainloop's UI fetching links from its own origin (issue 27)
    "CHAINLOOP_ALLOWED_ORIGINS",
    "POWERTOOLS_SERVICE_NAME",
    "POWERTOOLS_METRICS_NAMESPACE",
    "POWERTOOLS_LOG_LEVEL",
)


class ConfigError(ValueError):
    """The environment does not describe a runnable service."""


def snapshot_initialization(environ: Mapping[str, str] | None = None) -> bool:
    """Whether Lambda is initializing this container for a SnapStart snapshot rather than for requests
    (it sets ``AWS_LAMBDA_INITIALIZATION_TYPE=snap-start``)."""
    env = os.environ if environ is None else environ
    return env.get("AWS_LAMBDA_INITIALIZATION_TYPE") == "snap-start"


class Settings(Struct, frozen=True):
    backends_table: str
    mappings_table: str
    region: str = "us-east-1"
    org_claim: str = "org_id"
    max_body_bytes: int = 4 * 1024 * 1024
    presign_ttl_seconds: int = 300
    request_deadline_seconds: float = 20.0
    s3_connect_timeout_seconds: float = 2.0
    s3_read_timeout_seconds: float = 5.0
    max_hash_bytes: int = 256 * 1024 * 1024
    verifications_table: str | None = None
    verification_record_ttl_days: int = 30
    failure_memory_seconds: int = 60
    validator_concurrency: int = 8
    secret_cache_ttl_seconds: int = 300
    backend_cache_ttl_seconds: int = 30
    # Microsoft Entra ID's authority for AzureBlob service principals (a sovereign cloud, a stand-in);
    # None: the public cloud's.
    azure_authority_host: str | None = None
    # Verifying ahead of requests: the verifier function a request asks to prove what it may not hash
    # itself (None: no one to ask, such an object is unverifiable), the largest object the verifier
    # proves, the hashing rate Retry-After and that limit are computed from (BENCHMARKS.md, verifier),
    # and how many ranged GETs feed its one SHA-256 where the storage allows (1: one sequential GET).
    verifier_function_name: str | None = None
    verify_max_bytes: int = VERIFY_BUDGET_SECONDS * 64 * 1024 * 1024
    verify_bytes_per_second: int = 64 * 1024 * 1024
    verify_read_concurrency: int = 4
    # The verifier is shared by every org: asks of one org in flight at once (across containers), and
    # how long Lambda keeps an ask queued (the on-demand function's MaximumEventAgeInSeconds), which
    # with its 900 s timeout bounds how long an ask may be in flight.
    verify_asks_per_org: int = 2
    verify_ask_max_event_age_seconds: int = 600
    # Chainloop download links: the control plane's CAS public keys (PEM, several while a key rotation
    # overlaps; none: the /download route answers 404) and the issuer a token must name (None: any).
    chainloop_cas_public_keys: tuple[str, ...] = ()
    chainloop_cas_issuer: str | None = DEFAULT_CHAINLOOP_ISSUER
    chainloop_link_max_lifetime_seconds: int = 3600
    # Origins whose pages may fetch /download links (Chainloop's cas.allowedOrigins); "*": any.
    chainloop_allowed_origins: tuple[str, ...] = ()
    service_name: str = "cas-download"
    metrics_namespace: str = "CasDownload"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        missing = [name for name in REQUIRED_ENV_VARS if not env.get(name, "").strip()]
        if missing:
            raise ConfigError(f"missing required environment variables: {', '.join(missing)}")
        # VERIFY_MAX_BYTES follows from the rate unless set: what one verifier invocation hashes.
        rate = _int(env, "VERIFY_BYTES_PER_SECOND", 64 * 1024 * 1024, 1024 * 1024, 10 * 1024**3)
        return cls(
            backends_table=env["BACKENDS_TABLE"].strip(),
            mappings_table=env["MAPPINGS_TABLE"].strip(),
            region=(env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1").strip(),
            org_claim=env.get("ORG_CLAIM", "").strip() or "org_id",
            max_body_bytes=_int(env, "MAX_BODY_BYTES", 4 * 1024 * 1024, 1, MAX_BODY_BYTES_LIMIT),
            presign_ttl_seconds=_int(env, "PRESIGN_TTL_SECONDS", 300, 1, PRESIGN_TTL_LIMIT_SECONDS),
            request_deadline_seconds=_float(env, "REQUEST_DEADLINE_SECONDS", 20.0, 0.5, 29.0),
            s3_connect_timeout_seconds=_float(env, "S3_CONNECT_TIMEOUT_SECONDS", 2.0, 0.1, 10.0),
            s3_read_timeout_seconds=_float(env, "S3_READ_TIMEOUT_SECONDS", 5.0, 0.1, 20.0),
            max_hash_bytes=_int(env, "MAX_HASH_BYTES", 256 * 1024 * 1024, 0, 5 * 1024**4),
            verifications_table=env.get("VERIFICATIONS_TABLE", "").strip() or None,
            verification_record_ttl_days=_int(env, "VERIFICATION_RECORD_TTL_DAYS", 30, 1, 3650),
            failure_memory_seconds=_int(env, "FAILURE_MEMORY_SECONDS", 60, 0, 3600),
            validator_concurrency=_int(env, "VALIDATOR_CONCURRENCY", 8, 1, 64),
            secret_cache_ttl_seconds=_int(env, "SECRET_CACHE_TTL_SECONDS", 300, 0, 3600),
            backend_cache_ttl_seconds=_int(env, "BACKEND_CACHE_TTL_SECONDS", 30, 0, 3600),
            azure_authority_host=_https_url(env, "AZURE_AUTHORITY_HOST"),
            verifier_function_name=env.get("VERIFIER_FUNCTION_NAME", "").strip() or None,
            verify_max_bytes=_int(env, "VERIFY_MAX_BYTES", VERIFY_BUDGET_SECONDS * rate, 0, 5 * 1024**4),
            verify_bytes_per_second=rate,
            verify_read_concurrency=_int(env, "VERIFY_READ_CONCURRENCY", 4, 1, 16),
            verify_asks_per_org=_int(env, "VERIFY_ASKS_PER_ORG", 2, 1, 1000),
            verify_ask_max_event_age_seconds=_int(env, "VERIFY_ASK_MAX_EVENT_AGE_SECONDS", 600, 60, 21600),
            chainloop_cas_public_keys=_public_keys(env, "CHAINLOOP_CAS_PUBLIC_KEYS"),
            # unset: Chainloop's own issuer; set to nothing: any issuer
            chainloop_cas_issuer=env.get("CHAINLOOP_CAS_ISSUER", DEFAULT_CHAINLOOP_ISSUER).strip() or None,
            chainloop_link_max_lifetime_seconds=_int(
                env, "CHAINLOOP_LINK_MAX_LIFETIME_SECONDS", 3600, 1, 86400
            ),
            chainloop_allowed_origins=_origins(env, "CHAINLOOP_ALLOWED_ORIGINS"),
            service_name=env.get("POWERTOOLS_SERVICE_NAME", "").strip() or "cas-download",
            metrics_namespace=env.get("POWERTOOLS_METRICS_NAMESPACE", "").strip() or "CasDownload",
        )


PEM_PUBLIC_KEY = re.compile(r"-----BEGIN PUBLIC KEY-----(.*?)-----END PUBLIC KEY-----", re.DOTALL)
_BASE64 = re.compile(r"[A-Za-z0-9+/]+={0,2}")


def _public_keys(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    """PEM public keys, one or more, as a template parameter carries them: on several lines, on one line
    (blanks for newlines), or with literal ``\\n``. Each is re-framed as standard PEM. Only the framing is
    checked here: the keys are parsed on the first /download request, so that the /v1 route's cold
    start never imports the crypto library."""
    raw = env.get(name, "").replace("\\n", "\n").strip()
    if not raw:
        return ()
    keys = []
    for match in PEM_PUBLIC_KEY.finditer(raw):
        body = "".join(match.group(1).split())
        if not _BASE64.fullmatch(body):
            raise ConfigError(f"{name}: a PEM public key's body is not base64")
        lines = [body[i : i + 64] for i in range(0, len(body), 64)]
        keys.append("\n".join(["-----BEGIN PUBLIC KEY-----", *lines, "-----END PUBLIC KEY-----", ""]))
    if not keys or PEM_PUBLIC_KEY.sub("", raw).strip():
        raise ConfigError(f"{name} must be one or more PEM public keys (-----BEGIN PUBLIC KEY-----...)")
    return tuple(keys)


# A browser's Origin: scheme, host and port, nothing else (no path, no trailing slash).
_ORIGIN = re.compile(r"https?://[^/\s?#]+")


def _origins(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    """Comma-separated origins, as Chainloop's ``cas.allowedOrigins`` lists them; ``*``: any origin.
    A trailing slash is dropped (a browser never sends one); anything else not an origin is refused."""
    origins = []
    for part in env.get(name, "").split(","):
        origin = part.strip().removesuffix("/")
        if not origin:
            continue
        if origin != "*" and not _ORIGIN.fullmatch(origin):
            raise ConfigError(f"{name}: {origin[:80]!r} is not an origin (scheme://host[:port])")
        origins.append(origin)
    return tuple(dict.fromkeys(origins))


def _int(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if not low <= value <= high:
        raise ConfigError(f"{name} must be between {low} and {high}, got {value}")
    return value


def _https_url(env: Mapping[str, str], name: str) -> str | None:
    raw = env.get(name, "").strip()
    if not raw:
        return None
    if not raw.startswith("https://") or len(raw) <= len("https://"):
        raise ConfigError(f"{name} must be an https:// URL, got {raw!r}")
    return raw.rstrip("/")


def _float(env: Mapping[str, str], name: str, default: float, low: float, high: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if not low <= value <= high:
        raise ConfigError(f"{name} must be between {low} and {high}, got {value}")
    return value


# libpq's sslmode values (https://www.postgresql.org/docs/current/libpq-ssl.html)
SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")


class DatabaseDefaults(Struct, frozen=True):
    """Connection parameters the database secret may lack (RDS's managed master secret holds only
    username and password): each is used only when the secret names none. None: libpq's default."""

    host: str | None = None
    port: int | None = None
    dbname: str | None = None
    sslmode: str | None = None

    def as_conninfo(self) -> dict[str, str]:
        """The given ones, as libpq connection parameters."""
        given = {"host": self.host, "port": self.port, "dbname": self.dbname, "sslmode": self.sslmode}
        return {key: str(value) for key, value in given.items() if value is not None}


class SyncSettings(Struct, frozen=True):
    """The Chainloop sync function's settings (template: ChainloopSyncFunction)."""

    backends_table: str
    mappings_table: str
    database_secret_arn: str
    region: str = "us-east-1"
    overlap_seconds: int = 600
    database_defaults: DatabaseDefaults = DatabaseDefaults()
    service_name: str = "cas-download-sync"
    metrics_namespace: str = "CasDownload"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> SyncSettings:
        env = os.environ if environ is None else environ
        required = (*REQUIRED_ENV_VARS, "CHAINLOOP_DATABASE_SECRET_ARN")
        missing = [name for name in required if not env.get(name, "").strip()]
        if missing:
            raise ConfigError(f"missing required environment variables: {', '.join(missing)}")
        return cls(
            backends_table=env["BACKENDS_TABLE"].strip(),
            mappings_table=env["MAPPINGS_TABLE"].strip(),
            database_secret_arn=env["CHAINLOOP_DATABASE_SECRET_ARN"].strip(),
            region=(env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1").strip(),
            overlap_seconds=_int(env, "SYNC_OVERLAP_SECONDS", 600, 0, 86400),
            database_defaults=_database_defaults(env),
            service_name=env.get("POWERTOOLS_SERVICE_NAME", "").strip() or "cas-download-sync",
            metrics_namespace=env.get("POWERTOOLS_METRICS_NAMESPACE", "").strip() or "CasDownload",
        )


def _database_defaults(env: Mapping[str, str]) -> DatabaseDefaults:
    sslmode = env.get("CHAINLOOP_DATABASE_SSLMODE", "").strip() or None
    if sslmode is not None and sslmode not in SSL_MODES:
        raise ConfigError(
            f"CHAINLOOP_DATABASE_SSLMODE must be one of {', '.join(SSL_MODES)}, got {sslmode!r}"
        )
    port = env.get("CHAINLOOP_DATABASE_PORT", "").strip()
    return DatabaseDefaults(
        host=env.get("CHAINLOOP_DATABASE_HOST", "").strip() or None,
        port=_int(env, "CHAINLOOP_DATABASE_PORT", 5432, 1, 65535) if port else None,
        dbname=env.get("CHAINLOOP_DATABASE_NAME", "").strip() or None,
        sslmode=sslmode,
    )
