"""The documentation holds to the code: the README stays a front page whose links all land, the code
map in docs/architecture.md names every module of the processes (and only modules that exist), and
docs/configuration.md is what app/core/config_doc.py writes from the settings."""
from __future__ import annotations

import re
from pathlib import Path

from app.core import config_doc

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
README_MAX_LINES = 250


def _code_map() -> str:
    architecture = (DOCS / "architecture.md").read_text()
    start = architecture.index("## Code map")
    end = architecture.find("\n## ", start + 1)
    return architecture[start:] if end < 0 else architecture[start:end]


def test_every_module_of_the_processes_is_in_the_code_map():
    code_map = _code_map()
    missing = []
    for package in ("app", "outbox_relay", "cache_worker", "score_ingest"):
        for module in sorted((ROOT / package).rglob("*.py")):
            if module.name in ("__init__.py", "__main__.py") and module.parent.name != "app":
                continue
            relative = module.relative_to(ROOT)
            named = (f"`{relative}`" in code_map or f"`{relative.stem}`" in code_map
                     or f"{relative.stem}.py" in code_map)
            if not named:
                missing.append(str(relative))
    assert missing == []


def test_every_path_the_code_map_names_exists():
    paths = re.findall(r"`((?:app|outbox_relay|cache_worker|lua|migrations)/[\w./]*)`", _code_map())
    assert paths and [p for p in paths if not (ROOT / p).exists()] == []


def test_the_configuration_page_is_the_one_the_settings_write():
    written = (DOCS / "configuration.md").read_text()
    assert written == config_doc.render(), (
        f"docs/configuration.md is stale: regenerate it with `{config_doc.COMMAND}`")


def test_the_readme_is_a_front_page():
    lines = README.read_text().count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines: move the details to docs/"


def _prose(text: str) -> str:
    """`text` without its fenced code blocks (a `# comment` in a shell block is no heading)."""
    return re.sub(r"^```.*?^```$", "", text, flags=re.DOTALL | re.MULTILINE)


def _anchors(page: Path) -> set[str]:
    """The anchors GitHub gives the headings of `page`."""
    anchors: set[str] = set()
    for heading in re.findall(r"^#{1,6} (.+)$", _prose(page.read_text()), flags=re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        anchor, n = slug, 0
        while anchor in anchors:
            n += 1
            anchor = f"{slug}-{n}"
        anchors.add(anchor)
    return anchors


def test_every_link_of_the_readme_and_the_docs_lands():
    broken = []
    for page in [README, *sorted(DOCS.glob("*.md"))]:
        for target in re.findall(r"\]\(([^)\s]+)\)", _prose(page.read_text())):
            if re.match(r"[a-z]+:", target):
                continue
            path, _, anchor = target.partition("#")
            linked = (page.parent / path).resolve() if path else page
            if not linked.exists():
                broken.append(f"{page.name}: {target}")
            elif anchor and linked.suffix == ".md" and anchor not in _anchors(linked):
                broken.append(f"{page.name}: {target} (no such heading)")
    assert broken == []


def test_the_readme_links_every_page_of_the_docs():
    readme = README.read_text()
    assert [p.name for p in sorted(DOCS.glob("*.md")) if f"](docs/{p.name})" not in readme] == []
