"""The README's code map names every module of the processes, and only modules that exist."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _code_map() -> str:
    readme = (ROOT / "README.md").read_text()
    return readme[readme.index("## Code map"):readme.index("## Configuration")]


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
