"""SnapStart (template parameter ``SnapStart``): what the snapshot holds, and what a restore drops.

With SnapStart on, Lambda initializes a published version once, snapshots its memory, and starts later
containers from that snapshot. Before it, the container holds the imports of both routes (``/v1`` and
``/download`` with its ES512 verification), the App and its AWS clients: never a secret, a row or a connection, since
initialization reads and sends nothing. After each restore, :meth:`App.forget_state` drops cached rows,
secrets, verification records and backend health, every backend client (they hold credentials) and
registry token, and every open connection; ``random`` gets a new seed (every container restored from
one snapshot would otherwise draw the same numbers). ``before_snapshot`` does the same, so that nothing
a future change lets initialization read can reach the snapshot.

The hooks register with ``snapshot_restore_py``, which Lambda's managed Python runtime provides (the
tests use its PyPI release); it is imported only when Lambda initializes for a snapshot.
"""

from __future__ import annotations

import contextlib
import random

from cas_download.app import App
from cas_download.config import ConfigError


def prepare_snapshot(app: App) -> None:
    """Import and build now what requests would build on first use, and register the hooks."""
    from snapshot_restore_py import register_after_restore, register_before_snapshot  # noqa: PLC0415

    from cas_download.handlers import links  # noqa: PLC0415 - the /download route's modules, in the snapshot

    app.connect()
    if app.settings.chainloop_cas_public_keys:
        # the public keys parsed once (configuration, not secrets); a bad one is the first /download
        # request's answer, as without SnapStart
        with contextlib.suppress(ConfigError):
            links.verifier(app.settings)
    register_before_snapshot(before_snapshot, app)
    register_after_restore(after_restore, app)


def before_snapshot(app: App) -> None:
    app.forget_state()


def after_restore(app: App) -> None:
    app.forget_state()
    random.seed()
