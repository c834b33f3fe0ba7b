"""The storage port: what the service needs from one backend, whatever its provider.

A provider adapter is opened for one backend with the credentials of that backend's secret. It can
describe the digest's object, stream its bytes, hand out a URL that needs no credentials (or say it
cannot), and probe read-only for the validator. Every failure is an
:class:`~cas_download.domain.AttemptFailed` carrying the spec's reason: nothing above this port sees a
provider's SDK or HTTP answers.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Protocol, runtime_checkable

from msgspec import Struct

from cas_download.domain import AttemptReason, ObjectInfo

_MIN_TIMEOUT_SECONDS = 0.25


class SecretFields(Mapping[str, object]):
    """A backend secret's JSON object, keys normalized (case, ``_`` and ``-`` ignored), so that
    ``AccessKeyID``, ``accessKeyId`` and ``access_key_id`` are one key. Its repr never shows a value."""

    __slots__ = ("_fields",)

    def __init__(self, value: Mapping[str, object]) -> None:
        self._fields = {normalize_key(str(key)): item for key, item in value.items()}

    def text(self, key: str) -> str | None:
        """The non-empty string at ``key`` (given in any spelling), else None."""
        item = self._fields.get(normalize_key(key))
        return item if isinstance(item, str) and item else None

    def __getitem__(self, key: str) -> object:
        return self._fields[normalize_key(key)]

    def __iter__(self) -> Iterator[str]:
        return iter(self._fields)

    def __len__(self) -> int:
        return len(self._fields)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SecretFields) and self._fields == other._fields

    def __hash__(self) -> int:
        return hash(tuple(sorted((k, repr(v)) for k, v in self._fields.items())))

    def __repr__(self) -> str:  # never let a credential reach a log through repr()
        return "SecretFields(<redacted>)"


def normalize_key(key: str) -> str:
    return key.lower().replace("_", "").replace("-", "")


class ObjectDescription(Struct, frozen=True):
    """What a provider says of the digest's object before its bytes are read."""

    info: ObjectInfo
    # The provider's own proof: True, its checksum is the digest's; False, it differs; None, it has none.
    provider_proof: bool | None = None
    # One stored object as the provider names it, for verification records; None: records never apply.
    record_key: str | None = None


class DirectUrl(Struct, frozen=True):
    """A URL that serves the object without the caller's credentials, and when it stops working."""

    url: str
    expires_at: datetime
    # What the storage behind the URL calls the stored bytes (its ETag), for providers whose own
    # description cannot tie a verification record to them: a registry names a blob by its digest
    # whatever it holds. A record then proves the object only while that storage ETag is unchanged.
    storage_etag: str | None = None


class ObjectStream(Protocol):
    """The object's bytes as they arrive; ``info`` is what the provider said of them."""

    @property
    def info(self) -> ObjectInfo: ...

    def chunks(self) -> Iterator[bytes]: ...

    def close(self) -> None: ...


class BackendStore(Protocol):
    """One backend, opened with its own credentials."""

    def describe(self, digest: str) -> ObjectDescription:
        """Size, version or ETag, filename, and the provider's proof if it has one."""
        ...

    def open(
        self, digest: str, description: ObjectDescription | None = None, via: DirectUrl | None = None
    ) -> ObjectStream:
        """The bytes: of the described object when ``description`` is given (so that a changed object
        fails instead of being read), else of whatever is stored now. ``via``: the URL about to be
        handed out; a provider whose URL leads elsewhere than its API (a registry's redirect to its
        storage) reads the bytes there, so what is proven is what the caller will fetch."""
        ...

    def direct_url(
        self, digest: str, description: ObjectDescription, ttl_seconds: int, disposition: str | None
    ) -> DirectUrl:
        """A credential-free URL, or :class:`AttemptFailed` ``no_direct_url`` if there is none."""
        ...

    def probe(self, key_prefix: str) -> AttemptReason | None:
        """Read-only check that the credentials may read this backend: None means healthy."""
        ...


@runtime_checkable
class RangeReader(Protocol):
    """A store that can read part of the described object (a ranged GET): the verifier reads large
    objects as several ranges at once. Stores without it are read as one stream."""

    def read_range(self, digest: str, description: ObjectDescription, start: int, length: int) -> bytes:
        """``length`` bytes from ``start`` of the described object (so that a changed object fails),
        or :class:`AttemptFailed`."""
        ...


@runtime_checkable
class RecordNamer(Protocol):
    """A store that can name the digest's object for verification records before describing it, so
    that the record is read while the object is described (logic/backend_attempt.py)."""

    def record_key(self, digest: str) -> str | None:
        """``describe``'s ``record_key`` for the digest's object when the provider names no version of
        it (None: no name without describing it)."""
        ...


def call_timeouts(connect: float, read: float, time_left: float | None) -> tuple[float, float]:
    """Per-call timeouts; near the request deadline, cut to the time left so no call outlives it.
    Quarter-second steps keep the number of distinct (cached) clients small."""
    if time_left is None or time_left >= connect + read:
        return connect, read
    cap = max(math.ceil(time_left * 4) / 4, _MIN_TIMEOUT_SECONDS)
    return min(connect, cap), min(read, cap)
