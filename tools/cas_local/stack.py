"""The local stack: moto (control + storage with IAM auth), the tables of template.yaml, the storage
gateway, and the environment that points the real handler (and cas-admin) at them."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from cas_admin.chainloop_link import KEY_VARIABLE as PRIVATE_KEY_VARIABLE
from cas_local.azurite import Azurite, azurite_binary, new_account_key
from cas_local.gateway import KeyDirectory, StorageGateway
from cas_local.moto import HOST, REGION, SETUP_CONFIG, MotoPair, start_moto_pair
from cas_local.registry import Registry, registry_binary, start_registry
from cas_local.template import REPO_ROOT, Template

if TYPE_CHECKING:
    from cas_local.verifier import LocalVerifier

ADMIN_USER = "cas-local-admin"
DEMO_AZURE_ACCOUNT = "casdemo"
ENV_JSON_PATH = REPO_ROOT / "events" / "env.json"
DEFAULT_STATE_FILE = REPO_ROOT / ".local" / "stack.json"
# The function's variable with the control plane's CAS public keys (template: ChainloopCasPublicKeys)
PUBLIC_KEYS_VARIABLE = "CHAINLOOP_CAS_PUBLIC_KEYS"

# What the local stack changes in the template's defaults (events/env.json carries them, so that
# `sam local invoke --env-vars events/env.json` and `cas-local invoke` agree): no caching of backend
# rows and secrets, so that a change made with cas-admin shows on the very next request.
LOCAL_OVERRIDES = {
    "BACKEND_CACHE_TTL_SECONDS": "0",
    "SECRET_CACHE_TTL_SECONDS": "0",
    # A request hashes at most 16 MiB locally (256 MiB deployed), so that the demo shows an object
    # proven on demand (503 verification_pending, then 307) without writing hundreds of MiB.
    "MAX_HASH_BYTES": str(16 * 1024 * 1024),
}

# Variables that would give a client other credentials, or send it elsewhere than the stack.
FOREIGN_AWS_VARIABLES = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS",
)


def is_foreign_aws_variable(name: str) -> bool:
    """A variable to drop before pointing clients at a stack: other credentials or endpoints."""
    return name.startswith("AWS_ENDPOINT_URL") or name in FOREIGN_AWS_VARIABLES


def env_json_document(template: Template) -> dict[str, dict[str, str]]:
    """The content of events/env.json: the download function's table variables at their local names
    plus ``LOCAL_OVERRIDES``, in SAM's ``{"<LogicalId>": {...}}`` form."""
    logical_id, _props = template.download_function()
    table_names = {t.name for t in template.tables()}
    env = template.function_environment()
    chosen = {k: v for k, v in env.items() if v in table_names}
    chosen.update({k: v for k, v in LOCAL_OVERRIDES.items() if k in env})
    return {logical_id: dict(sorted(chosen.items()))}


def function_environment(template: Template, env_json: Path | None = ENV_JSON_PATH) -> dict[str, str]:
    """The handler's variables: the template's (defaults), overridden by the env-vars file the way
    ``sam local invoke --env-vars`` does it (only variables the template declares)."""
    env = template.function_environment()
    if env_json is not None and env_json.exists():
        logical_id, _props = template.download_function()
        document = json.loads(env_json.read_text())
        overrides = {**document.get("Parameters", {}), **document.get(logical_id, {})}
        env.update({k: str(v) for k, v in overrides.items() if k in env})
    return env


