"""The documentation holds to the code: docs/configuration.md is what app/core/config_doc.py writes
from the settings."""
from __future__ import annotations

from pathlib import Path

from app.core import config_doc

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"


def test_the_configuration_page_is_the_one_the_settings_write():
    written = (DOCS / "configuration.md").read_text()
    assert written == config_doc.render(), (
        f"docs/configuration.md is stale: regenerate it with `{config_doc.COMMAND}`")
