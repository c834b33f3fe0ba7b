"""``cas-admin backend ...``: register, list, flag, delete and rotate storage backends."""

from __future__ import annotations

import argparse
import datetime as dt
import getpass
import os
import sys
import time
import uuid
from dataclasses import dataclass

from botocore.exceptions import ClientError
from msgspec.structs import replace

from cas_admin.errors import AdminError, UsageError
from cas_admin.output import note, print_json, print_table
from cas_admin.store import AdminStore, parse_location_or_fail, public
from cas_download.data.storage.port import SecretFields
from cas_download.data.storage.s3 import Credentials, probe_read_access
from cas_download.domain import AttemptFailed, Backend, Provider, ValidationStatus
from cas_download.logic.health import utc_now_iso

SECRET_ENV = "CAS_SECRET_ACCESS_KEY"  # noqa: S105 - a variable name
REGISTRY_PASSWORD_ENV = "CAS_REGISTRY_PASSWORD"  # noqa: S105 - a variable name
AZURE_KEY_ENV = "CAS_AZURE_ACCOUNT_KEY"
AZURE_SECRET_ENV = "CAS_AZURE_CLIENT_SECRET"  # noqa: S105 - a variable name
DEFAULT_SECRET_PREFIX = "cas/"  # noqa: S105 - template.yaml SecretNamePrefix: the function may read only these
# A key IAM just created takes a few seconds to work everywhere (AWS is eventually consistent).
_NEW_KEY_RETRY_DELAYS_S = (1.0, 2.0, 4.0, 8.0)


@dataclass
class NewCredentials:
    """What a new backend's secret holds: S3 keys, or another provider's secret as Chainloop writes
    it (``OCI``: a registry login or ``{}``; ``AzureBlob``: an account key or a service principal)."""

    credentials: Credentials | None = None
    secret_name: str | None = None  # an existing secret to reuse instead of writing one
    iam_user: str | None = None  # set when the key was created here, for this IAM user
    provider_secret: dict[str, str] | None = None

    def secret_value(self) -> dict[str, str]:
        """The secret's JSON object, in the form Chainloop writes for the provider."""
        if self.credentials is not None:
            value = {
                "AccessKeyID": self.credentials.access_key_id,
                "SecretAccessKey": self.credentials.secret_access_key,
            }
            if self.credentials.session_token:
                value["SessionToken"] = self.credentials.session_token
            return value
        return dict(self.provider_secret or {})  # {}: OCI anonymous pull


def add_credential_arguments(parser: argparse.ArgumentParser, *, required: bool) -> None:
    group = parser.add_argument_group(
        "credentials" + ("" if required else " (default: a new key for the IAM user of the old one)"),
        "one of --access-key-id, --new-key-for-user, --secret-name" + (" is required" if required else ""),
    )
    group.add_argument("--access-key-id", help="access key id of the backend's credentials")
    group.add_argument(
        "--secret-access-key",
        help=f"its secret (better: env {SECRET_ENV}, or leave both out to be prompted on a terminal)",
    )
    group.add_argument("--session-token", help="session token, for temporary credentials")
    group.add_argument(
        "--new-key-for-user",
        metavar="IAM_USER",
        help="create a new access key for this existing IAM user (IAM CreateAccessKey)",
    )
    if required:
        group.add_argument(
            "--secret-name", help="use credentials already stored in this secret (name or ARN) as they are"
        )
    registry = parser.add_argument_group(
        "registry login (--provider OCI)", "one of --username, --anonymous, --secret-name"
    )
    registry.add_argument("--username", help="registry username")
    registry.add_argument(
        "--password",
        help=f"its password or token (better: env {REGISTRY_PASSWORD_ENV}, or leave it out to be prompted)",
    )
    registry.add_argument("--anonymous", action="store_true", help="pull without a login (secret {})")
    blob = parser.add_argument_group(
        "Azure credentials (--provider AzureBlob)",
        "--account-key, or a service principal (--tenant-id, --client-id, --client-secret), or --secret-name",
    )
    blob.add_argument(
        "--account-key", help=f"the storage account's shared key (better: env {AZURE_KEY_ENV}, or a prompt)"
    )
    blob.add_argument("--tenant-id", help="service principal: Microsoft Entra tenant id")
    blob.add_argument("--client-id", help="service principal: application (client) id")
    blob.add_argument(
        "--client-secret", help=f"service principal: its secret (better: env {AZURE_SECRET_ENV})"
    )
    group.add_argument(
        "--secret-prefix",
        default=DEFAULT_SECRET_PREFIX,
        help="name prefix of the secret written, {prefix}{org}/{backend} (default %(default)s: the "
        "template's SecretNamePrefix, the only secrets the function may read)",
    )


