"""cas-local: run cas-download on this machine (no AWS account, no Docker).

cas-local run [--port 8080]      the local stack + the demo data + the real handler over HTTP
cas-local invoke EVENT_FILE      one events/ file through the handler, against the local stack
cas-local env                    shell exports that point cas-admin / the AWS CLI at the stack
cas-local env-json               the events/env.json document, from template.yaml
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import signal
import socket
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from cas_admin.errors import AdminError
from cas_local.stack import (
    DEFAULT_STATE_FILE,
    ENV_JSON_PATH,
    FOREIGN_AWS_VARIABLES,
    PUBLIC_KEYS_VARIABLE,
    LocalStack,
    StackEndpoints,
    env_json_document,
    function_environment,
)
from cas_local.template import REPO_ROOT, Template, TemplateError

if TYPE_CHECKING:
    from cas_local.seed import Demo

PROG = "cas-local"
ADMIN = ".venv/bin/cas-admin"  # as the banner's commands run it, from the repository's root
# The function's EMF metric lines are noise on a terminal; `--metrics` keeps them.
QUIET_METRICS = {"POWERTOOLS_METRICS_DISABLED": "true"}


class LocalError(Exception):
    """A clear one-line failure (exit status 1)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser(
        "run",
        help="start the local stack and serve the handler over HTTP (Ctrl-C stops it)",
        description="Start moto (DynamoDB + Secrets Manager; S3 + IAM with IAM authentication on), the "
        "storage gateway, the tables of template.yaml and the demo data (the rotation story), then serve "
        "the real handler on http://HOST:PORT. Authenticate with 'Authorization: Bearer local:<org>'. "
        "Ctrl-C stops everything.",
    )
    run.add_argument(
        "--port", type=int, default=8080, help="API port (default %(default)s; 0: any free port)"
    )
    run.add_argument("--host", default="127.0.0.1", help="address to listen on (default %(default)s)")
    run.add_argument(
        "--gateway-port", type=int, default=0, help="storage gateway port (default: any free port)"
    )
    run.add_argument("--no-seed", action="store_true", help="start with empty tables and no buckets")
    run.add_argument("--metrics", action="store_true", help="print the function's EMF metric lines too")
    _common(run)

    invoke = commands.add_parser(
        "invoke",
        help="run one event file through the handler against the local stack",
        description="Run an events/ file through cas_download.handlers.download against the running local "
        "stack (make run), or, if none runs, against a temporary one with the demo data. Prints the "
        "handler's response (JSON) on stdout; the function's log goes to stderr.",
    )
    invoke.add_argument("event", help="event file, e.g. events/get_redirect.json")
    invoke.add_argument("--metrics", action="store_true", help="print the function's EMF metric lines too")
    _common(invoke)

    env = commands.add_parser(
        "env",
        help="print shell exports for the running stack",
        description='Exports for cas-admin and the AWS CLI: eval "$(cas-local env)"',
    )
    env.add_argument("--state-file", type=Path, default=DEFAULT_STATE_FILE, help="(default: %(default)s)")

    env_json = commands.add_parser(
        "env-json",
        help="print events/env.json (generated from template.yaml)",
        description="The env-vars file of `sam local invoke --env-vars` and `cas-local invoke`: the "
        "download function's table variables at their local names, and the local overrides.",
    )
    env_json.add_argument("--template", type=Path, default=None, help="(default: template.yaml)")
    env_json.add_argument("--check", type=Path, metavar="FILE", help="exit 1 unless FILE holds exactly this")
    return parser


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--state-file", type=Path, default=DEFAULT_STATE_FILE, help="(default: %(default)s)")
    parser.add_argument(
        "--env-vars", type=Path, default=ENV_JSON_PATH, help="env-vars file, as sam's (default: %(default)s)"
    )
    parser.add_argument("--template", type=Path, default=None, help="(default: template.yaml)")


