"""MkDocs hook: the repository files the site shows, taken from where they live.

BENCHMARKS.md (rewritten by `make bench`), its figures and openapi.yaml live at the repository's top,
outside docs/. Copying them into docs/ would leave two versions to drift apart, so the build adds the
originals to the site under their repository paths (BENCHMARKS.md, benchmarks/figures/*.png,
openapi.yaml), and pages link them as the repository does (`../BENCHMARKS.md`, so that the links work
on GitHub too): the hook rewrites those links for the site before MkDocs validates them. A link to any
other file outside docs/ stays as written, and the strict build fails on it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[2]
REPO_FILES = ("BENCHMARKS.md", "openapi.yaml")
REPO_GLOBS = ("benchmarks/figures/*.png",)
# Mermaid, installed by `npm ci` from tools/envs/docs/package-lock.json (make docs): shipped with the
# site so that its diagrams render offline (Material loads it from a CDN only when the page has none).
MERMAID_JS = ROOT / ".local" / "docs-node" / "node_modules" / "mermaid" / "dist" / "mermaid.min.js"
MERMAID_SITE_PATH = "javascripts/mermaid.min.js"


def _shown_files() -> list[str]:
    paths = [name for name in REPO_FILES if (ROOT / name).is_file()]
    for pattern in REPO_GLOBS:
        paths += sorted(str(p.relative_to(ROOT)) for p in ROOT.glob(pattern))
    return paths


def on_files(files: Files, config: Any) -> Files:
    for path in _shown_files():
        files.append(File.generated(config, path, abs_src_path=str(ROOT / path)))
    if not MERMAID_JS.is_file():
        raise PluginError(f"{MERMAID_JS.relative_to(ROOT)} is missing: `make docs` installs it (npm ci)")
    files.append(File.generated(config, MERMAID_SITE_PATH, abs_src_path=str(MERMAID_JS)))
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Files) -> str:
    # A page at docs/<dir>/x.md links the repository's top as ../../; the site has it at its own root.
    depth = page.file.src_uri.count("/") + 1
    up = "../" * depth
    for path in _shown_files():
        site_path = "../" * (depth - 1) + path
        markdown = re.sub(r"\]\(" + re.escape(up + path) + r"(?=[)#])", "](" + site_path, markdown)
    return markdown