def _credentials_from_args(
    args: argparse.Namespace, store: AdminStore, provider: str = Provider.S3
) -> NewCredentials | None:
    if provider == Provider.OCI:
        return _registry_login_from_args(args)
    if provider == Provider.AZURE_BLOB:
        return _azure_credentials_from_args(args)
    if getattr(args, "username", None) or getattr(args, "anonymous", False):
        raise UsageError("--username and --anonymous are for --provider OCI")
    if getattr(args, "account_key", None) or getattr(args, "tenant_id", None):
        raise UsageError("--account-key and --tenant-id are for --provider AzureBlob")
    chosen = [
        name for name in ("access_key_id", "new_key_for_user", "secret_name") if getattr(args, name, None)
    ]
    if len(chosen) > 1:
        raise UsageError("give only one of --access-key-id, --new-key-for-user, --secret-name")
    if args.secret_access_key and not args.access_key_id:
        raise UsageError("--secret-access-key needs --access-key-id")
    if not chosen:
        return None
    if args.access_key_id:
        secret = args.secret_access_key or os.environ.get(SECRET_ENV)
        if not secret and sys.stdin.isatty():
            secret = getpass.getpass(f"secret access key for {args.access_key_id}: ")
        if not secret:
            raise UsageError(f"no secret access key: pass --secret-access-key or set {SECRET_ENV}")
        return NewCredentials(Credentials(args.access_key_id, secret, args.session_token or None))
    if args.new_key_for_user:
        return _create_key(store, args.new_key_for_user)
    return NewCredentials(store.read_credentials(args.secret_name), secret_name=args.secret_name)


def _registry_login_from_args(args: argparse.Namespace) -> NewCredentials | None:
    if getattr(args, "access_key_id", None) or getattr(args, "new_key_for_user", None):
        raise UsageError("an OCI backend takes --username (and its password) or --anonymous, not S3 keys")
    secret_name = getattr(args, "secret_name", None)
    chosen = [name for name in ("username", "anonymous") if getattr(args, name, None)]
    if secret_name:
        chosen.append("secret_name")
    if len(chosen) > 1:
        raise UsageError("give only one of --username, --anonymous, --secret-name")
    if not chosen:
        return None
    if secret_name:
        return NewCredentials(secret_name=secret_name)
    if args.anonymous:
        return NewCredentials()
    password = args.password or os.environ.get(REGISTRY_PASSWORD_ENV)
    if not password and sys.stdin.isatty():
        password = getpass.getpass(f"registry password or token for {args.username}: ")
    if not password:
        raise UsageError(f"no registry password: pass --password or set {REGISTRY_PASSWORD_ENV}")
    return NewCredentials(provider_secret={"Username": args.username, "Password": password})


def _azure_credentials_from_args(args: argparse.Namespace) -> NewCredentials | None:
    if getattr(args, "access_key_id", None) or getattr(args, "username", None):
        raise UsageError(
            "an AzureBlob backend takes --account-key or a service principal, not S3 keys or a login"
        )
    secret_name = getattr(args, "secret_name", None)
    principal = [getattr(args, n, None) for n in ("tenant_id", "client_id")]
    chosen = [
        name
        for name, given in (
            ("account_key", args.account_key),
            ("tenant_id", any(principal)),
            ("secret_name", secret_name),
        )
        if given
    ]
    if len(chosen) > 1:
        raise UsageError(
            "give only one of --account-key, a service principal (--tenant-id ...), --secret-name"
        )
    if secret_name:
        return NewCredentials(secret_name=secret_name)
    if any(principal):
        if not all(principal):
            raise UsageError("a service principal needs --tenant-id and --client-id (and its secret)")
        secret = _secret_argument(args.client_secret, AZURE_SECRET_ENV, f"client secret of {args.client_id}")
        return NewCredentials(
            provider_secret={"TenantID": args.tenant_id, "ClientID": args.client_id, "ClientSecret": secret}
        )
    if args.account_key is None and not os.environ.get(AZURE_KEY_ENV):
        return None
    key = _secret_argument(args.account_key, AZURE_KEY_ENV, "storage account key")
    return NewCredentials(provider_secret={"AccountKey": key})