# ------------------------------------------------------------------------------------------------ run


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def cmd_run(args: argparse.Namespace) -> int:
    from cas_download.app import App  # noqa: PLC0415 - heavy imports only for the commands using them
    from cas_download.config import Settings  # noqa: PLC0415
    from cas_local.server import ApiServer  # noqa: PLC0415
    from cas_local.stack import process_environment, start_stack  # noqa: PLC0415

    running = _running_stack(args.state_file)
    if running is not None:
        raise LocalError(
            f"a local stack is already running (pid {running.pid}, {running.api_url}); "
            f"stop it first, or pass another --state-file"
        )
    template = Template.load(args.template)
    _check_port_free(args.host, args.port)
    if args.host not in {"127.0.0.1", "localhost", "::1"}:
        print(
            f"warning: listening on {args.host}: anyone who can reach it may claim any org "
            "(Bearer local:<org> is not authentication)",
            file=sys.stderr,
        )
    signal.signal(signal.SIGTERM, _raise_interrupt)
    log_dir = args.state_file.parent / "logs"
    print(
        "starting moto (DynamoDB, Secrets Manager; S3 and IAM with IAM auth on) ...",
        file=sys.stderr,
        flush=True,
    )
    try:
        stack = start_stack(
            log_dir, template=template, env_json=args.env_vars, gateway_port=args.gateway_port
        )
    except (RuntimeError, TimeoutError, OSError) as error:
        raise LocalError(f"the local stack did not start: {error}\n(moto logs: {log_dir})") from None
    server: ApiServer | None = None
    try:
        demo = None if args.no_seed else _seed_demo(stack, log_dir)
        endpoints = stack.endpoints
        process_env = {**endpoints.aws_env(), **stack.function_env}
        if not args.metrics:
            process_env.update(QUIET_METRICS)
        with process_environment(process_env):
            # The verifier (a poller on moto's Mappings stream, and Lambda's Invoke for the download
            # handler's on-demand asks): its endpoint is the handler's Lambda endpoint.
            os.environ["AWS_ENDPOINT_URL_LAMBDA"] = stack.start_verifier().url
            app = App.create(Settings.from_env(process_env))
            try:
                server = ApiServer(
                    app, host=args.host, port=args.port, timeout_seconds=template.function_timeout_seconds()
                )
            except OSError as error:
                raise LocalError(f"cannot listen on {args.host}:{args.port} ({error.strerror})") from None
            endpoints.api_url = server.url
            endpoints.pid = os.getpid()
            endpoints.demo = demo.to_json() if demo else {}
            endpoints.write(args.state_file)
            print(banner(endpoints, args.state_file), flush=True)
            server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        print("\nstopping ...", file=sys.stderr, flush=True)
        if server is not None:
            server.stop()
        stack.stop()
        with contextlib.suppress(OSError, ValueError):
            if StackEndpoints.read(args.state_file).pid == os.getpid():
                args.state_file.unlink()
        print("stopped: moto servers and gateway are down", file=sys.stderr, flush=True)
    return 0


def _seed_demo(stack: LocalStack, log_dir: Path) -> Demo:
    """The demo data, or one line saying why it could not be written (never a traceback)."""
    from cas_local.seed import seed  # noqa: PLC0415

    try:
        return seed(stack)
    except Exception as error:
        raise LocalError(
            f"the demo data could not be written: {type(error).__name__}: {error}\n(logs: {log_dir})"
        ) from None


def _check_port_free(host: str, port: int) -> None:
    """Fail before starting anything when the API's port is taken."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            raise LocalError(
                f"cannot listen on {host}:{port} ({error.strerror}): try make run PORT={port + 1}"
            ) from None


def _registry_examples(auth: str, api: str | None, arts: dict[str, Any]) -> list[str]:
    chart, sbom = arts["chart.tgz"]["digest"], arts["sbom.json"]["digest"]
    return [
        "  # mapped to registry-ci, whose password was changed: served from the bucket (fallback OCI -> S3)",
        f"  curl -si {auth} {api}/v1/artifacts/{chart} | grep -i '^x-cas'",
        "",
        "  # mapped to the revoked primary-2024, held only by the org's fallback registry-ro (S3 -> OCI);",
        "  # a self-hosted registry serves the bytes itself: no_direct_url for a redirect, so mode=body",
        f"  curl -s {auth} '{api}/v1/artifacts/{sbom}?mode=body'",
        "  # ... a redirect is 502: its attempts say no_direct_url for registry-ro",
        f"  curl -s {auth} {api}/v1/artifacts/{sbom}",
    ]


def _azure_examples(auth: str, api: str | None, arts: dict[str, Any]) -> list[str]:
    notes, archive = arts["azure-notes.txt"]["digest"], arts["archive.tgz"]["digest"]
    return [
        "  # 307 to a read-only SAS for that one blob (sp=r, sr=b, se, rscd); -L follows it",
        f"  curl -si {auth} {api}/v1/artifacts/{notes} | grep -i '^location'",
        f"  curl -sL {auth} {api}/v1/artifacts/{notes}",
        "",
        "  # mapped to azure-2024, whose key was rotated away: served from the bucket (Azure -> S3)",
        f"  curl -si {auth} {api}/v1/artifacts/{archive} | grep -i '^x-cas'",
    ]


@dataclass(frozen=True)
class DemoPart:
    """A part of the demo that needs a server `make <target>` installs: seeded when it is there."""

    key: str  # the demo's key: the server's location when the part was seeded
    heading: str
    name: str
    server: str
    target: str
    examples: Callable[
        [str, str | None, dict[str, Any]], list[str]
    ]  # (auth header, API URL, artifacts by name)

    def banner_lines(
        self, demo: dict[str, Any], auth: str, api: str | None, arts: dict[str, Any]
    ) -> list[str]:
        """The part's commands to paste, or how to get the part."""
        if not demo.get(self.key):
            return [
                f"{self.name} demo: install {self.server} with `make {self.target}`, then `make run` again.",
                "",
            ]
        return [f"{self.heading} ({demo[self.key]}):", "", *self.examples(auth, api, arts), ""]


