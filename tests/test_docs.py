"""The documentation: the site builds strictly (a broken link fails CI), the README stays a first five
minutes, nothing links outside the repository, every template parameter is documented, and `make
bench` draws its cold-start figure."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from benchmarks import plots, report
from benchmarks.coldstart import ColdStart, ModeResult, Run

from cas_local.template import load_template

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
README_MAX_LINES = 150

# [text](target) and ![alt](target); the target up to a space (a title) or the closing parenthesis.
MARKDOWN_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)")


def build_site(config: Path, site_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "mkdocs",
            "build",
            "--strict",
            "--config-file",
            str(config),
            "--site-dir",
            str(site_dir),
        ],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},  # no end-of-life banner in the output
    )


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    site_dir = tmp_path_factory.mktemp("site")
    built = build_site(ROOT / "mkdocs.yml", site_dir)
    assert built.returncode == 0, built.stderr
    return site_dir


def local_targets(markdown: Path) -> list[str]:
    """The relative file links of a Markdown file (web links and in-page anchors left out)."""
    targets = []
    for target in MARKDOWN_LINK.findall(markdown.read_text()):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue
        targets.append(target.split("#", 1)[0])
    return targets


def doc_pages() -> list[Path]:
    return sorted(p for p in DOCS.rglob("*.md"))


# --------------------------------------------------------------------------------------- the site


def test_the_site_builds_strictly_with_every_page(site: Path) -> None:
    # Given the pages of mkdocs.yml's navigation, When the site is built with --strict (the fixture),
    # Then it succeeded and holds a page per Markdown file, and the repository files it shows
    pages = {p.relative_to(DOCS).with_suffix(".html") for p in doc_pages()}
    assert pages <= {p.relative_to(site) for p in site.rglob("*.html")}
    assert (site / "BENCHMARKS.html").is_file()
    assert (site / "benchmarks" / "figures" / "cold-start.png").is_file()
    assert (site / "openapi.yaml").read_bytes() == (ROOT / "openapi.yaml").read_bytes()


def test_a_broken_link_fails_the_build(tmp_path: Path) -> None:
    # Given a copy of the site's sources with one link to a page that does not exist
    shutil.copy(ROOT / "mkdocs.yml", tmp_path / "mkdocs.yml")
    shutil.copytree(DOCS, tmp_path / "docs")
    (tmp_path / ".local").mkdir()
    (tmp_path / ".local" / "docs-node").symlink_to(ROOT / ".local" / "docs-node")  # the Mermaid it ships
    page = tmp_path / "docs" / "api.md"
    page.write_text(page.read_text() + "\nSee [the old page](no-such-page.md).\n")
    # When it is built strictly
    built = build_site(tmp_path / "mkdocs.yml", tmp_path / "site")
    # Then the build fails, naming the link
    assert built.returncode != 0
    assert "no-such-page.md" in built.stderr


def test_the_repository_links_resolve_in_the_site(site: Path) -> None:
    # Given pages that link BENCHMARKS.md and openapi.yaml as the repository has them (../BENCHMARKS.md)
    # Then the built pages link the site's copies, at the site's root
    performance = (site / "performance.html").read_text()
    assert 'href="BENCHMARKS.html"' in performance
    assert 'src="benchmarks/figures/cold-start.png"' in performance
    assert 'href="openapi.yaml"' in (site / "api.html").read_text()


def test_both_mermaid_diagrams_render_as_diagrams(site: Path) -> None:
    # Given how-it-works.md's two sequence diagrams (a request falling back, the verifier)
    html = (site / "how-it-works.html").read_text()
    # Then both became Mermaid blocks, not code listings
    assert html.count('class="mermaid"') == 2
    assert "sequenceDiagram" in html


def test_the_site_fetches_no_fonts(site: Path) -> None:
    # Given theme.font: false, Then no page asks Google Fonts for anything
    for page in site.rglob("*.html"):
        assert "fonts.googleapis.com" not in page.read_text(), page


# --------------------------------------------------------------------------- links and the README


def test_the_readme_is_a_first_five_minutes() -> None:
    lines = README.read_text().splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; at most {README_MAX_LINES}"


def test_the_readme_links_only_files_of_the_repository_that_exist() -> None:
    targets = local_targets(README)
    assert targets, "the README links the site's pages"
    for target in targets:
        assert "../" not in target, f"README.md links {target}, outside the repository"
        assert (ROOT / target).exists(), f"README.md links {target}, which does not exist"


def test_the_readme_links_every_page_of_the_site() -> None:
    linked = {(ROOT / t).resolve() for t in local_targets(README)}
    missing = [p.relative_to(ROOT) for p in doc_pages() if p.resolve() not in linked and p.name != "index.md"]
    assert not missing, f"README.md does not link {missing}"


@pytest.mark.parametrize("page", doc_pages(), ids=lambda p: str(p.relative_to(DOCS)))
def test_no_page_links_outside_the_repository(page: Path) -> None:
    for target in local_targets(page):
        resolved = (page.parent / target).resolve()
        assert resolved.is_relative_to(ROOT), f"{page.name} links {target}, outside the repository"
    assert "shared/SPEC.md" not in page.read_text()


def test_every_template_parameter_is_in_the_deploying_table() -> None:
    # Given the parameters of template.yaml, Then deploying.md's table has a row for each
    rows = set(re.findall(r"^\| `(\w+)` \|", (DOCS / "deploying.md").read_text(), flags=re.MULTILINE))
    missing = sorted(set(load_template()["Parameters"]) - rows)
    assert not missing, f"docs/deploying.md does not document {missing}"


# ------------------------------------------------------------------------ BENCHMARKS.md's figure


def cold_start(app_ms: list[float], reference_ms: list[float], layer_dir: Path) -> ColdStart:
    def runs(values: list[float]) -> list[Run]:
        return [
            Run(import_s=v / 2000, work_s=v / 2000, total_s=v / 1000, process_s=v / 1000, modules=1)
            for v in values
        ]

    modes = [
        ModeResult(mode, runs(app_ms), runs(reference_ms)) for mode in ("as shipped (no .pyc)", "with .pyc")
    ]
    return ColdStart(
        layer_dir, modes, imports={m.mode: [] for m in modes}, import_total_ms={m.mode: 0.0 for m in modes}
    )


def test_make_bench_draws_the_cold_start_of_each_process(tmp_path: Path) -> None:
    # Given four processes per kind and mode (an even count: no median line crosses a dot)
    cold = cold_start([1500, 1600, 1700, 1800], [1000, 1100, 1200, 1300], ROOT / "build")
    # When the figure is drawn
    written = plots.cold_start(cold, 1.5, tmp_path / "cold-start.png")
    # Then it is a PNG image with one dot per process: 4 of the app's and 4 of the reference's in each
    # of the 2 modes' panels, each in its column's colour
    assert written.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert dots_of_colour(written, "#1f77b4") == 2 * 4
    assert dots_of_colour(written, "#7f7f7f") == 2 * 4


def dots_of_colour(png: Path, colour: str, alpha: float = 0.8, min_pixels: int = 20) -> int:
    """Separate blobs of pixels drawn in ``colour`` at ``alpha`` over white (pixels within 2 of each
    other are one blob: a dot's anti-aliased edge breaks its fill into specks); a dot is about 30 pixels,
    the specks text leaves in a grey are smaller."""
    from matplotlib import image  # noqa: PLC0415 - the figure's own reader

    pixels: Any = image.imread(str(png))[:, :, :3]  # numpy, typed loosely
    rgb = [int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    drawn = [alpha * c + (1 - alpha) for c in rgb]
    mask = (abs(pixels - drawn) < 0.06).all(axis=2)
    seen = mask.copy()
    sizes: list[int] = []
    height, width = mask.shape
    for y, x in zip(*mask.nonzero(), strict=True):
        if not seen[y, x]:
            continue
        stack = [(int(y), int(x))]
        seen[y, x] = False
        sizes.append(0)
        while stack:
            cy, cx = stack.pop()
            sizes[-1] += 1
            for ny, nx in ((cy + dy, cx + dx) for dy in range(-2, 3) for dx in range(-2, 3)):
                if 0 <= ny < height and 0 <= nx < width and seen[ny, nx]:
                    seen[ny, nx] = False
                    stack.append((ny, nx))
    return sum(1 for size in sizes if size >= min_pixels)


def test_the_cold_start_section_shows_the_figure_beside_its_table() -> None:
    class Results:  # the one field _cold reads
        cold = cold_start([1500, 1600, 1700], [1000, 1100, 1200], ROOT / "build")

    section = report._cold(Results())  # type: ignore[arg-type]
    table_at = section.index("| mode | app: import + first request (ms)")
    figure_at = section.index("![Cold start, one dot per process](benchmarks/figures/cold-start.png)")
    assert table_at < figure_at < section.index("Heaviest imports")


def test_dots_of_one_column_are_spread_evenly_and_symmetrically() -> None:
    assert plots.spread(1) == [0.0]
    offsets = plots.spread(3, width=0.2)
    assert offsets == pytest.approx([-0.1, 0.0, 0.1])


def test_no_list_is_rendered_as_a_run_on_paragraph(site: Path) -> None:
    # Given every page of the built site
    # Then no paragraph holds lines that start as list items: Markdown needs a blank line before a list
    # (a runbook's "**What to do**:" steps rendered as one paragraph once)
    run_on = re.compile(r"<p>(?:(?!</p>).)*\n(?:\d+\.|[-*]) (?:(?!</p>).)*</p>", re.DOTALL)
    found = {
        str(page.relative_to(site)): match.group(0)[:80]
        for page in site.rglob("*.html")
        for match in [run_on.search(page.read_text(encoding="utf-8"))]
        if match
    }
    assert found == {}


def test_the_diagrams_render_offline_with_the_mermaid_the_site_ships(site: Path) -> None:
    # Given a page with Mermaid diagrams
    page = (site / "how-it-works.html").read_text(encoding="utf-8")
    assert 'class="mermaid"' in page

    # Then it loads Mermaid from the site itself (Material fetches it from a CDN only when none is
    # loaded), and the site holds the locked release's file
    assert '<script src="javascripts/mermaid.min.js"></script>' in page
    shipped = site / "javascripts" / "mermaid.min.js"
    installed = ROOT / ".local" / "docs-node" / "node_modules" / "mermaid" / "dist" / "mermaid.min.js"
    assert shipped.read_bytes() == installed.read_bytes()
    locked = json.loads((ROOT / "tools" / "envs" / "docs" / "package-lock.json").read_text())
    assert locked["packages"]["node_modules/mermaid"]["version"].startswith("11.")
