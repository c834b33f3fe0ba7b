"""The verifier's asks, shared by every container (spec: "Verifying ahead of requests", on demand):
which objects each org has asked to prove and not yet seen proven, and which objects the verifier
could not prove for a reason that may pass.

Kept in the Verifications table under keys no object id takes (``ask#org#...``, ``ask#memo#...``):
- one item per org holds its asks in flight, each with when its proof should be done and when it is
  over for certain (Lambda's event age plus the verifier's timeout). Every change is a conditional
  write on the version read (optimistic locking), so containers racing for the org's last slot or for
  the same object cannot both win: at most one ask per object, at most ``VERIFY_ASKS_PER_ORG`` per org.
  The verifier releases an ask when it is done; an ask it never settles (it crashed) lapses by time.
- one item per object the verifier could not prove for a transient reason: not asked again before
  ``memo_until`` (an hour), so a request never makes it hash the whole object again and again.

The TTL attribute removes items nobody touches any more.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from datetime import UTC, datetime
from enum import Enum
from typing import Any

from msgspec import Struct
from pynamodb.exceptions import PutError, PynamoDBException

from cas_download.data.tables import TableError, Tables

MEMO_SECONDS = 3600
# The verifier function's timeout (template.yaml): an ask older than its event age plus this is over.
VERIFIER_TIMEOUT_SECONDS = 900
# Optimistic writes lost to other containers before the claim gives up (the org is busy anyway).
_CLAIM_TRIES = 4
# Items nobody touches for a day after their last lease or memo ends are removed by the table's TTL.
_KEEP_SECONDS = 86400


class AskState(Enum):
    CLAIMED = "claimed"  # this caller asks: invoke the verifier
    IN_FLIGHT = "in_flight"  # another container asked for this object: its proof is on the way
    ORG_BUSY = "org_busy"  # the org has VERIFY_ASKS_PER_ORG asks in flight: try again later
    NOT_BEFORE = "not_before"  # the verifier could not prove it lately: not asked within the hour


class AskClaim(Struct, frozen=True):
    state: AskState
    retry_after_seconds: int


def ask_key(digest: str, backend_id: str) -> str:
    return f"{digest}#{backend_id}"


def _org_item_id(org_id: str) -> str:
    return f"ask#org#{org_id}"


def _memo_item_id(key: str) -> str:
    return f"ask#memo#{key}"


class AskLedger:
    def __init__(
        self,
        tables: Tables,
        per_org: int,
        max_event_age_seconds: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if tables.ask_model is None:
            raise ValueError("the verifier's asks need the Verifications table")
        self._model: Any = tables.ask_model
        self.per_org = per_org
        # How long an ask may be in flight: queued by Lambda up to the event age, then run.
        self.lease_seconds = max_event_age_seconds + VERIFIER_TIMEOUT_SECONDS
        self._clock = clock

    def claim(self, org_id: str, key: str, expected_seconds: int) -> AskClaim:
        """Claim the right to ask the verifier for ``key`` in ``org_id`` (wall clock: shared by every
        container). Raises :class:`TableError` when the table cannot answer."""
        now = self._clock()
        memo_until = self._memo_until(key)
        if memo_until is not None and memo_until > now:
            return AskClaim(AskState.NOT_BEFORE, _seconds(memo_until - now))
        for _ in range(_CLAIM_TRIES):
            item, leases = self._org_leases(org_id, now)
            if key in leases:
                return AskClaim(AskState.IN_FLIGHT, _seconds(leases[key][0] - now))
            if len(leases) >= self.per_org:
                soonest_done = min(done for done, _ in leases.values())
                return AskClaim(AskState.ORG_BUSY, _seconds(soonest_done - now))
            leases[key] = (now + expected_seconds, now + self.lease_seconds)
            if self._save_leases(item, leases):
                return AskClaim(AskState.CLAIMED, expected_seconds)
            now = self._clock()
        return AskClaim(AskState.ORG_BUSY, 1)

    def release(self, org_id: str, key: str) -> None:
        """The ask is settled (proven, refused for good, or remembered): free its slot now."""
        for _ in range(_CLAIM_TRIES):
            item, leases = self._org_leases(org_id, self._clock())
            if key not in leases:
                return
            leases.pop(key, None)
            if self._save_leases(item, leases):
                return

    def remember_unproven(self, key: str, reason: str) -> None:
        """The verifier could not prove ``key`` for a reason that may pass: not asked for an hour."""
        until = self._clock() + MEMO_SECONDS
        item = self._model(_memo_item_id(key), memo_until=until, memo_reason=reason)
        item.expires_at = _epoch_datetime(until + _KEEP_SECONDS)
        try:
            # Unconditional: the newest memo wins (the version attribute would demand the one read).
            item.save(add_version_condition=False)
        except PynamoDBException as failure:
            raise TableError(type(failure).__name__) from None

    def _memo_until(self, key: str) -> float | None:
        try:
            item = self._model.get(_memo_item_id(key), consistent_read=True)
        except self._model.DoesNotExist:
            return None
        except PynamoDBException as failure:
            raise TableError(type(failure).__name__) from None
        return float(item.memo_until) if item.memo_until is not None else None

    def _org_leases(self, org_id: str, now: float) -> tuple[Any, dict[str, tuple[float, float]]]:
        """The org's item and its asks still in flight at ``now`` (lapsed ones dropped)."""
        try:
            item = self._model.get(_org_item_id(org_id), consistent_read=True)
        except self._model.DoesNotExist:
            return self._model(_org_item_id(org_id)), {}
        except PynamoDBException as failure:
            raise TableError(type(failure).__name__) from None
        stored = json.loads(item.leases or "{}")
        leases = {key: (float(done), float(until)) for key, (done, until) in stored.items() if until > now}
        return item, leases

    def _save_leases(self, item: Any, leases: dict[str, tuple[float, float]]) -> bool:
        """Write ``leases`` if nobody wrote the org's item since it was read; False if someone did."""
        item.leases = json.dumps({key: [done, until] for key, (done, until) in leases.items()})
        last_until = max((until for _, until in leases.values()), default=self._clock())
        item.expires_at = _epoch_datetime(last_until + _KEEP_SECONDS)
        try:
            item.save()
        except PutError as failure:
            if failure.cause_response_code == "ConditionalCheckFailedException":
                return False
            raise TableError(failure.cause_response_code or "PutError") from None
        except PynamoDBException as failure:
            raise TableError(type(failure).__name__) from None
        return True


def _seconds(span: float) -> int:
    return max(1, math.ceil(span))


def _epoch_datetime(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)
