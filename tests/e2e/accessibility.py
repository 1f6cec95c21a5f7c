"""An offline accessibility check for the browser tests: axe-core, installed from npm's registry by
`scripts/deps.sh` (tests/e2e/axe/package-lock.json), served to the page by the test on the
page's own origin (so the page's CSP allows it, and nothing is fetched from a CDN)."""
from __future__ import annotations

from pathlib import Path

from playwright.sync_api import BrowserContext, Page

AXE = Path(__file__).resolve().parent / "axe" / "node_modules" / "axe-core" / "axe.min.js"
AXE_PATH = "/__test__/axe.min.js"
# Serious and critical findings fail a test; moderate and minor ones are reported with them.
BLOCKING = ("serious", "critical")

_RUN = """async () => {
  const result = await axe.run(document, { resultTypes: ["violations"] });
  return result.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help,
    nodes: v.nodes.slice(0, 5).map((n) => `${n.target.join(" ")}: ${n.failureSummary}`) }));
}"""


def serve_axe(context: BrowserContext) -> None:
    """Answer the checker's URL from the installed file, in every page of the context."""
    source = AXE.read_bytes()  # missing: run `scripts/deps.sh` (a failure, never a skip)
    context.route(f"**{AXE_PATH}", lambda route: route.fulfill(body=source, content_type="text/javascript"))


def violations(page: Page) -> list[dict]:
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.add_script_tag(url=AXE_PATH)
    return page.evaluate(_RUN)


def assert_accessible(page: Page, where: str) -> None:
    found = violations(page)
    blocking = [v for v in found if v["impact"] in BLOCKING]
    assert not blocking, f"{where}: accessibility violations {blocking}"
