"""Secret hygiene across the whole test suite: every secret the tests create is registered here, and
every test's captured output (stdout, stderr, log records) is scanned for them.

* ``register(value, kind)``: the World registers each access key id and secret access key it issues,
  every credential value it writes into a backend secret (session tokens included) and the signature of
  every presigned URL it fetches; ``tests/support/chainloop_links.py`` registers every Chainloop CAS
  download token it mints or forges.
* ``enforce(report)``: called by ``tests/conftest.py`` for every test phase's report. A hit turns the
  report into a failure ("secret hygiene: ..."), and the leaked value is replaced by
  ``<redacted:kind>`` in the captured sections, so the failure report itself does not spread it.
  Signatures and security tokens of presigned URLs are also recognised by their query parameter names
  (``X-Amz-Signature=<hex>``, ``X-Amz-Security-Token=...``) and SigV4 ``Authorization`` headers
  (``Signature=<64 hex>``), and a link's token by ``?t=<JWT>``, whether or not the tests ever saw them.

Scanning is linear in the output: each registered value is indexed by its longest alphanumeric run
(its *anchor*), and only alphanumeric runs of the output at least that long are looked up.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

MIN_SECRET_LENGTH = 12
_ALNUM_RUN = re.compile(rf"[A-Za-z0-9]{{{MIN_SECRET_LENGTH},}}")
_ALNUM = re.compile(r"[A-Za-z0-9]+")
GENERIC_PATTERNS = (
    ("url_signature", re.compile(r"(?i)x-amz-signature=[0-9a-f]{16,}")),
    ("session_token", re.compile(r"(?i)x-amz-security-token=[^&\s\"'<>]{8,}")),
    ("request_signature", re.compile(r"\bSignature=[0-9a-f]{64}\b")),
    # Azure SAS signatures, and registry (or Entra ID) credentials in an Authorization header
    ("sas_signature", re.compile(r"(?i)[?&]sig=[A-Za-z0-9%+/=]{16,}")),
    ("bearer_token", re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/-]{20,}")),
    ("basic_credentials", re.compile(r"(?i)\bbasic\s+[A-Za-z0-9+/]{16,}")),
    # A Chainloop CAS download token in a link's query (``?t=<JWT>``), minted here or not
    ("chainloop_cas_token", re.compile(r"[?&]t=eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]+")),
)
# Secret JSON keys (normalized as the service does: lower case, no "_"/"-") whose values are secret.
CREDENTIAL_KEYS = {
    "accesskeyid": "access_key_id",
    "secretaccesskey": "secret_access_key",
    "sessiontoken": "session_token",
    "password": "registry_password",  # OCI backends (Chainloop's Username/Password secret)
    "token": "bearer_token",
    "accountkey": "account_key",  # AzureBlob backends
    "clientsecret": "client_secret",
}


@dataclass(frozen=True)
class Leak:
    kind: str
    where: str  # the report section, e.g. "Captured stdout call"
    value: str = field(repr=False)

    @property
    def hint(self) -> str:
        """Enough to find it in the test, not enough to use it."""
        return f"{self.kind} {self.value[:4]}...({len(self.value)} chars) in {self.where!r}"


class SecretRegistry:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._kinds: dict[str, str] = {}
        self._by_anchor: dict[int, dict[str, list[str]]] = {}
        self._unanchored: list[str] = []  # values without a 12-character alphanumeric run
        self.scanned_sections = 0
        self.scanned_chars = 0
        self.leaks: list[tuple[str, Leak]] = []  # (test node id, leak)

    def register(self, value: object, kind: str) -> None:
        """Remember ``value`` as a secret (values shorter than 12 characters are not secrets)."""
        if not isinstance(value, str) or len(value) < MIN_SECRET_LENGTH:
            return
        anchor = max(_ALNUM.findall(value), key=len, default="")
        with self._lock:
            if value in self._kinds:
                return
            self._kinds[value] = kind
            if len(anchor) < MIN_SECRET_LENGTH:
                self._unanchored.append(value)
            else:
                self._by_anchor.setdefault(len(anchor), {}).setdefault(anchor, []).append(value)

    def register_secret_string(self, secret_string: str) -> None:
        """Register the credential values of a SecretString (JSON object), whatever their key case."""
        try:
            document = json.loads(secret_string)
        except ValueError:
            return
        if not isinstance(document, dict):
            return
        for key, value in document.items():
            kind = CREDENTIAL_KEYS.get(str(key).lower().replace("_", "").replace("-", ""))
            if kind:
                self.register(value, kind)

    def __len__(self) -> int:
        with self._lock:
            return len(self._kinds)

    def find(self, text: str, where: str = "") -> list[Leak]:
        """Registered secrets and generic signature/token patterns present in ``text``."""
        if not text:
            return []
        with self._lock:
            tables = sorted(self._by_anchor.items())
            unanchored = list(self._unanchored)
            kinds = dict(self._kinds)
        found: dict[str, str] = {}
        for run in _ALNUM_RUN.finditer(text):
            chunk = run.group()
            for length, table in tables:
                if length > len(chunk):
                    break
                for start in range(len(chunk) - length + 1):
                    for value in table.get(chunk[start : start + length], ()):
                        if value in text:
                            found[value] = kinds[value]
        found.update({value: kinds[value] for value in unanchored if value in text})
        for kind, pattern in GENERIC_PATTERNS:
            for match in pattern.finditer(text):
                found.setdefault(match.group(), kind)
        return [Leak(kind, where, value) for value, kind in found.items()]

    def redact(self, text: str, leaks: Iterable[Leak]) -> str:
        for leak in sorted(leaks, key=lambda item: -len(item.value)):
            text = text.replace(leak.value, f"<redacted:{leak.kind}>")
        return text

    def enforce(self, report: Any) -> list[Leak]:
        """Scan a pytest ``TestReport``'s captured sections; on a hit, fail it and redact the sections."""
        leaks: list[Leak] = []
        sections = []
        for title, content in report.sections:
            found = self.find(content, title)
            with self._lock:
                self.scanned_sections += 1
                self.scanned_chars += len(content)
            leaks.extend(found)
            sections.append((title, self.redact(content, found) if found else content))
        if leaks:
            report.sections = sections
            report.outcome = "failed"
            details = "\n".join(f"  - {leak.hint}" for leak in leaks)
            previous = f"\n\n(the test's own result was: {report.longrepr})" if report.longrepr else ""
            report.longrepr = (
                f"secret hygiene: {len(leaks)} secret value(s) found in captured output:\n{details}{previous}"
            )
            with self._lock:
                self.leaks.extend((report.nodeid, leak) for leak in leaks)
        return leaks

    def summary(self) -> str:
        with self._lock:
            return (
                f"secret hygiene: {len(self._kinds)} secret values registered, "
                f"{self.scanned_sections} captured sections ({self.scanned_chars} chars) scanned, "
                f"{len(self.leaks)} leak(s)"
            )


REGISTRY = SecretRegistry()
register = REGISTRY.register
register_secret_string = REGISTRY.register_secret_string

__all__ = ["REGISTRY", "Leak", "SecretRegistry", "register", "register_secret_string"]
