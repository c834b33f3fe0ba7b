"""The S3 path's cold start does not pay for the other providers: importing the handler loads no
registry or Azure module (they are imported when a backend of theirs is first used)."""

from __future__ import annotations

import subprocess
import sys

# The two functions' handlers, imported as Lambda imports them
IMPORT_THE_HANDLERS = "import sys, cas_download.handlers.download, cas_download.handlers.validator; "


def printed_by_a_fresh_interpreter(probe: str) -> str:
    """What ``probe`` prints, stripped, run where nothing is imported yet (not in this session)."""
    return subprocess.run(
        [sys.executable, "-c", probe], check=True, capture_output=True, text=True
    ).stdout.strip()


def loaded_by_the_handlers(selection: str) -> str:
    """The sorted list of the modules, among those ``selection`` (an expression over ``m``) keeps,
    that importing the handlers loads."""
    return printed_by_a_fresh_interpreter(
        f"{IMPORT_THE_HANDLERS}print(sorted(m for m in sys.modules if {selection}))"
    )


def test_importing_the_handlers_loads_only_the_s3_adapter() -> None:
    out = loaded_by_the_handlers("m.startswith(('azure', 'cas_download.data.storage.'))")
    assert out == str(
        [
            "cas_download.data.storage.port",
            "cas_download.data.storage.providers",
            "cas_download.data.storage.s3",
        ]
    )


def test_the_download_and_validator_functions_never_load_the_postgres_driver() -> None:
    # PostgresLayer is attached to ChainloopSyncFunction only: an import of psycopg here would fail in Lambda
    out = loaded_by_the_handlers(
        "m.startswith(('psycopg', 'cas_download.data.chainloop', 'cas_download.logic.chainloop'))"
    )
    assert out == "[]"


def test_the_sync_handler_imports_psycopg_only_when_it_connects() -> None:
    probe = "import sys, cas_download.handlers.chainloop_sync; print('psycopg' in sys.modules)"
    assert printed_by_a_fresh_interpreter(probe) == "False"


def test_the_handlers_do_not_load_powertools_event_data_classes() -> None:
    # Given the download and validator handlers, imported as Lambda imports them
    # When the modules they load are listed
    out = loaded_by_the_handlers("m.startswith('aws_lambda_powertools.utilities.data_classes')")
    # Then Powertools' event data classes (about 50 modules, 134 ms of cold start as shipped) are not
    # among them: the five fields the route needs are read directly (handlers/requests.py)
    assert out == "[]"
