"""The scenarios, built as real state in the moto servers with the tests' World, each served by its
own App (its own container, in Lambda terms) through the real handler."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from botocore.config import Config
from tests.support.calls import Call
from tests.support.events import FakeLambdaContext, load_event
from tests.support.moto_servers import REGION
from tests.support.world import BackendRef, World

from benchmarks.counting import CallCounter, Calls
from benchmarks.env import function_env
from cas_download.app import App
from cas_download.config import Settings
from cas_download.domain import Mapping
from cas_download.handlers.download import instrumented_handler
from cas_download.logic.deadline import Deadline
from cas_download.logic.verifier import Outcome, verify_mapping

# The artifact of the call-count and latency scenarios: small, stored as Chainloop stores it (no SHA-256
# checksum: S3 cannot prove it), so a container proves it by hashing once, then by its verification
# record, as the template's VERIFICATIONS_TABLE lets it.
DATA = b"cas-download benchmark artifact\n" * 64  # 2 KiB

# The service's caches, all off ("the cost of no caching").
NO_CACHE = {"SECRET_CACHE_TTL_SECONDS": 0, "BACKEND_CACHE_TTL_SECONDS": 0, "FAILURE_MEMORY_SECONDS": 0}

EVENT_BY_MODE = {"redirect": "get_redirect", "url": "get_url", "body": "get_body"}
STATUS_BY_MODE = {"redirect": 307, "url": 200, "body": 200}


class UnexpectedResponse(RuntimeError):
    pass


@dataclass
class Target:
    """Something the latency loop can time: ``serve()`` does one request; ``prepare()`` (untimed)
    builds what that request needs (the event, the Lambda context)."""

    key: str
    label: str
    prepare: Callable[[], Any]
    serve: Callable[[Any], Any]
    notes: str = ""
    first_calls: Calls | None = None  # calls of the first request this container served
    extra: dict[str, Any] = field(default_factory=dict)


class Scenarios:
    def __init__(self, world: World, counter: CallCounter, verifications_table: str) -> None:
        self.world = world
        self.counter = counter
        # What the template deploys (benchmarks/env.py): a scenario varies it only where it says so.
        self.function_env = function_env(
            {
                "BACKENDS_TABLE": world.tables.backends,
                "MAPPINGS_TABLE": world.tables.mappings,
                "VERIFICATIONS_TABLE": verifications_table,
            }
        )

    # ------------------------------------------------------------------ apps

    def settings_env(self, **env: object) -> dict[str, str]:
        """The template's environment with ``env`` on top (a None value removes the variable)."""
        merged = dict(self.function_env)
        for name, value in env.items():
            if value is None:
                merged.pop(name, None)
            else:
                merged[name] = str(value)
        return merged

    def app(self, **env: object) -> App:
        """A new container configured as the template configures the function, plus ``env``; counted
        clients."""
        settings = Settings.from_env(self.settings_env(**env))
        return App.create(settings, session=self.counter.new_session())

    def target(
        self,
        key: str,
        label: str,
        app: App,
        digest: str,
        org: str,
        *,
        mode: str = "redirect",
        if_none_match: bool = False,
        expect: int | None = None,
        notes: str = "",
    ) -> Target:
        event_name = "get_if_none_match" if if_none_match else EVENT_BY_MODE[mode]
        headers = {"if-none-match": f'"{digest}"'} if if_none_match else None
        status = expect if expect is not None else (304 if if_none_match else STATUS_BY_MODE[mode])

        def prepare() -> tuple[dict[str, Any], FakeLambdaContext]:
            return load_event(event_name, digest=digest, orgs=org, headers=headers), FakeLambdaContext()

        handler = instrumented_handler(app)  # what Lambda runs: metrics flushed per request

        def serve(prepared: tuple[dict[str, Any], FakeLambdaContext]) -> dict[str, Any]:
            response = dict(handler(prepared[0], prepared[1]))
            if response["statusCode"] != status:
                raise UnexpectedResponse(
                    f"{key}: expected {status}, got {response['statusCode']}: {str(response.get('body'))[:300]}"
                )
            return response

        return Target(key, label, prepare, serve, notes)

    # ------------------------------------------------------------------ the story's pieces

    def healthy_backend(self, data: bytes = DATA) -> tuple[str, BackendRef, str]:
        """An org whose default backend holds ``data`` as Chainloop writes it (no checksum) and maps
        it, proven by the verifier as the Mappings stream has it proven once the mapping is written."""
        org = self.world.org()
        backend = self.world.backend(org, "primary", is_default=True)
        digest = self.world.put(backend, data, filename="artifact.bin")
        self.world.map(digest, org, backend)
        self.proven(org, backend, digest)
        return org, backend, digest

    def proven(self, org: str, backend: BackendRef, digest: str) -> None:
        """What the verifier does for a new mapping (its own container, the template's settings): the
        record every later first request reads instead of hashing the object."""
        verification = verify_mapping(Mapping(digest, org, backend.id), self.app().services, Deadline(60))
        if verification.outcome is not Outcome.PROVEN:
            raise UnexpectedResponse(f"the verifier did not prove {digest}: {verification}")

    def rotation_story(self) -> tuple[str, BackendRef, BackendRef, str]:
        """Mapped to an old backend whose keys are revoked; a new default on the same bucket."""
        org = self.world.org()
        bucket = self.world.bucket()
        old = self.world.backend(org, "old", bucket=bucket, created_at="2025-01-01T00:00:00Z")
        new = self.world.backend(org, "new", bucket=bucket, is_default=True)
        digest = self.world.put(old, DATA, filename="artifact.bin")
        self.world.map(digest, org, old)
        self.proven(org, old, digest)  # at upload, before the rotation
        self.world.revoke(old)
        return org, old, new, digest

    # ------------------------------------------------------------------ targets

    def healthy(self, mode: str = "redirect", suffix: str = "", **env: object) -> Target:
        org, _backend, digest = self.healthy_backend()
        label = {"redirect": "healthy redirect", "url": "url mode", "body": "body mode (2 KiB)"}[mode]
        key = {"redirect": "healthy", "url": "url", "body": "body"}[mode]
        return self.target(key + suffix, label, self.app(**env), digest, org, mode=mode)

    def rotation(self, suffix: str = "", **env: object) -> Target:
        org, _old, _new, digest = self.rotation_story()
        return self.target(
            "rotation" + suffix,
            "rotation story (new default serves)",
            self.app(**env),
            digest,
            org,
            notes="mapped backend's keys revoked; the org's new default on the same bucket serves",
        )

    def link(self, suffix: str = "", **env: object) -> Target:
        """A Chainloop download link (``/download``) to the healthy artifact, its token naming the
        backend that holds it: tried before the mappings, which are not read while it serves."""
        org, backend, digest = self.healthy_backend()
        return self._link_target(
            "link" + suffix, "/download link (token's backend)", digest, org, backend, env
        )

    def link_rotated(self, suffix: str = "", **env: object) -> Target:
        """A link minted for the rotation story's old backend (keys revoked): once it failed, the
        container defers it, reads the mappings, and asks the new default meanwhile (the look ahead)."""
        org, old, _new, digest = self.rotation_story()
        return self._link_target(
            "link_rotated" + suffix, "/download link, rotation story (look ahead)", digest, org, old, env
        )

    def _link_target(
        self, key: str, label: str, digest: str, org: str, backend: BackendRef, env: dict[str, object]
    ) -> Target:
        event, keys_env = download_link_case(digest, org, backend)
        app = self.app(**keys_env, **env)
        handler = instrumented_handler(app)

        def prepare() -> tuple[dict[str, Any], FakeLambdaContext]:
            return copy.deepcopy(event), FakeLambdaContext()

        def serve(prepared: tuple[dict[str, Any], FakeLambdaContext]) -> dict[str, Any]:
            response = dict(handler(prepared[0], prepared[1]))
            if response["statusCode"] != STATUS_BY_MODE["redirect"]:
                raise UnexpectedResponse(f"{key}: got {response['statusCode']}: {response.get('body')}")
            return response

        target = Target(key, label, prepare, serve)
        target.extra["look_ahead"] = app.services.look_ahead
        return target

    def not_modified(self, suffix: str = "", **env: object) -> Target:
        org, _backend, digest = self.healthy_backend()
        return self.target(
            "not_modified" + suffix, "304 (If-None-Match)", self.app(**env), digest, org, if_none_match=True
        )