def _secret_argument(given: str | None, env: str, what: str) -> str:
    value = given or os.environ.get(env)
    if not value and sys.stdin.isatty():
        value = getpass.getpass(f"{what}: ")
    if not value:
        raise UsageError(f"no {what}: pass it or set {env}")
    return value


def _create_key(store: AdminStore, user: str) -> NewCredentials:
    try:
        key = store.client("iam").create_access_key(UserName=user)["AccessKey"]
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "")
        if code == "NoSuchEntity":
            raise AdminError(f"IAM user {user!r} does not exist") from None
        if code == "LimitExceeded":
            raise AdminError(
                f"IAM user {user!r} already has two access keys",
                hint="delete a key nothing uses any more in IAM, or pass the new keys with --access-key-id",
            ) from None
        raise
    return NewCredentials(Credentials(str(key["AccessKeyId"]), str(key["SecretAccessKey"])), iam_user=user)


def _validate(
    store: AdminStore,
    credentials: Credentials,
    location: str,
    region: str | None,
    prefix: str,
    *,
    fresh: bool,
) -> str | None:
    """None when the keys can read the location; else the failure reason."""
    client, bucket = store.s3_for(credentials, location, region)
    delays = _NEW_KEY_RETRY_DELAYS_S if fresh else ()
    reason = probe_read_access(client, bucket, prefix)
    for delay in delays:
        if reason is None or reason.value not in {"credentials_invalid", "access_denied"}:
            break
        time.sleep(delay)
        reason = probe_read_access(client, bucket, prefix)
    return None if reason is None else reason.value


def _probe_with_port(store: AdminStore, row: Backend, new: NewCredentials) -> str | None:
    """The service's own read-only probe through the provider's adapter; None when healthy."""
    try:
        secret = store.read_secret(new.secret_name) if new.secret_name else SecretFields(new.secret_value())
        reason = store.providers.open(row, secret).probe(row.key_prefix or "")
    except AttemptFailed as failure:
        reason = failure.reason
    return None if reason is None else reason.value


def _describe(row: Backend) -> str:
    role = "default" if row.is_default else "fallback" if row.is_fallback else "neither default nor fallback"
    return f"{row.name} ({row.id}) in org {row.org_id}: {row.location}, {role}, status {row.status}"


# ---------------------------------------------------------------------------------------------- add


def cmd_add(args: argparse.Namespace, store: AdminStore) -> int:
    if args.default and args.fallback:
        raise UsageError("a backend is never both default and fallback: pass one of --default, --fallback")
    if args.provider not in {p.value for p in Provider}:
        note(f"warning: the service skips provider {args.provider!r} (unsupported_provider)")
    parse_location_or_fail(args.location, args.provider)
    existing = store.backends_of_org(args.org)
    if any(r.name == args.name and not r.deleted for r in existing):
        raise AdminError(f"org {args.org!r} already has a backend named {args.name!r}")
    new = _credentials_from_args(args, store, args.provider)
    if new is None:
        if args.provider == Provider.OCI:
            raise UsageError("give the registry login: --username, --anonymous or --secret-name")
        if args.provider == Provider.AZURE_BLOB:
            raise UsageError("give --account-key, a service principal (--tenant-id ...) or --secret-name")
        raise UsageError("give the credentials: --access-key-id, --new-key-for-user or --secret-name")
    live = [r for r in existing if not r.deleted]
    make_default = args.default or (not args.fallback and not any(r.is_default for r in live))
    row = _new_row(
        args.org,
        args.name,
        args.location,
        args.backend_region,
        args.key_prefix,
        args.provider,
        is_default=make_default,
        is_fallback=bool(args.fallback),
    )
    row = _register(
        args,
        store,
        row,
        new,
        unset=[(r, "is_default") for r in live if r.is_default and make_default]
        + [(r, "is_fallback") for r in live if r.is_fallback and args.fallback],
    )
    if make_default and not args.default:
        note(f"{args.name} is the org's first default backend")
    _print_row(args, row, "added")
    return 0


def _new_row(
    org: str,
    name: str,
    location: str,
    region: str | None,
    key_prefix: str | None,
    provider: str,
    *,
    is_default: bool = False,
    is_fallback: bool = False,
) -> Backend:
    return Backend(
        id=str(uuid.uuid4()),
        org_id=org,
        name=name,
        provider=provider,
        location=location,
        secret_name="",
        created_at=utc_now_iso(),
        region=region or None,
        key_prefix=key_prefix or "",
        is_default=is_default,
        is_fallback=is_fallback,
    )