DEMO_PARTS = (
    DemoPart(
        "registry",
        "Across providers, with a real OCI registry",
        "OCI",
        "CNCF distribution",
        "registry",
        _registry_examples,
    ),
    DemoPart("azure", "Azure Blob Storage, with Azurite", "Azure", "Azurite", "azurite", _azure_examples),
)


def banner(endpoints: StackEndpoints, state_file: Path) -> str:
    """What `make run` prints once everything is up: where things are and commands to paste."""
    api = endpoints.api_url
    lines = [
        "",
        "cas-download runs locally: the real handler behind an HTTP API stand-in, AWS stand-ins by moto.",
        "",
        f"  API (payload 2.0 -> handler)  {api}/v1/artifacts/{{digest}}",
        f"  Chainloop download links      {api}/download/{{digest}}?t=<token>   (no authorizer)",
        f"  storage gateway (S3)          {endpoints.gateway_url}   presigned URLs checked like S3",
        f"  moto S3 + IAM (auth on)       {endpoints.storage_url}",
        f"  moto DynamoDB + Secrets       {endpoints.control_url}",
        "",
        "Local authentication (this server only; the deployed API takes JWTs):",
        "  Authorization: Bearer local:<org>[,<org>]",
    ]
    demo = endpoints.demo
    if demo:
        auth = f"-H 'Authorization: Bearer local:{demo['org']}'"
        arts = {a["name"]: a for a in demo["artifacts"]}
        hello, large, notes = arts["hello.txt"]["digest"], arts["large.bin"], arts["notes-2025.txt"]["digest"]
        resume = arts["résumé.txt"]["digest"]
        lines += [
            "",
            f"The rotation story: {demo['org']}'s artifacts were uploaded through {demo['old_backend']}; its key",
            f"was then rotated: {demo['new_backend']} (same bucket {demo['bucket']}, new key) is the default and",
            f"{demo['old_backend']}'s key is deleted in IAM. Try:",
            "",
            f"  # 307 to a verified presigned URL, served through {demo['new_backend']}: X-Cas-Fallback: true",
            f"  curl -i {auth} {api}/v1/artifacts/{hello}",
            "",
            "  # follow the redirect (through the storage gateway): the verified bytes",
            f"  curl -sL {auth} {api}/v1/artifacts/{hello}",
            "",
            "  # the URL as JSON; a non-ASCII filename",
            f"  curl -s {auth} '{api}/v1/artifacts/{resume}?mode=url'",
            "",
            f"  # {large['size']} bytes: over MAX_BODY_BYTES, so mode=body is 413 ...",
            f"  curl -s {auth} '{api}/v1/artifacts/{large['digest']}?mode=body'",
            "  # ... and the redirect streams it (compare with the digest)",
            f"  curl -sL {auth} {api}/v1/artifacts/{large['digest']} | sha256sum",
            "",
            f"  # uploaded after the rotation, through {demo['new_backend']}: X-Cas-Fallback: false",
            f"  curl -sI {auth} {api}/v1/artifacts/{notes}",
            "",
            "  # another org sees nothing: 404 not_found (no storage call is made)",
            f"  curl -s -H 'Authorization: Bearer local:{demo['other_org']}' {api}/v1/artifacts/{hello}",
            "",
        ]
        if "unproven.bin" in arts:  # verifying ahead of requests (the verifier runs in this process)
            unproven = arts["unproven.bin"]
            lines += [
                f"  # {unproven['size']} bytes, no checksum, over MAX_HASH_BYTES: the first request asks the",
                "  # verifier and answers 503 verification_pending with Retry-After; a moment later, 307",
                f"  curl -si {auth} {api}/v1/artifacts/{unproven['digest']} | head -5",
                "",
            ]
        if demo.get("link") and endpoints.chainloop_cas_private_key_path:
            lines += chainloop_link_lines(demo["link"], endpoints.chainloop_cas_private_key_path)
        for part in DEMO_PARTS:
            lines += part.banner_lines(demo, auth, api, arts)
        lines += [
            "cas-admin against this stack (another terminal):",
            '  eval "$(.venv/bin/cas-local env)"',
            f"  {ADMIN} backend list --org {demo['org']}",
            f"  {ADMIN} artifact where {hello} --org {demo['org']}",
            f"  {ADMIN} artifact get {large['digest']} --org {demo['org']} -o /tmp/large.bin",
        ]
    lines += [
        "",
        "Events through the handler without HTTP: make invoke EVENT=events/get_redirect.json",
        f"State: {state_file}   Ctrl-C stops everything.",
        "",
    ]
    return "\n".join(lines)