@dataclass
class RotationEvent:
    """One rotation seen by a warm container: calls and time of the first request after it, and of
    the one after that."""

    first_calls: Calls
    first_ms: float
    second_calls: Calls
    first_sequence: list[Call]


def rotate_under_a_warm_container(scenarios: Scenarios, warm_requests: int = 3) -> RotationEvent:
    """A container serves an org's artifact through its default backend (secret, rows and S3 client
    cached); the control plane then rotates: a new default backend on the same bucket, the old one no
    longer default, its keys revoked. The next requests are measured."""
    world, counter = scenarios.world, scenarios.counter
    org = world.org()
    bucket = world.bucket()
    old = world.backend(org, "old", bucket=bucket, is_default=True, created_at="2025-01-01T00:00:00Z")
    digest = world.put(old, DATA, filename="artifact.bin")
    world.map(digest, org, old)
    scenarios.proven(org, old, digest)
    target = scenarios.target(
        "after_rotation", "first request after a rotation", scenarios.app(), digest, org
    )
    for _ in range(warm_requests):
        target.serve(target.prepare())

    world.backend(org, "new", bucket=bucket, is_default=True)
    world.update_backend(old, is_default=False)
    world.revoke(old)

    prepared = target.prepare()
    mark = counter.mark()
    started = time.perf_counter()
    target.serve(prepared)
    first_ms = (time.perf_counter() - started) * 1000.0
    first, sequence = counter.since(mark), counter.calls[mark:]
    mark = counter.mark()
    target.serve(target.prepare())
    return RotationEvent(first, first_ms, counter.since(mark), sequence)