def _register(
    args: argparse.Namespace,
    store: AdminStore,
    row: Backend,
    new: NewCredentials,
    unset: list[tuple[Backend, str]],
) -> Backend:
    """Validate the keys (unless --no-validate), store them, write the row (and flag changes): the row
    as written."""
    if not args.no_validate and row.provider in {Provider.OCI, Provider.AZURE_BLOB}:
        reason = _probe_with_port(store, row, new)
        if reason is not None:
            raise AdminError(
                f"the credentials cannot read {row.location}: {reason}; nothing was written",
                hint="check the login, key or client secret, or pass --no-validate",
            )
        row = replace(row, validation_status=ValidationStatus.OK, validated_at=utc_now_iso())
    if not args.no_validate and row.provider == Provider.S3 and new.credentials is not None:
        reason = _validate(
            store,
            new.credentials,
            row.location,
            row.region,
            row.key_prefix or "",
            fresh=new.iam_user is not None,
        )
        if reason is not None:
            raise AdminError(
                f"the credentials cannot read {row.location}: {reason}; nothing was written",
                hint="check the keys and their policy (s3:GetObject, s3:ListBucket), or pass --no-validate",
            )
        row = replace(row, validation_status=ValidationStatus.OK, validated_at=utc_now_iso())
    if new.secret_name:
        row = replace(row, secret_name=new.secret_name)
    else:
        row = replace(row, secret_name=f"{args.secret_prefix}{row.org_id}/{row.name}")
        store.create_secret(row.secret_name, new.secret_value(), row.region)
    store.write_backend(row, unset_flags_of=unset)
    return row


def _print_row(args: argparse.Namespace, row: Backend, verb: str) -> None:
    if args.json:
        print_json(public(row))
    else:
        print(f"{verb} {_describe(row)}")


# --------------------------------------------------------------------------------------------- list


def cmd_list(args: argparse.Namespace, store: AdminStore) -> int:
    rows = store.known_org(args.org)
    if not args.all:
        rows = [r for r in rows if not r.deleted]
    if args.json:
        print_json([public(r) for r in rows])
        return 0
    headers = ["NAME", "DEFAULT", "FALLBACK", "STATUS", "VALIDATED_AT", "LOCATION", "ID"]
    if args.all:
        headers.append("DELETED_AT")
    table = []
    for r in rows:
        status = r.status + (
            f" ({r.validation_error})" if r.validation_error and r.status != ValidationStatus.OK else ""
        )
        cells: list[object] = [r.name, r.is_default, r.is_fallback, status, r.validated_at, r.location, r.id]
        if args.all:
            cells.append(r.deleted_at)
        table.append(cells)
    print_table(headers, table)
    return 0


# ---------------------------------------------------------------------------- default and fallback


def cmd_set_default(args: argparse.Namespace, store: AdminStore) -> int:
    row = store.find_backend(args.org, args.backend)
    others = [r for r in store.backends_of_org(args.org, include_deleted=False) if r.id != row.id]
    if row.is_default and not any(r.is_default for r in others):
        _print_flags(args, store, row, f"{row.name} already is the default backend of {args.org}")
        return 0
    store.set_flag(row, "is_default", clear=[(r, "is_default") for r in others if r.is_default])
    if row.is_fallback:
        note(f"{row.name} was the fallback backend: {args.org} has no fallback now")
    _print_flags(args, store, row, f"{row.name} is the default backend of {args.org}")
    return 0


def cmd_set_fallback(args: argparse.Namespace, store: AdminStore) -> int:
    live = store.backends_of_org(args.org, include_deleted=False)
    if args.clear:
        if args.backend:
            raise UsageError("pass a backend or --clear, not both")
        store.known_org(args.org)
        store.clear_flags([(r, "is_fallback") for r in live if r.is_fallback])
        if args.json:
            print_json({"org_id": args.org, "fallback": None})
        else:
            print(f"{args.org} has no fallback backend")
        return 0
    if not args.backend:
        raise UsageError("name the backend to make the fallback (or pass --clear)")
    row = store.find_backend(args.org, args.backend)
    if row.is_default:
        raise AdminError(
            f"{row.name} is the default backend of {args.org}; a backend is never both default and fallback",
            hint="make another backend the default first (backend set-default)",
        )
    store.set_flag(
        row, "is_fallback", clear=[(r, "is_fallback") for r in live if r.is_fallback and r.id != row.id]
    )
    _print_flags(args, store, row, f"{row.name} is the fallback backend of {args.org}")
    return 0


