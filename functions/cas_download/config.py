"""Runtime configuration: read once from the environment, validated into a typed, frozen object.

Nothing else in the package reads ``os.environ``; logic receives a :class:`Settings`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

# A Lambda response is capped at 6 MB (6,291,456 bytes); base64 grows the body by 4/3 and the JSON
# envelope and headers need a little room, so this is the largest body the service can ever return.
MAX_BODY_BYTES_LIMIT = 4_500_000
PRESIGN_TTL_LIMIT_SECONDS = 3600

REQUIRED_ENV_VARS = ("BACKENDS_TABLE", "MAPPINGS_TABLE")
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
    "SYNC_OVERLAP_SECONDS",
    "POWERTOOLS_SERVICE_NAME",
    "POWERTOOLS_METRICS_NAMESPACE",
    "POWERTOOLS_LOG_LEVEL",
)


class ConfigError(ValueError):
    """The environment does not describe a runnable service."""


@dataclass(frozen=True, slots=True)
class Settings:
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
    service_name: str = "cas-download"
    metrics_namespace: str = "CasDownload"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        missing = [name for name in REQUIRED_ENV_VARS if not env.get(name, "").strip()]
        if missing:
            raise ConfigError(f"missing required environment variables: {', '.join(missing)}")
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
            service_name=env.get("POWERTOOLS_SERVICE_NAME", "").strip() or "cas-download",
            metrics_namespace=env.get("POWERTOOLS_METRICS_NAMESPACE", "").strip() or "CasDownload",
        )


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


@dataclass(frozen=True, slots=True)
class SyncSettings:
    """The Chainloop sync function's settings (template: ChainloopSyncFunction)."""

    backends_table: str
    mappings_table: str
    database_secret_arn: str
    region: str = "us-east-1"
    overlap_seconds: int = 600
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
            service_name=env.get("POWERTOOLS_SERVICE_NAME", "").strip() or "cas-download-sync",
            metrics_namespace=env.get("POWERTOOLS_METRICS_NAMESPACE", "").strip() or "CasDownload",
        )
