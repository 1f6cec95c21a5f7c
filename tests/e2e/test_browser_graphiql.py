"""Seed 000's GraphQL playground in a real browser: GraphiQL at GET /graphql, its files from npm served by
the web process itself, runs a query a person types against the running stack and shows the answer,
with no script error and no Content-Security-Policy violation. A screenshot lands in
tests/artifacts/browser/graphiql.png (git-ignored)."""
from __future__ import annotations

import uuid

from playwright.sync_api import Browser, expect

from tests.e2e.test_browser import WAIT_MS
from tests.e2e.test_browser_classroom import DESKTOP, ClassTab
from tests.helpers import Api, HttpClient, wait_until


def test_graphiql_runs_a_query_a_person_types(live_stack, browser: Browser):
    http = Api(HttpClient(live_stack.base_url))
    owner = http.host()
    board_id = "gq-" + uuid.uuid4().hex[:10]
    http.post("/api/v1/leaderboards", {"id": board_id, "name": "Playground", "sort_order": "desc",
                                       "update_mode": "best", "reset_period": "never"}, token=owner.token,
              expect=201)
    http.post("/api/v1/scores", {"leaderboard_id": board_id, "player_id": "Phoenix1", "score": 1500,
                                 "metadata": {"game_id": "match123"}}, token=owner.token, expect=201)
    wait_until(lambda: http.get(f"/api/v1/leaderboards/{board_id}/top", expect=200).get_json()["total"] == 1,
               "the score never reached the board")

    tab = ClassTab(browser, live_stack.base_url, "desktop", DESKTOP)
    try:
        tab.page.goto("/graphql")
        editor = tab.page.locator(".graphiql-query-editor .CodeMirror")
        expect(editor).to_contain_text("leaderboard", timeout=WAIT_MS)  # seed 000's query, ready to run
        editor.click()
        tab.page.keyboard.press("Control+A")
        tab.page.keyboard.press("Delete")
        tab.page.keyboard.type(f'{{ top(board_id: "{board_id}") {{ total entries {{ rank player_id score '
                               f'metadata }} }} }}')
        tab.page.get_by_role("button", name="Prettify query (Shift-Ctrl-P)").click()
        expect(editor).to_contain_text("entries {")
        tab.page.get_by_role("button", name="Execute query (Ctrl-Enter)").click()
        answer = tab.page.locator(".graphiql-response .CodeMirror")
        expect(answer).to_contain_text('"player_id": "Phoenix1"', timeout=WAIT_MS)
        expect(answer).to_contain_text('"score": 1500')
        expect(answer).to_contain_text('"game_id": "match123"')
        # The schema GraphiQL introspected: its documentation explorer knows the service's types.
        tab.page.get_by_role("button", name="Show Documentation Explorer").click()
        expect(tab.page.locator(".graphiql-doc-explorer")).to_contain_text("Query", timeout=WAIT_MS)
        tab.shot("graphiql")
        assert tab.errors == [], tab.errors  # script errors and CSP violations alike
    finally:
        tab.context.close()
