"""Backend credentials from Secrets Manager, cached per container (Powertools Parameters).

The secret is a JSON object whose key names match case-insensitively and ignoring ``_``/``-``:
``AccessKeyID``, ``SecretAccessKey``, optional ``SessionToken``, ``Region`` and ``Expiration``
(ISO 8601: when temporary credentials end, so that presigned URLs never outlive them).
A secret value never reaches a log: errors carry only the secret's name and the failure's kind.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from aws_lambda_powertools.utilities.parameters import SecretsProvider
from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError, TransformParameterError

from cas_download.domain import Credentials


class SecretUnavailable(Exception):
    """The backend's secret is missing, unreadable, not JSON, or lacks a key."""


def _normalize(key: str) -> str:
    return key.lower().replace("_", "").replace("-", "")


def credentials_from_secret(value: object) -> Credentials:
    if not isinstance(value, dict):
        raise SecretUnavailable("secret is not a JSON object")
    fields: dict[str, Any] = {_normalize(str(key)): item for key, item in value.items()}
    access_key_id = fields.get("accesskeyid")
    secret_access_key = fields.get("secretaccesskey")
    if not (isinstance(access_key_id, str) and access_key_id):
        raise SecretUnavailable("secret lacks AccessKeyID or SecretAccessKey")
    if not (isinstance(secret_access_key, str) and secret_access_key):
        raise SecretUnavailable("secret lacks AccessKeyID or SecretAccessKey")
    return Credentials(
        access_key_id=access_key_id,
        secret_access_key=secret_access_key,
        session_token=_optional_str(fields.get("sessiontoken")),
        region=_optional_str(fields.get("region")),
        expires_at=_parse_time(fields.get("expiration")),
    )


def _optional_str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _parse_time(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else None


class CredentialStore:
    def __init__(
        self,
        provider: SecretsProvider,
        ttl_seconds: int,
        min_refresh_interval_seconds: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._provider = provider
        self._ttl = ttl_seconds
        self._min_refresh_interval = min_refresh_interval_seconds
        self._clock = clock
        self._last_forced: dict[str, float] = {}

    def get(self, secret_name: str) -> Credentials:
        return self._fetch(secret_name, force=False)

    def refresh(self, secret_name: str) -> Credentials | None:
        """Read the secret again, bypassing the cache, at most once per interval per secret.

        Used when cached credentials are rejected: the control plane may have written new keys into
        the same secret. Returns None when a forced read happened too recently to try again.
        """
        now = self._clock()
        last = self._last_forced.get(secret_name)
        if last is not None and now - last < self._min_refresh_interval:
            return None
        self._last_forced[secret_name] = now
        return self._fetch(secret_name, force=True)

    def fresh(self, secret_name: str) -> Credentials:
        """Read the secret bypassing the cache (the validator must judge what is stored now)."""
        return self._fetch(secret_name, force=True)

    def _fetch(self, secret_name: str, *, force: bool) -> Credentials:
        if not secret_name:
            raise SecretUnavailable("backend names no secret")
        try:
            value = self._provider.get(
                secret_name, transform="json", max_age=self._ttl, force_fetch=force or self._ttl <= 0
            )
        except TransformParameterError:
            raise SecretUnavailable("secret is not valid JSON") from None
        except GetParameterError as error:
            cause = type(error.__context__).__name__ if error.__context__ else "error"
            raise SecretUnavailable(f"secret could not be read ({cause})") from None
        return credentials_from_secret(value)
