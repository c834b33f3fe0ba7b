"""Opens a backend through its provider's adapter. An adapter module is imported the first time a
backend of its provider is used, so the S3 path's cold start does not pay for the others."""

from __future__ import annotations

import importlib
import threading
from typing import TYPE_CHECKING, Any

import boto3

from cas_download.data.storage.port import BackendStore, SecretFields
from cas_download.data.storage.s3 import S3ClientPool, S3Store
from cas_download.domain import AttemptFailed, AttemptReason, Backend, Provider

if TYPE_CHECKING:
    from cas_download.data.storage.azure import AzureClients
    from cas_download.data.storage.oci import RegistryClient


class StorageProviders:
    """Per-container state of every provider: S3 clients by credentials, the registry client's
    connection pool and tokens."""

    def __init__(
        self,
        session: boto3.session.Session,
        connect_timeout_seconds: float,
        read_timeout_seconds: float,
        azure_authority_host: str | None = None,
    ) -> None:
        self.azure_authority_host = azure_authority_host
        self.connect_timeout_seconds = connect_timeout_seconds
        self.read_timeout_seconds = read_timeout_seconds
        self.s3_clients = S3ClientPool(session, connect_timeout_seconds, read_timeout_seconds)
        self._registry: RegistryClient | None = None
        self._azure: AzureClients | None = None
        self._lock = threading.Lock()

    def forget_all(self) -> None:
        """Drop every client that holds a backend's credentials, a token or a connection (a SnapStart
        restore): they are made again on first use."""
        self.s3_clients.forget_all()
        with self._lock:
            registry, azure_clients = self._registry, self._azure
            self._registry = self._azure = None
        if registry is not None:
            registry.close()
        if azure_clients is not None:
            azure_clients.close()

    def open(self, backend: Backend, secret: SecretFields, time_left: float | None = None) -> BackendStore:
        """The backend opened with the credentials of its secret, or :class:`AttemptFailed`."""
        if backend.provider == Provider.S3:
            return S3Store.open_backend(backend, secret, self.s3_clients, time_left)
        if backend.provider == Provider.OCI:
            store: BackendStore = _adapter("oci").OciStore.open_backend(
                backend, secret, self.registry_client(), time_left
            )
            return store
        if backend.provider == Provider.AZURE_BLOB:
            azure_store: BackendStore = _adapter("azure").AzureStore.open_backend(
                backend, secret, self.azure_clients(), time_left
            )
            return azure_store
        raise _unsupported(backend)

    def registry_client(self) -> RegistryClient:
        """The container's one registry client (connection pool and tokens), made on first use."""
        with self._lock:
            if self._registry is None:
                oci = _adapter("oci")
                self._registry = oci.RegistryClient(self.connect_timeout_seconds, self.read_timeout_seconds)
            return self._registry

    def azure_clients(self) -> AzureClients:
        """The container's Azure clients and delegation keys, made on first use (the SDK's import
        is paid by the first Azure backend, not by the S3 path)."""
        with self._lock:
            if self._azure is None:
                azure = _adapter("azure")
                self._azure = azure.AzureClients(
                    self.connect_timeout_seconds, self.read_timeout_seconds, self.azure_authority_host
                )
            return self._azure

    @staticmethod
    def check_supported(backend: Backend) -> None:
        if backend.provider not in _SUPPORTED:
            raise _unsupported(backend)


def _adapter(name: str) -> Any:
    return importlib.import_module(f"cas_download.data.storage.{name}")


_SUPPORTED = frozenset(p.value for p in Provider)


def _unsupported(backend: Backend) -> AttemptFailed:
    return AttemptFailed(AttemptReason.UNSUPPORTED_PROVIDER, f"provider {backend.provider!r}")
