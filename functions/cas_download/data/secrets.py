"""Backend secrets from Secrets Manager, cached per container (Powertools Parameters).

The secret is a JSON object; which keys a provider needs is its adapter's business
(:mod:`cas_download.data.storage`), read from :class:`SecretFields` (key names match
case-insensitively, ignoring ``_``/``-``). A secret value never reaches a log: errors carry only the
secret's name and the failure's kind.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from aws_lambda_powertools.utilities.parameters import SecretsProvider
from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError, TransformParameterError

from cas_download.data.cache import TtlCache
from cas_download.data.storage.port import SecretFields
from cas_download.domain import AttemptFailed, AttemptReason


class SecretUnavailable(AttemptFailed):
    """The backend's secret is missing, unreadable or not a JSON object."""

    def __init__(self, detail: str) -> None:
        super().__init__(AttemptReason.SECRET_UNAVAILABLE, detail)


def secret_fields(value: object) -> SecretFields:
    if not isinstance(value, dict):
        raise SecretUnavailable("secret is not a JSON object")
    return SecretFields(value)


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
        # What this container holds now, for looking ahead without a read (logic/look_ahead.py); it
        # expires with Powertools' copy (the same TTL), and a TTL of 0 holds nothing.
        self._held: TtlCache[str, SecretFields] = TtlCache(ttl_seconds, clock=clock)

    def forget_all(self) -> None:
        """Drop every cached secret value and close the Secrets Manager client's connections (a SnapStart
        restore); the client reconnects on use."""
        self._provider.clear_cache()  # type: ignore[no-untyped-call]  # Powertools leaves it unannotated
        self._provider.client.close()
        self._last_forced.clear()
        self._held.clear()

    def held(self, secret_name: str) -> SecretFields | None:
        """The secret as this container last read it, while its cache holds it; None rather than a read."""
        return self._held.get(secret_name)

    def get(self, secret_name: str) -> SecretFields:
        return self._fetch(secret_name, force=False)

    def refresh(self, secret_name: str) -> SecretFields | None:
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

    def fresh(self, secret_name: str) -> SecretFields:
        """Read the secret bypassing the cache (the validator must judge what is stored now)."""
        return self._fetch(secret_name, force=True)

    def _fetch(self, secret_name: str, *, force: bool) -> SecretFields:
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
        fields = secret_fields(value)
        self._held.put(secret_name, fields)
        return fields