def chainloop_link_lines(link: dict[str, Any], private_key_path: str) -> list[str]:
    """The banner's Chainloop download link: the command that mints it (a link lives 30 s, as
    Chainloop's, so the banner never prints one), and curl commands that use a fresh one."""
    mint = f"{ADMIN} chainloop link {link['digest']} --org {link['org']} --backend {link['backend']}"
    return [
        "Chainloop download links, as Chainloop's UI hands them out: the token t is the credential (no",
        "Authorization header). This stack made a P-521 key pair as Chainloop's docs do: the function trusts",
        "its public key (CHAINLOOP_CAS_PUBLIC_KEYS), cas-admin signs with its private key",
        f"({private_key_path}, CHAINLOOP_CAS_PRIVATE_KEY_PATH in cas-local env).",
        "A link is valid 30 s, as Chainloop's: mint a fresh one each time (another terminal):",
        "",
        '  eval "$(.venv/bin/cas-local env)"',
        f"  # {link['artifact']}'s link for {link['backend']} (its token names that backend's secret, whose key",
        f"  # is revoked): 307 through {link['served_by']}, X-Cas-Fallback: true",
        f"  {mint}",
        f"  curl -si \"$({mint})\" | grep -i '^x-cas'",
        "  # ... and followed (through the storage gateway): the verified bytes",
        f'  curl -sL "$({mint})"',
        "",
    ]


# --------------------------------------------------------------------------------------------- invoke


def cmd_invoke(args: argparse.Namespace) -> int:
    from cas_download.app import App  # noqa: PLC0415
    from cas_download.config import Settings  # noqa: PLC0415
    from cas_download.handlers.download import instrumented_handler  # noqa: PLC0415
    from cas_local.events import LocalLambdaContext, load_event_file  # noqa: PLC0415
    from cas_local.seed import seed  # noqa: PLC0415
    from cas_local.stack import process_environment, start_stack  # noqa: PLC0415

    path = Path(args.event)
    try:
        event = load_event_file(path)
    except FileNotFoundError:
        raise LocalError(f"no such event file: {path}") from None
    except ValueError as error:
        raise LocalError(f"{path} is not an event: {error}") from None
    template = Template.load(args.template)
    function_env = function_environment(template, args.env_vars)
    endpoints = _running_stack(args.state_file)
    stack: LocalStack | None = None
    if endpoints is None:
        print("no local stack running (make run): starting a temporary one ...", file=sys.stderr, flush=True)
        stack = start_stack(template=template, env_json=args.env_vars)
    try:
        if stack is not None:
            seed(stack)
            endpoints = stack.endpoints
        assert endpoints is not None
        if endpoints.chainloop_cas_private_key_path:
            # The stack's CAS key pair: the function trusts its public key, and a link event's token
            # (an events/ file's is long expired, and signed by no one) is signed anew with it.
            function_env[PUBLIC_KEYS_VARIABLE] = endpoints.function_env.get(PUBLIC_KEYS_VARIABLE, "")
            if resign_link_token(event, Path(endpoints.chainloop_cas_private_key_path)):
                print(
                    "the event's link token was signed anew with the local stack's key "
                    "(same claims, valid 30 s from now)",
                    file=sys.stderr,
                )
        process_env = {**endpoints.aws_env(), **function_env}
        if not args.metrics:
            process_env.update(QUIET_METRICS)
        with process_environment(process_env), contextlib.redirect_stdout(sys.stderr):
            app = App.create(Settings.from_env(process_env))
            context = LocalLambdaContext(timeout_ms=template.function_timeout_seconds() * 1000)
            response = dict(instrumented_handler(app)(event, context))
    finally:
        if stack is not None:
            stack.stop()
    print(json.dumps(response, indent=2, ensure_ascii=False))
    print(_describe_response(response), file=sys.stderr)
    return 0