@dataclass
class StackEndpoints:
    """Where the stack listens and how to reach it: what the state file records."""

    control_url: str
    storage_url: str
    gateway_url: str
    admin_access_key_id: str
    admin_secret_access_key: str
    function_env: dict[str, str]
    region: str = REGION
    api_url: str | None = None
    pid: int | None = None
    moto_pids: list[int] = field(default_factory=list)
    demo: dict[str, Any] = field(default_factory=dict)
    registry_url: str | None = None  # the OCI demo's registry, when docker-registry is installed
    azurite_url: str | None = None  # the Azure demo's Azurite, when it is installed
    # The stack's stand-in for Chainloop's CAS private key (P-521 PEM): what `cas-admin chainloop link`
    # signs download links with; its public key is the function's CHAINLOOP_CAS_PUBLIC_KEYS.
    chainloop_cas_private_key_path: str | None = None

    def aws_env(self) -> dict[str, str]:
        """AWS variables for a client of the stack: the handler, cas-admin, the AWS CLI."""
        return {
            "AWS_ENDPOINT_URL": self.control_url,
            "AWS_ENDPOINT_URL_S3": self.gateway_url,
            "AWS_ENDPOINT_URL_IAM": self.storage_url,
            "AWS_ACCESS_KEY_ID": self.admin_access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.admin_secret_access_key,
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def admin_env(self) -> dict[str, str]:
        """``aws_env`` plus what cas-admin reads: the table names, the API's URL and the CAS private key
        (``cas-admin chainloop link``)."""
        env = self.aws_env()
        for name in ("BACKENDS_TABLE", "MAPPINGS_TABLE", "VERIFICATIONS_TABLE"):  # the last: cas-admin verify
            if name in self.function_env:
                env[name] = self.function_env[name]
        if self.api_url:
            env["CAS_API_URL"] = self.api_url
        if self.chainloop_cas_private_key_path:
            env[PRIVATE_KEY_VARIABLE] = self.chainloop_cas_private_key_path
        return env

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> StackEndpoints:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=2) + "\n")
        tmp.chmod(0o600)  # it holds the (local, throwaway) admin key
        tmp.replace(path)

    @classmethod
    def read(cls, path: Path) -> StackEndpoints:
        return cls.from_json(json.loads(path.read_text()))

    @classmethod
    def wait_for(
        cls, process: subprocess.Popen[bytes], path: Path, stderr_path: Path, timeout_s: float
    ) -> StackEndpoints:
        """What a ``cas-local run --state-file path`` subprocess publishes once its API is up.

        Raises with the tail of its stderr if it exits first, or (after killing it) if it is not
        ready within ``timeout_s``.
        """
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if process.poll() is not None:
                tail = stderr_path.read_text()[-4000:]
                raise RuntimeError(f"cas-local run exited with {process.returncode}:\n{tail}")
            if path.exists():
                with contextlib.suppress(ValueError, OSError, TypeError):
                    endpoints = cls.read(path)
                    if endpoints.api_url:
                        return endpoints
            time.sleep(0.1)
        process.kill()
        raise TimeoutError(
            f"cas-local run not ready in {timeout_s:.0f} s:\n{stderr_path.read_text()[-4000:]}"
        )


def stop_run_process(process: subprocess.Popen[bytes], stop_signal: int, timeout_s: float) -> bool:
    """Stop a ``cas-local run`` subprocess with ``stop_signal`` (SIGINT: Ctrl-C; SIGTERM), killing it
    when it has not exited within ``timeout_s``. False when it had to be killed."""
    if process.poll() is not None:
        return True
    process.send_signal(stop_signal)
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)
        return False
    return True


@dataclass(frozen=True)
class ChainloopCasKeys:
    """The local stack's stand-in for the Chainloop control plane's CAS key pair (P-521), as
    Chainloop's deployment docs make it: ``openssl ecparam -name secp521r1 -genkey -noout -out
    private.ec.key`` (SEC1 ``EC PRIVATE KEY`` PEM) and ``openssl ec -in private.ec.key -pubout -out
    public.pem`` (SPKI ``PUBLIC KEY`` PEM)."""

    private_key_path: Path
    public_key_path: Path
    public_pem: str


def generate_chainloop_cas_keys(directory: Path) -> ChainloopCasKeys:
    """A new key pair written in ``directory`` (the private key readable by its owner only); a pair
    left there by a previous run is replaced."""
    key = ec.generate_private_key(ec.SECP521R1())
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,  # SEC1: "-----BEGIN EC PRIVATE KEY-----"
        serialization.NoEncryption(),
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    directory.mkdir(parents=True, exist_ok=True)
    private_path, public_path = directory / "private.ec.key", directory / "public.pem"
    _write_private(private_path, private_pem)
    public_path.write_bytes(public_pem)
    return ChainloopCasKeys(private_path.resolve(), public_path.resolve(), public_pem.decode("ascii"))


