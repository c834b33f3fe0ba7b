"""The tests' registries (cas_local.registry), with what pytest adds: a missing binary fails under CI
(never a silent skip), and every password set is registered with the secret scan."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cas_local.registry import INSTALL_HINT, Registry, RegistryUser, registry_binary
from cas_local.registry import start_registry as _start_registry

from .ci import require
from .hygiene import register as register_secret

__all__ = ["Registry", "RegistryUser", "start_registry"]


def start_registry(workdir: Path, **options: Any) -> Registry:
    require(registry_binary(), INSTALL_HINT)
    registry = _start_registry(workdir, **options)
    registry.on_password.append(lambda password: register_secret(password, "registry_password"))
    return registry