def resign_link_token(event: dict[str, Any], private_key_path: Path) -> bool:
    """A Chainloop link event's token (query ``t``, or ``Authorization: Bearer``) replaced by one with
    the same claims, signed with ``private_key_path`` as the control plane signs (a fresh ``exp``); False
    when the event has none (another route, or the no-token case)."""
    from cas_admin.chainloop_link import ISSUER, mint_token  # noqa: PLC0415
    from cas_local.events import is_link_route  # noqa: PLC0415

    if not is_link_route(str(event.get("rawPath", ""))):
        return False
    query = event.get("queryStringParameters") or {}
    headers = event.get("headers") or {}
    authorization = str(headers.get("authorization", ""))
    old = query.get("t") or (authorization[7:].strip() if authorization.lower().startswith("bearer ") else "")
    try:
        claims = json.loads(base64.urlsafe_b64decode(old.split(".")[1] + "==="))
        fresh = mint_token(
            private_key_path.read_bytes(),
            backend=str(claims["backend"]),
            secret_id=str(claims["secret-id"]),
            org_id=claims.get("org-id"),
            role=str(claims.get("role", "downloader")),
            max_bytes=int(claims.get("maxbytes", 0)),
            issuer=str(claims.get("iss", ISSUER)),
        )
    except (IndexError, ValueError, TypeError, KeyError, AttributeError):
        return False  # not a token with Chainloop's claims: sent as it is
    except (OSError, AdminError) as error:
        raise LocalError(f"cannot sign the event's link token with {private_key_path}: {error}") from None
    if query.get("t") == old:
        query["t"] = fresh
        event["rawQueryString"] = str(event.get("rawQueryString", "")).replace(old, fresh)
    else:
        headers["authorization"] = f"Bearer {fresh}"
    return True


def _describe_response(response: dict[str, Any]) -> str:
    headers = {k.lower(): v for k, v in (response.get("headers") or {}).items()}
    parts = [f"HTTP {response.get('statusCode')}"]
    if "x-cas-backend" in headers:
        parts.append(
            f"served through {headers['x-cas-backend']}, X-Cas-Fallback: {headers.get('x-cas-fallback')}"
        )
    if response.get("isBase64Encoded"):
        import base64  # noqa: PLC0415

        parts.append(
            f"body: {len(base64.b64decode(response.get('body') or ''))} bytes (base64 in the response)"
        )
    return "; ".join(parts)


# ------------------------------------------------------------------------------------------ env, state


def cmd_env(args: argparse.Namespace) -> int:
    endpoints = _running_stack(args.state_file)
    if endpoints is None:
        raise LocalError(f"no local stack running (no live {args.state_file}): start one with make run")
    print(f'# cas-download local stack (pid {endpoints.pid}); usage: eval "$({PROG} env)"')
    print("unset " + " ".join(FOREIGN_AWS_VARIABLES))
    for name, value in endpoints.admin_env().items():
        print(f"export {name}={_shell_quote(value)}")
    return 0


def cmd_env_json(args: argparse.Namespace) -> int:
    text = json.dumps(env_json_document(Template.load(args.template)), indent=2) + "\n"
    if args.check is not None:
        current = args.check.read_text() if args.check.exists() else ""
        if current != text:
            raise LocalError(
                f"{args.check} is out of date with template.yaml: regenerate it with "
                f"`.venv/bin/cas-local env-json > {args.check}`"
            )
        return 0
    sys.stdout.write(text)
    return 0


def _shell_quote(value: str) -> str:
    return "'" + value.replace("'", "'\"'\"'") + "'"


def _running_stack(state_file: Path) -> StackEndpoints | None:
    """The stack recorded in ``state_file`` if its process is alive and its API answers."""
    try:
        endpoints = StackEndpoints.read(state_file)
    except (OSError, ValueError, TypeError):
        return None
    if not endpoints.pid or not endpoints.api_url:
        return None
    try:
        os.kill(endpoints.pid, 0)
    except (ProcessLookupError, PermissionError):
        return None
    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never a proxy
    try:
        direct.open(f"{endpoints.api_url}/", timeout=2).close()
    except urllib.error.HTTPError:
        return endpoints  # it answered (404): alive
    except (urllib.error.URLError, OSError):
        return None
    return endpoints


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    commands = {"run": cmd_run, "invoke": cmd_invoke, "env": cmd_env, "env-json": cmd_env_json}
    try:
        return commands[args.command](args)
    except (LocalError, TemplateError) as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


__all__ = ["REPO_ROOT", "banner", "build_parser", "main"]


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