def _write_private(path: Path, data: bytes) -> None:
    """``data`` in ``path`` with mode 0600 from its creation (never readable by others, even briefly)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    descriptor = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as out:
        out.write(data)
    tmp.replace(path)


def trust_public_key(function_env: dict[str, str], public_pem: str) -> None:
    """Add ``public_pem`` to the function's CHAINLOOP_CAS_PUBLIC_KEYS, after any key an env-vars file
    set there (several keys are accepted, as while a rotation overlaps)."""
    configured = function_env.get(PUBLIC_KEYS_VARIABLE, "").strip()
    function_env[PUBLIC_KEYS_VARIABLE] = f"{configured}\n{public_pem}" if configured else public_pem


@dataclass
class LocalStack:
    moto: MotoPair
    gateway: StorageGateway
    keys: KeyDirectory
    template: Template
    function_env: dict[str, str]
    log_dir: Path
    registry: Registry | None = None
    azurite: Azurite | None = None
    verifier: LocalVerifier | None = None
    chainloop_cas_keys: ChainloopCasKeys | None = None

    def start_verifier(self) -> LocalVerifier:
        """The verifier on the Mappings table's stream (cas_local.verifier), from this process's
        environment pointed at the stack (``process_environment``)."""
        from cas_local.verifier import start_local_verifier  # noqa: PLC0415 - the handler's imports

        self.verifier = start_local_verifier(
            self.function_env, self.control_client("dynamodb"), self.control_client("dynamodbstreams")
        )
        return self.verifier

    @property
    def endpoints(self) -> StackEndpoints:
        return StackEndpoints(
            control_url=self.moto.control.url,
            storage_url=self.moto.storage.url,
            gateway_url=self.gateway.url,
            admin_access_key_id=self.moto.admin_access_key_id,
            admin_secret_access_key=self.moto.admin_secret_access_key,
            function_env=dict(self.function_env),
            moto_pids=[self.moto.control.pid, self.moto.storage.pid],
            registry_url=self.registry.url if self.registry else None,
            azurite_url=self.azurite.endpoint if self.azurite else None,
            chainloop_cas_private_key_path=(
                str(self.chainloop_cas_keys.private_key_path) if self.chainloop_cas_keys else None
            ),
        )

    def control_client(self, service: str) -> Any:
        return _client(
            service, self.moto.control.url, self.moto.admin_access_key_id, self.moto.admin_secret_access_key
        )

    def storage_client(self, service: str, config: Config | None = None) -> Any:
        """An admin client straight to the storage server (not through the gateway)."""
        return _client(
            service,
            self.moto.storage.url,
            self.moto.admin_access_key_id,
            self.moto.admin_secret_access_key,
            config,
        )

    def stop(self) -> None:
        if self.verifier is not None:
            with contextlib.suppress(Exception):
                self.verifier.stop()
        with contextlib.suppress(Exception):
            self.gateway.stop()
        if self.registry is not None:
            with contextlib.suppress(Exception):
                self.registry.stop()
        if self.azurite is not None:
            with contextlib.suppress(Exception):
                self.azurite.stop()
        self.moto.stop()


def _client(service: str, endpoint: str, key_id: str, secret: str, config: Config | None = None) -> Any:
    return boto3.session.Session().client(
        service,  # type: ignore[call-overload]
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        config=SETUP_CONFIG.merge(config) if config else SETUP_CONFIG,
    )


def create_tables(stack: LocalStack) -> None:
    """The template's tables, created from its own definitions."""
    ddb = stack.control_client("dynamodb")
    definitions = stack.template.tables()
    for table in definitions:
        ddb.create_table(**table.create_request)
    waiter = ddb.get_waiter("table_exists")
    for table in definitions:
        waiter.wait(TableName=table.name, WaiterConfig={"Delay": 0.2, "MaxAttempts": 50})
        if table.ttl:
            ddb.update_time_to_live(TableName=table.name, TimeToLiveSpecification=table.ttl)


def start_stack(
    log_dir: Path | None = None,
    *,
    template: Template | None = None,
    env_json: Path | None = ENV_JSON_PATH,
    gateway_port: int = 0,
    with_registry: bool = True,
) -> LocalStack:
    """Start moto, the gateway, a registry and Azurite (each when installed), and create the tables; on
    failure stop whatever started. A new Chainloop CAS key pair is written under ``log_dir``
    (``chainloop-cas/``): the function trusts its public key, so that links minted with its private
    key (``cas-admin chainloop link``) are served on ``/download``."""
    template = template or Template.load()
    log_dir = log_dir or Path(tempfile.mkdtemp(prefix="cas-local-"))
    function_env = function_environment(template, env_json)
    chainloop_cas_keys = None
    if PUBLIC_KEYS_VARIABLE in function_env:  # the template has the link route
        chainloop_cas_keys = generate_chainloop_cas_keys(log_dir / "chainloop-cas")
        trust_public_key(function_env, chainloop_cas_keys.public_pem)
    moto = start_moto_pair(log_dir, ADMIN_USER)
    try:
        secrets = _client(
            "secretsmanager", moto.control.url, moto.admin_access_key_id, moto.admin_secret_access_key
        )
        keys = KeyDirectory(secrets)
        keys.add(moto.admin_access_key_id, moto.admin_secret_access_key)
        gateway = StorageGateway(moto.storage.url, keys, host=HOST, port=gateway_port).start()
    except BaseException:
        moto.stop()
        raise
    stack = LocalStack(
        moto, gateway, keys, template, function_env, log_dir, chainloop_cas_keys=chainloop_cas_keys
    )
    try:
        create_tables(stack)
        # The registry's and Azurite's data of a previous run in the same place: every run starts from
        # nothing, as moto does, so the demo writes its objects anew.
        for data_dir in (log_dir / "registry", log_dir / "azurite"):
            shutil.rmtree(data_dir, ignore_errors=True)
        if with_registry and registry_binary() is not None:
            stack.registry = start_registry(log_dir / "registry")
        if with_registry and azurite_binary() is not None:
            stack.azurite = Azurite(log_dir / "azurite", {DEMO_AZURE_ACCOUNT: [new_account_key()]}).start()
    except BaseException:
        stack.stop()
        raise
    return stack


@contextlib.contextmanager
def process_environment(values: Mapping[str, str]) -> Iterator[None]:
    """Point this process's AWS clients at the stack (``values``), dropping variables that would
    send them elsewhere; restored on exit."""
    saved = dict(os.environ)
    try:
        for name in list(os.environ):
            if is_foreign_aws_variable(name):
                del os.environ[name]
        os.environ.update(values)
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)
