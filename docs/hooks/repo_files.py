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

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[2]
REPO_FILES = ("BENCHMARKS.md", "openapi.yaml")
REPO_GLOBS = ("benchmarks/figures/*.png",)


def _shown_files() -> list[str]:
    paths = [name for name in REPO_FILES if (ROOT / name).is_file()]
    for pattern in REPO_GLOBS:
        paths += sorted(str(p.relative_to(ROOT)) for p in ROOT.glob(pattern))
    return paths


def on_files(files: Files, config: Any) -> Files:
    for path in _shown_files():
        files.append(File.generated(config, path, abs_src_path=str(ROOT / path)))
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Files) -> str:
    # A page at docs/<dir>/x.md links the repository's top as ../../; the site has it at its own root.
    depth = page.file.src_uri.count("/") + 1
    up = "../" * depth
    for path in _shown_files():
        site_path = "../" * (depth - 1) + path
        markdown = re.sub(r"\]\(" + re.escape(up + path) + r"(?=[)#])", "](" + site_path, markdown)
    return markdown
