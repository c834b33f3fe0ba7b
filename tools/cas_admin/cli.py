"""cas-admin: manage cas-download's storage backends and artifacts.

Works against AWS with the standard credential chain (env, profile, SSO, instance role) and against
the local stack of ``make run`` through ``AWS_ENDPOINT_URL`` and its per-service variants
(``eval "$(cas-local env)"`` sets them, with the table names and the API's URL).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
)
from pynamodb.exceptions import PynamoDBException

from cas_admin import artifacts, backends, chainloop_link, sync, verify
from cas_admin.errors import EXIT_USAGE, AdminError, UsageError
from cas_admin.store import AdminStore
from cas_download.errors import CasError

PROG = "cas-admin"
EPILOG = """\
environment:
  BACKENDS_TABLE, MAPPINGS_TABLE  the tables (or --backends-table / --mappings-table)
  AWS_ENDPOINT_URL[_S3|_IAM|...]   other endpoints than AWS's, e.g. the local stack: eval "$(cas-local env)"
  CAS_API_URL, CAS_TOKEN           for `artifact get` (or --api-url / --token)
  CHAINLOOP_DATABASE_URL           for `sync chainloop` (or --dsn)
  CHAINLOOP_CAS_PRIVATE_KEY_PATH   for `chainloop link` (or --key)
  VERIFICATIONS_TABLE              for `verify` (or --verifications-table)

exit status: 0 ok, 1 failed (unknown org, duplicate name, not found, AWS or API error),
             2 bad input (bad digest, missing file, bad options), 3 downloaded bytes failed verification
