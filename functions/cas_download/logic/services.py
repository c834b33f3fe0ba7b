"""What the download logic needs from the outside world, as one explicit object."""

from __future__ import annotations

from msgspec import Struct

from cas_download.config import Settings
from cas_download.data.catalog import Catalog
from cas_download.data.secrets import CredentialStore
from cas_download.data.storage.providers import StorageProviders
from cas_download.data.tables import Tables
from cas_download.data.verifier_asks import AskLedger
from cas_download.data.verifier_invocations import VerifierInvocations
from cas_download.logic.health import BackendHealth
from cas_download.logic.look_ahead import LookAhead
from cas_download.logic.verification import VerificationRecords


class Services(Struct, frozen=True):
    settings: Settings
    catalog: Catalog
    credentials: CredentialStore
    storage: StorageProviders
    tables: Tables
    health: BackendHealth
    verification_records: VerificationRecords
    # The verifier function a request asks to prove what it may not hash itself (None: none deployed).
    verifier: VerifierInvocations | None = None
    # Every container's asks of the verifier (the Verifications table; None without it): the verifier
    # settles the ones it ran.
    asks: AskLedger | None = None
    # The container's look-ahead worker (logic/look_ahead.py; None: requests never look ahead).
    look_ahead: LookAhead | None = None
