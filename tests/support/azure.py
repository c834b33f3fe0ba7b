"""Azurite for the tests (cas_local.azurite), with what pytest adds: a missing install fails under CI
(never a silent skip), and every account key is registered with the secret scan; plus writing blobs
the way Chainloop does (blob ``sha256:<hex>``, metadata ``Filename``)."""

from __future__ import annotations

from pathlib import Path

from azure.core.credentials import AzureNamedKeyCredential
from azure.storage.blob import BlobServiceClient

from cas_admin.chainloop_layout import azure as chainloop_azure
from cas_local.azurite import INSTALL_HINT, Azurite, azurite_binary, new_account_key

from .ci import require
from .hygiene import register as register_secret

__all__ = ["Azurite", "new_account_key", "put_blob", "start_azurite"]


def start_azurite(workdir: Path, accounts: dict[str, list[str]]) -> Azurite:
    require(azurite_binary(), INSTALL_HINT)
    for keys in accounts.values():
        for key in keys:
            register_secret(key, "account_key")
    return Azurite(workdir, accounts).start()


def put_blob(
    azurite: Azurite,
    account: str,
    key: str,
    container: str,
    name: str,
    data: bytes,
    filename: str | None = None,
) -> None:
    """Write a blob (creating its container) as Chainloop writes it (``chainloop_layout.azure``):
    ``name`` is ``{key_prefix}sha256:<hex>``; without a ``filename``, no ``Filename`` metadata (a blob
    another tool wrote)."""
    service = BlobServiceClient(
        azurite.account_url(account), credential=AzureNamedKeyCredential(account, key)
    )
    container_client = service.get_container_client(container)
    if not container_client.exists():
        container_client.create_container()
    at = name.find("sha256:")
    prefix, digest = (name[:at], name[at:]) if at >= 0 else (name, "")
    chainloop_azure.put_blob(container_client, digest, data, filename, key_prefix=prefix)
