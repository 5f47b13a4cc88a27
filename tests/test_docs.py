"""The README and docs/ stay true to the code: links resolve, named files, make targets and
`python -m` modules exist, and the static site builds with mkdocs --strict (`make docs`)."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import tempfile
import unicodedata
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)|!\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)
CODE_PATH = re.compile(r"`([A-Za-z0-9_./-]+\.(?:py|sql|toml|yml|yaml|js|html|css|txt|json|sh))`")
MAKE_TARGET = re.compile(r"\bmake ([a-z][a-z-]*)")
PY_MODULE = re.compile(r"python -m ([a-z_][a-z_.]*)")
# Files a page tells the user to create (worked examples), not files of the repository.
EXAMPLE_FILES = {
    "sql/45_volume/obv_1m.sql",
    "45_volume/obv_1m.sql",
    "sql/strategies/macd_cross.sql",
}


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = heading.strip().lower()
    text = "".join(ch for ch in text if ch in " -_" or unicodedata.category(ch)[0] in ("L", "N"))
    return text.replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    text = FENCE.sub("", page.read_text())
    return {_slug(m.group(1)) for m in re.finditer(r"^#{1,6} (.+)$", text, re.M)}


def _tracked_files() -> list[str]:
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.split()


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_docs_page_when_linking_then_every_target_and_anchor_exists(page: Path) -> None:
    text = FENCE.sub("", page.read_text())
    broken = []
    for match in LINK.finditer(text):
        target = match.group(1) or match.group(2)
        if re.match(r"^[a-z]+:", target):  # http:, https:, mailto:
            continue
        path_part, _, anchor = target.partition("#")
        dest = (page.parent / path_part).resolve() if path_part else page
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            broken.append(f"{target}: no heading with anchor #{anchor}")
    assert not broken, f"{page.relative_to(ROOT)}: broken links: {broken}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_docs_page_when_naming_code_then_files_targets_and_modules_exist(page: Path) -> None:
    text = page.read_text()
    files = _tracked_files()
    makefile = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z][a-z-]*):", makefile, re.M))
    stale = []
    top_level = {f.split("/", 1)[0] for f in files}
    for name in set(CODE_PATH.findall(text)) - EXAMPLE_FILES:
        first = name.split("/", 1)[0]
        if ("/" in name and first not in top_level) or (
            "/" not in name and not name.endswith((".py", ".sql", ".toml"))
        ):
            continue  # generated at run time (.run/...) or a name the user picks
        if not any(f == name or f.endswith("/" + name) for f in files):
            stale.append(f"`{name}`: no such file in the repository")
    for target in set(MAKE_TARGET.findall(text)):
        if target not in targets:
            stale.append(f"`make {target}`: no such target in the Makefile")
    for module in set(PY_MODULE.findall(text)):
        base = ROOT / module.replace(".", "/")
        ours = base.with_suffix(".py").exists() or (base / "__main__.py").exists()
        if not ours and importlib.util.find_spec(module.split(".")[0]) is None:
            stale.append(f"`python -m {module}`: no such module")
    assert not stale, f"{page.relative_to(ROOT)}: stale references: {stale}"


def test_docs_site_when_built_then_every_page_is_in_the_nav_and_mkdocs_strict_passes() -> None:
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    in_nav = {next(iter(item.values())) for item in config["nav"]}
    pages = {p.name for p in (ROOT / "docs").glob("*.md")} | {"index.md"}
    assert pages == in_nav, f"docs pages not in mkdocs.yml nav: {sorted(pages - in_nav)}"
    with tempfile.TemporaryDirectory(prefix="moex-docs-") as site:
        result = subprocess.run(
            ["make", "-s", "docs", f"SITE={site}"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert (Path(site) / "index.html").exists()
        assert (Path(site) / "performance.html").exists()