def _print_flags(args: argparse.Namespace, store: AdminStore, row: Backend, message: str) -> None:
    if args.json:
        fresh = store.get_backend(row.id)
        print_json(public(fresh or row))
    else:
        print(message)


# ------------------------------------------------------------------------------------------- delete


def cmd_delete(args: argparse.Namespace, store: AdminStore) -> int:
    row = store.find_backend(args.org, args.backend)
    at = store.soft_delete(row)
    if row.is_default:
        note(f"warning: {row.name} was the default backend: {args.org} has no default now")
    if args.json:
        print_json({**public(row), "deleted_at": at, "is_default": False, "is_fallback": False})
    else:
        print(
            f"deleted {row.name} ({row.id}) at {at}: the service never uses it again; "
            f"its secret {row.secret_name} is kept"
        )
    return 0


# ------------------------------------------------------------------------------------------- rotate


def cmd_rotate(args: argparse.Namespace, store: AdminStore) -> int:
    """New backend on the same location with new keys, made the default; optionally revoke the old key."""
    old = store.find_backend(args.org, args.backend)
    live = store.backends_of_org(args.org, include_deleted=False)
    name = args.new_name or f"{old.name}-{dt.datetime.now(dt.UTC):%Y%m%d%H%M%S}"
    if any(r.name == name for r in live):
        raise AdminError(f"org {args.org!r} already has a backend named {name!r}", hint="pass --new-name")
    if old.provider in {Provider.OCI, Provider.AZURE_BLOB}:
        return _rotate_provider_secret(args, store, old, live, name)
    old_credentials = store.read_credentials(old.secret_name)
    old_user = _iam_user_of(store, old_credentials.access_key_id)
    new = _credentials_from_args(args, store)
    if new is None:
        if old_user is None:
            raise AdminError(
                f"cannot find the IAM user of {old.name}'s key (deleted already, or not an IAM key)",
                hint="pass the new keys: --access-key-id (and its secret) or --new-key-for-user",
            )
        new = _create_key(store, old_user)
    if args.revoke_old and old_user is None:
        raise AdminError(f"cannot revoke {old.name}'s key: its IAM user is unknown (already deleted?)")
    row = _new_row(args.org, name, old.location, old.region, old.key_prefix, old.provider, is_default=True)
    row = _register(args, store, row, new, unset=[(r, "is_default") for r in live if r.is_default])
    revoked = False
    if args.revoke_old and old_user is not None:
        store.client("iam").delete_access_key(UserName=old_user, AccessKeyId=old_credentials.access_key_id)
        store.record_validation(
            old, ValidationStatus.INVALID, "access key revoked by cas-admin backend rotate"
        )
        revoked = True
    if args.json:
        print_json({"old": public(old), "new": public(row), "old_key_revoked": revoked})
    else:
        print(f"rotated {old.name} -> {_describe(row)}")
        if revoked:
            print(
                f"revoked {old.name}'s access key: artifacts mapped to it are now served through "
                f"{row.name} (X-Cas-Fallback: true)"
            )
        else:
            print(f"{old.name} keeps its key until you revoke it (--revoke-old, or in IAM)")
    return 0


def _rotate_provider_secret(
    args: argparse.Namespace, store: AdminStore, old: Backend, live: list[Backend], name: str
) -> int:
    """OCI and AzureBlob: a new backend on the same location with the new login, key or client
    secret, made the default. Revoking the old one is the registry's or the account's business."""
    if args.revoke_old:
        raise UsageError(
            "--revoke-old is for S3 keys: revoke the old password, account key or client secret where it lives"
        )
    new = _credentials_from_args(args, store, old.provider)
    if new is None:
        raise UsageError(
            "give the new credentials: a login, an account key, a service principal or --secret-name"
        )
    row = _new_row(args.org, name, old.location, old.region, old.key_prefix, old.provider, is_default=True)
    row = _register(args, store, row, new, unset=[(r, "is_default") for r in live if r.is_default])
    if args.json:
        print_json({"old": public(old), "new": public(row), "old_key_revoked": False})
    else:
        print(f"rotated {old.name} -> {_describe(row)}")
    return 0


def _iam_user_of(store: AdminStore, access_key_id: str) -> str | None:
    try:
        response = store.client("iam").get_access_key_last_used(AccessKeyId=access_key_id)
    except ClientError:
        return None
    user = response.get("UserName")
    return str(user) if user else None