@dataclass
class Baseline:
    """The irreducible work of a verified redirect, written plainly: one DynamoDB query of the
    mapping, one S3 HEAD through the backend's own key, one presign (the proof a record gives costs
    the service nothing more in steady state: the container remembers it). Clients are created once,
    as a warm container would."""

    world: World
    counter: CallCounter
    backend: BackendRef
    digest: str

    def __post_init__(self) -> None:
        session = self.counter.new_session()
        self.dynamodb = session.client("dynamodb", region_name=REGION)
        self.s3 = session.client(
            "s3",
            region_name=REGION,
            aws_access_key_id=self.backend.access_key_id,
            aws_secret_access_key=self.backend.secret_access_key,
            config=Config(signature_version="s3v4", retries={"total_max_attempts": 1, "mode": "standard"}),
        )

    def serve(self) -> str:
        self.dynamodb.query(
            TableName=self.world.tables.mappings,
            KeyConditionExpression="digest = :digest",
            ExpressionAttributeValues={":digest": {"S": self.digest}},
        )
        key = self.backend.key_for(self.digest)
        self.s3.head_object(Bucket=self.backend.bucket, Key=key, ChecksumMode="ENABLED")
        url: str = self.s3.generate_presigned_url(
            "get_object", Params={"Bucket": self.backend.bucket, "Key": key}, ExpiresIn=300
        )
        return url

    def target(self) -> Target:
        return Target(
            "baseline",
            "baseline: 1 DynamoDB query + 1 S3 HEAD + 1 presign",
            lambda: None,
            lambda _prepared: self.serve(),
        )


def download_link_case(digest: str, org: str, backend: Any) -> tuple[dict[str, Any], dict[str, str]]:
    """A ``/download`` event for ``digest`` with a token minted as Chainloop's control plane mints it
    (a key of its own; valid for the whole run, not Chainloop's 30 s), and the environment that
    configures the key's public half."""
    from tests.support.chainloop_links import link_event, new_key_pair  # noqa: PLC0415

    from cas_admin.chainloop_link import mint_token  # noqa: PLC0415 - only this measurement needs it

    keys = new_key_pair()
    token = mint_token(
        keys.private_pem,
        backend=backend.provider,
        secret_id=backend.secret_name,
        org_id=org,
        expires_in=3600,
    )
    return link_event(digest, token), {"CHAINLOOP_CAS_PUBLIC_KEYS": keys.public_pem}