"""

Command = Callable[[argparse.Namespace, Any], int]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--backends-table", help="Backends table (default: env BACKENDS_TABLE)")
    parser.add_argument("--mappings-table", help="Mappings table (default: env MAPPINGS_TABLE)")
    parser.add_argument(
        "--region",
        dest="global_region",
        metavar="REGION",
        help="AWS region (default: the credential chain's)",
    )
    parser.add_argument("--profile", help="AWS profile (default: the credential chain's)")
    groups = parser.add_subparsers(
        dest="group", metavar="{backend,artifact,sync,chainloop,verify}", required=True, parser_class=_Parser
    )
    _backend_commands(groups)
    _artifact_commands(groups)
    _sync_commands(groups)
    chainloop_link.add_commands(groups, _Parser)
    verify.add_commands(groups, _Parser)
    return parser


def _backend_commands(groups: Any) -> None:
    backend = groups.add_parser(
        "backend", help="storage backends of an org", description="Storage backends of an org."
    )
    commands = backend.add_subparsers(dest="command", required=True, parser_class=_Parser)

    add = commands.add_parser(
        "add",
        help="register an S3 or S3-compatible backend",
        description="Register a backend: the credentials go to Secrets Manager (the spec's JSON form), "
        "the row to the Backends table. The keys are checked first (a list of the bucket). "
        "An org's first backend becomes its default.",
    )
    add.add_argument("name", help="backend name, unique in the org")
    _org(add)
    add.add_argument(
        "--location",
        required=True,
        help="bucket name (AWS S3) or http(s)://host[:port]/bucket (S3-compatible)",
    )
    add.add_argument(
        "--region", dest="backend_region", metavar="REGION", help="the bucket's region (row attribute region)"
    )
    add.add_argument("--key-prefix", help="prefix before the object name (row attribute key_prefix)")
    add.add_argument(
        "--provider", default="AWS-S3", help="provider (default %(default)s; others are skipped)"
    )
    flags = add.add_mutually_exclusive_group()
    flags.add_argument("--default", action="store_true", help="make it the org's default backend")
    flags.add_argument("--fallback", action="store_true", help="make it the org's fallback backend")
    add.add_argument("--no-validate", action="store_true", help="register without checking the keys")
    backends.add_credential_arguments(add, required=True)
    _json(add)
    add.set_defaults(func=backends.cmd_add)

    listing = commands.add_parser(
        "list", help="an org's backends", description="An org's backends: default, fallback, validation."
    )
    _org(listing)
    listing.add_argument("--all", action="store_true", help="include deleted backends")
    _json(listing)
    listing.set_defaults(func=backends.cmd_list)

    _one_backend_command(
        commands,
        "set-default",
        backends.cmd_set_default,
        help="make a backend the org's default",
        description="Make a backend the org's only default (any other loses the flag, in one transaction). "
        "A fallback made default stops being the fallback.",
    )

    fallback = commands.add_parser(
        "set-fallback",
        help="make a backend the org's fallback",
        description="Make a backend the org's only fallback (never the default one), or --clear it.",
    )
    fallback.add_argument("backend", nargs="?", help="backend name or id")
    _org(fallback)
    fallback.add_argument("--clear", action="store_true", help="the org has no fallback backend")
    _json(fallback)
    fallback.set_defaults(func=backends.cmd_set_fallback)

    _one_backend_command(
        commands,
        "delete",
        backends.cmd_delete,
        help="soft-delete a backend (deleted_at)",
        description="Soft delete: sets deleted_at; the service never uses a deleted backend. "
        "Its secret and the objects stay.",
    )

    rotate = commands.add_parser(
        "rotate",
        help="new backend, same bucket, new keys, made default",
        description="Rotate credentials the way the service expects: a new backend on the same location "
        "with new keys becomes the default; artifacts mapped to the old one are then served through it. "
        "Without credential options a new access key is created for the IAM user of the old key.",
    )
    rotate.add_argument("backend", help="the backend to rotate away from (name or id)")
    _org(rotate)
    rotate.add_argument("--new-name", help="name of the new backend (default: <old name>-<UTC timestamp>)")
    rotate.add_argument("--revoke-old", action="store_true", help="then delete the old access key in IAM")
    rotate.add_argument("--no-validate", action="store_true", help="do not check the new keys first")
    backends.add_credential_arguments(rotate, required=False)
    _json(rotate)
    rotate.set_defaults(func=backends.cmd_rotate)


def _one_backend_command(commands: Any, name: str, func: Command, *, help: str, description: str) -> None:
    """A command that takes one backend of an org and nothing else: BACKEND, --org, --json."""
    parser = commands.add_parser(name, help=help, description=description)
    parser.add_argument("backend", help="backend name or id")
    _org(parser)
    _json(parser)
    parser.set_defaults(func=func)


def _artifact_commands(groups: Any) -> None:
    artifact = groups.add_parser("artifact", help="artifacts by digest", description="Artifacts by digest.")
    acommands = artifact.add_subparsers(dest="command", required=True, parser_class=_Parser)

    put = acommands.add_parser(
        "put",
        help="upload a file and map it to the org",
        description="Upload FILE under {key_prefix}sha256:<hex> through the backend's own credentials, "
        "with its SHA-256 as S3 checksum and its name as `filename` metadata (RFC 2047 when not ASCII), "
        "then write the mapping. Prints the digest.",
    )
    put.add_argument("file", help="the file to upload")
    _org(put)
    put.add_argument("--backend", help="backend name or id (default: the org's default)")
    put.add_argument("--filename", help="download name (default: the file's name)")
    put.add_argument("--content-type", help="Content-Type (default: guessed from the name)")
    put.add_argument("--workflow-run-id", help="provenance, stored on the mapping")
    _json(put)
    put.set_defaults(func=artifacts.cmd_put)

    get = acommands.add_parser(
        "get",
        help="download through the API and verify the SHA-256",
        description="Ask the API for the artifact (redirect mode), follow the presigned URL, hash the bytes "
        "and keep them only if they are the digest's. A progress bar shows on a terminal for large files.",
    )
    get.add_argument("digest", help="sha256:<64 hex> or 64 hex")
    get.add_argument("--api-url", help="the API's base URL (default: env CAS_API_URL)")
    who = get.add_mutually_exclusive_group()
    who.add_argument("--org", help="local server only: the caller's org(s), sent as Bearer local:ORG[,ORG]")
    who.add_argument("--token", help="a JWT for the deployed API (better: env CAS_TOKEN)")
    get.add_argument(
        "-o", "--output", help="file or directory to write (default: the artifact's filename; - for stdout)"
    )
    get.add_argument("--force", action="store_true", help="overwrite an existing file")
    get.add_argument("--no-progress", action="store_true", help="no progress bar")
    _json(get)
    get.set_defaults(func=artifacts.cmd_get, needs_store=False)

    where = acommands.add_parser(
        "where",
        help="which backends could serve a digest, and why not the others",
        description="Probe every candidate backend (read-only, through its own credentials) in the "
        "service's own order (cas_download.logic.candidates) and report which one serves and why the "
        "others cannot. Exit status 1 when none can.",
    )
    where.add_argument("digest", help="sha256:<64 hex> or 64 hex")
    where.add_argument(
        "--org",
        action="append",
        help="the caller's org(s) (repeat or comma-separate; default: every holding org)",
    )
    _json(where)
    where.set_defaults(func=artifacts.cmd_where)


def _sync_commands(groups: Any) -> None:
    group = groups.add_parser(
        "sync",
        help="import backends and mappings from a control plane",
        description="Import backends and mappings from a control plane.",
    )
    commands = group.add_subparsers(dest="command", required=True, parser_class=_Parser)
    chainloop = commands.add_parser(
        "chainloop",
        help="copy Chainloop's backends and new mappings from its PostgreSQL database",
        description="Copy Chainloop's cas_backends (all of them) and the cas_mappings created since the "
        "last run into the Backends and Mappings tables. Idempotent: a second run writes nothing new. "
        "Never touches secrets or objects. The same code as the scheduled ChainloopSyncFunction.",
    )
    chainloop.add_argument(
        "--dsn",
        help=f"libpq connection string or URL of Chainloop's database (default: env {sync.DSN_VARIABLE})",
    )
    chainloop.add_argument("--dry-run", action="store_true", help="read and compare, write nothing")
    sync.add_overlap_option(chainloop)
    _json(chainloop)
    chainloop.set_defaults(func=sync.cmd_sync_chainloop)


def _org(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--org", required=True, help="organization id")


def _json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def _store(args: argparse.Namespace) -> AdminStore:
    backends_table = args.backends_table or os.environ.get("BACKENDS_TABLE")
    mappings_table = args.mappings_table or os.environ.get("MAPPINGS_TABLE")
    if not backends_table or not mappings_table:
        raise UsageError(
            "which tables? set BACKENDS_TABLE and MAPPINGS_TABLE (or --backends-table/--mappings-table); "
            'for the local stack: eval "$(cas-local env)"'
        )
    import boto3  # noqa: PLC0415 - only commands that need AWS pay for it

    session = boto3.session.Session(profile_name=args.profile, region_name=args.global_region)
    return AdminStore(backends_table, mappings_table, session=session, region=args.global_region)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as done:  # --help (0) or a usage error (2): a status, not an exception
        return done.code if isinstance(done.code, int) else EXIT_USAGE
    if args.profile:
        os.environ["AWS_PROFILE"] = args.profile  # PynamoDB (artifact where) reads the profile from env
    try:
        store = _store(args) if getattr(args, "needs_store", True) else None
        code: int = args.func(args, store)
        return code
    except AdminError as error:
        print(f"{PROG}: error: {error.message}", file=sys.stderr)
        if error.hint:
            print(f"{PROG}: hint: {error.hint}", file=sys.stderr)
        return error.exit_code
    except NoCredentialsError:
        return _fail("no AWS credentials found (standard chain: env, profile, SSO, instance role)")
    except NoRegionError:
        return _fail("no AWS region: pass --region or set AWS_REGION")
    except EndpointConnectionError as error:
        return _fail(f"cannot reach {error.kwargs.get('endpoint_url', 'the AWS endpoint')}")
    except ClientError as error:
        err = error.response.get("Error", {})
        return _fail(f"{error.operation_name} failed: {err.get('Code')}: {err.get('Message')}")
    except CasError as error:  # the service's own data access (artifact where)
        return _fail(error.message)
    except (BotoCoreError, PynamoDBException) as error:
        return _fail(f"{type(error).__name__}: {error}")
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 1


def _fail(message: str) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
