"""How cas-admin declares its commands: each one a :class:`Command` row, its arguments a list of
:func:`option` calls kept for later, the options several commands share named once here.

Every command's parser is built the same way (:func:`add_command`): its arguments in help order, then
``--json`` (every command answers in text or, with it, in JSON), then the function it runs."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from cas_admin.errors import EXIT_USAGE

# A command's function: the parsed arguments and the AdminStore (None when it needs none), its exit status.
Run = Callable[[argparse.Namespace, Any], int]
# What adds one argument, or a group of them, to a parser (or to an argument group of one).
Argument = Callable[[Any], None]


class Parser(argparse.ArgumentParser):
    """A usage error exits with cas-admin's usage status, its usage line and the message on stderr."""

    def error(self, message: str) -> Any:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def option(*flags: str, **settings: Any) -> Argument:
    """One ``add_argument(*flags, **settings)``, made when the command's parser is."""

    def add(parser: Any) -> None:
        parser.add_argument(*flags, **settings)

    return add


def one_of(*arguments: Argument) -> Argument:
    """Arguments of which a command takes one at the most."""

    def add(parser: Any) -> None:
        group = parser.add_mutually_exclusive_group()
        for argument in arguments:
            argument(group)

    return add


def table_option(table: str, variable: str) -> Argument:
    """``--<table>-table``: the name of one of the service's tables, by default env ``variable``'s."""
    return option(f"--{table.lower()}-table", help=f"the service's {table} table (default: env {variable})")


def backend_argument(help: str = "backend name or id", **settings: Any) -> Argument:
    """BACKEND: the one backend of the org a command acts on, by name or id."""
    return option("backend", help=help, **settings)


def region_option(dest: str, help: str) -> Argument:
    """``--region REGION``, kept under ``dest``: cas-admin's own (AWS's region) and ``backend add``'s
    (the bucket's) share the flag, one before the group and one after the command."""
    return option("--region", dest=dest, metavar="REGION", help=help)


ORG = option("--org", required=True, help="organization id")
BACKEND = backend_argument()
DIGEST = option("digest", help="sha256:<64 hex> or 64 hex")
JSON = option("--json", action="store_true", help="machine-readable output")


@dataclass(frozen=True)
class Command:
    name: str
    run: Run
    help: str
    description: str
    arguments: Sequence[Argument] = ()
    needs_store: bool = True  # False: runs without the tables (and without AWS), gets None


def add_command(subcommands: Any, command: Command) -> None:
    """``command``'s parser among ``subcommands`` (an ``add_subparsers`` result)."""
    parser = subcommands.add_parser(command.name, help=command.help, description=command.description)
    for argument in (*command.arguments, JSON):
        argument(parser)
    parser.set_defaults(func=command.run, needs_store=command.needs_store)


def add_group(groups: Any, name: str, *, help: str, description: str, commands: Sequence[Command]) -> None:
    """``cas-admin NAME COMMAND ...``: a group of commands, each one row of ``commands``."""
    group = groups.add_parser(name, help=help, description=description)
    subcommands = group.add_subparsers(dest="command", required=True, parser_class=Parser)
    for command in commands:
        add_command(subcommands, command)
