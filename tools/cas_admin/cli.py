"""cas-admin: manage cas-download's storage backends and artifacts.

Works against AWS with the standard credential chain (env, profile, SSO, instance role) and against
the local stack of ``make run`` through ``AWS_ENDPOINT_URL`` and its per-service variants
(``eval "$(cas-local env)"`` sets them, with the table names and the API's URL).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from functools import partial

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
from cas_admin.parsing import (
    BACKEND,
    DIGEST,
    ORG,
    Command,
    Parser,
    add_command,
    add_group,
    backend_argument,
    one_of,
    option,
    region_option,
    table_option,
)
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

BACKEND_COMMANDS = (
    Command(
        "add",
        backends.cmd_add,
        help="register an S3 or S3-compatible backend",
        description="Register a backend: the credentials go to Secrets Manager (the spec's JSON form), "
        "the row to the Backends table. The keys are checked first (a list of the bucket). "
        "An org's first backend becomes its default.",
        arguments=(
            option("name", help="backend name, unique in the org"),
            ORG,
            option(
                "--location",
                required=True,
                help="bucket name (AWS S3) or http(s)://host[:port]/bucket (S3-compatible)",
            ),
            region_option("backend_region", help="the bucket's region (row attribute region)"),
            option("--key-prefix", help="prefix before the object name (row attribute key_prefix)"),
            option("--provider", default="AWS-S3", help="provider (default %(default)s; others are skipped)"),
            one_of(
                option("--default", action="store_true", help="make it the org's default backend"),
                option("--fallback", action="store_true", help="make it the org's fallback backend"),
            ),
            option("--no-validate", action="store_true", help="register without checking the keys"),
            partial(backends.add_credential_arguments, required=True),
        ),
    ),
    Command(
        "list",
        backends.cmd_list,
        help="an org's backends",
        description="An org's backends: default, fallback, validation.",
        arguments=(ORG, option("--all", action="store_true", help="include deleted backends")),
    ),
    Command(
        "set-default",
        backends.cmd_set_default,
        help="make a backend the org's default",
        description="Make a backend the org's only default (any other loses the flag, in one transaction). "
        "A fallback made default stops being the fallback.",
        arguments=(BACKEND, ORG),
    ),
    Command(
        "set-fallback",
        backends.cmd_set_fallback,
        help="make a backend the org's fallback",
        description="Make a backend the org's only fallback (never the default one), or --clear it.",
        arguments=(
            backend_argument(nargs="?"),
            ORG,
            option("--clear", action="store_true", help="the org has no fallback backend"),
        ),
    ),
    Command(
        "delete",
        backends.cmd_delete,
        help="soft-delete a backend (deleted_at)",
        description="Soft delete: sets deleted_at; the service never uses a deleted backend. "
        "Its secret and the objects stay.",
        arguments=(BACKEND, ORG),
    ),
    Command(
        "rotate",
        backends.cmd_rotate,
        help="new backend, same bucket, new keys, made default",
        description="Rotate credentials the way the service expects: a new backend on the same location "
        "with new keys becomes the default; artifacts mapped to the old one are then served through it. "
        "Without credential options a new access key is created for the IAM user of the old key.",
        arguments=(
            backend_argument("the backend to rotate away from (name or id)"),
            ORG,
            option("--new-name", help="name of the new backend (default: <old name>-<UTC timestamp>)"),
            option("--revoke-old", action="store_true", help="then delete the old access key in IAM"),
            option("--no-validate", action="store_true", help="do not check the new keys first"),
            partial(backends.add_credential_arguments, required=False),
        ),
    ),
)

ARTIFACT_COMMANDS = (
    Command(
        "put",
        artifacts.cmd_put,
        help="upload a file and map it to the org",
        description="Upload FILE under {key_prefix}sha256:<hex> through the backend's own credentials, "
        "with its SHA-256 as S3 checksum and its name as `filename` metadata (RFC 2047 when not ASCII), "
        "then write the mapping. Prints the digest.",
        arguments=(
            option("file", help="the file to upload"),
            ORG,
            option("--backend", help="backend name or id (default: the org's default)"),
            option("--filename", help="download name (default: the file's name)"),
            option("--content-type", help="Content-Type (default: guessed from the name)"),
            option("--workflow-run-id", help="provenance, stored on the mapping"),
        ),
    ),
    Command(
        "get",
        artifacts.cmd_get,
        help="download through the API and verify the SHA-256",
        description="Ask the API for the artifact (redirect mode), follow the presigned URL, hash the bytes "
        "and keep them only if they are the digest's. A progress bar shows on a terminal for large files.",
        arguments=(
            DIGEST,
            option("--api-url", help="the API's base URL (default: env CAS_API_URL)"),
            one_of(
                option(
                    "--org", help="local server only: the caller's org(s), sent as Bearer local:ORG[,ORG]"
                ),
                option("--token", help="a JWT for the deployed API (better: env CAS_TOKEN)"),
            ),
            option(
                "-o",
                "--output",
                help="file or directory to write (default: the artifact's filename; - for stdout)",
            ),
            option("--force", action="store_true", help="overwrite an existing file"),
            option("--no-progress", action="store_true", help="no progress bar"),
        ),
        needs_store=False,
    ),
    Command(
        "where",
        artifacts.cmd_where,
        help="which backends could serve a digest, and why not the others",
        description="Probe every candidate backend (read-only, through its own credentials) in the "
        "service's own order (cas_download.logic.candidates) and report which one serves and why the "
        "others cannot. Exit status 1 when none can.",
        arguments=(
            DIGEST,
            option(
                "--org",
                action="append",
                help="the caller's org(s) (repeat or comma-separate; default: every holding org)",
            ),
        ),
    ),
)

SYNC_COMMANDS = (
    Command(
        "chainloop",
        sync.cmd_sync_chainloop,
        help="copy Chainloop's backends and new mappings from its PostgreSQL database",
        description="Copy Chainloop's cas_backends (all of them) and the cas_mappings created since the "
        "last run into the Backends and Mappings tables. Idempotent: a second run writes nothing new. "
        "Never touches secrets or objects. The same code as the scheduled ChainloopSyncFunction.",
        arguments=(
            option(
                "--dsn",
                help=f"libpq connection string or URL of Chainloop's database (default: env {sync.DSN_VARIABLE})",
            ),
            option("--dry-run", action="store_true", help="read and compare, write nothing"),
            sync.add_overlap_option,
        ),
    ),
)

# Before the group: where the tables are and which AWS credentials reach them.
GLOBAL_OPTIONS = (
    table_option("Backends", "BACKENDS_TABLE"),
    table_option("Mappings", "MAPPINGS_TABLE"),
    region_option("global_region", help="AWS region (default: the credential chain's)"),
    option("--profile", help="AWS profile (default: the credential chain's)"),
)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog=PROG,
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    for argument in GLOBAL_OPTIONS:
        argument(parser)
    groups = parser.add_subparsers(
        dest="group", metavar="{backend,artifact,sync,chainloop,verify}", required=True, parser_class=Parser
    )
    add_group(
        groups,
        "backend",
        help="storage backends of an org",
        description="Storage backends of an org.",
        commands=BACKEND_COMMANDS,
    )
    add_group(
        groups,
        "artifact",
        help="artifacts by digest",
        description="Artifacts by digest.",
        commands=ARTIFACT_COMMANDS,
    )
    add_group(
        groups,
        "sync",
        help="import backends and mappings from a control plane",
        description="Import backends and mappings from a control plane.",
        commands=SYNC_COMMANDS,
    )
    add_group(groups, "chainloop", **chainloop_link.GROUP)
    add_command(groups, verify.COMMAND)
    return parser


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
