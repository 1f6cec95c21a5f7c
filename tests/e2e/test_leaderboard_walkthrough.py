"""The leaderboard walk-through as someone new to the service pastes it into a shell: every ```sh block
of docs/leaderboards.md (the walk-through, then its GraphQL sequel), in order, in one bash, against the
running processes. So the page and the service cannot drift apart."""
from __future__ import annotations

import json
import re
import subprocess
import uuid
from pathlib import Path

from tests.helpers import WAIT_S

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "leaderboards.md"
PAGE_URL = "http://127.0.0.1:8000"
PAGE_BOARD = "game1"
PAGE_USER = "alice"

# What the test adds to the shell: curl fails on an HTTP error (showing the answer) and ends each answer
# with a newline, so every answer printed is a line of JSON. A read that finds nothing yet (404) reads
# again, bounded by TEST_WAIT_S: the board shows a write moments after it is acknowledged (see
# SCORE_RANK_WAIT_MS), and a person would read again too. A write is never sent twice.
PRELUDE = r"""
set -euo pipefail
curl() {
  local deadline=$((SECONDS + WAIT_S)) answer status
  while :; do
    answer=$(command curl -sS -w '\n%{http_code}' "$@") || return
    status=${answer##*$'\n'}
    answer=${answer%$'\n'*}
    case $status in 2??) printf '%s\n' "$answer"; return 0 ;; esac
    if [[ $status != 404 || " $* " == *" -d "* || " $* " == *" -X "* ]] || (( SECONDS >= deadline )); then
      printf 'HTTP %s from curl %s: %s\n' "$status" "$*" "$answer" >&2
      return 22
    fi
    sleep 0.2
  done
}
"""


def walk_through() -> list[str]:
    """The page's ```sh blocks, in order."""
    return re.findall(r"^```sh\n(.*?)^```$", PAGE.read_text(), re.DOTALL | re.MULTILINE)


def test_the_walk_through_quotes_every_url_with_a_query():
    # zsh (macOS's shell) reads an unquoted `?` as a glob and refuses the command: "no matches found".
    unquoted = [url for block in walk_through() for url in re.findall(r"(?<=\s)http://[^\s'\"]*\?\S*", block)]
    assert walk_through() and unquoted == []


def test_the_leaderboard_walk_through_works_pasted_into_a_shell(live_stack):
    run = uuid.uuid4().hex[:8]
    board_id, username = f"{PAGE_BOARD}-{run}", f"{PAGE_USER}-{run}"
    script = "\n".join(walk_through())
    assert PAGE_URL in script and f'"{PAGE_BOARD}"' in script and f'"{PAGE_USER}"' in script
    # Names of this run, so the walk-through meets a new service as a new user does.
    script = re.sub(rf"\b{PAGE_BOARD}\b", board_id, script.replace(PAGE_URL, live_stack.base_url))
    script = script.replace(f'"{PAGE_USER}"', f'"{username}"')
    done = subprocess.run(["bash", "-c", PRELUDE + script], check=False, capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "WAIT_S": str(int(WAIT_S))}, timeout=4 * WAIT_S)
    assert (done.returncode, done.stderr) == (0, ""), done.stdout
    answers = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]

    def answer(predicate) -> dict:
        found = [a for a in answers if predicate(a)]
        assert found, answers
        return found[0]

    assert answer(lambda a: "username" in a)["username"] == username
    assert answer(lambda a: a.get("id") == board_id)["current_period"] == "all"
    first = answer(lambda a: a.get("player_id") == "player123" and "outcome" in a)
    assert (first["outcome"], first["score"]) == ("changed", 1500)
    assert [r["outcome"] for r in answer(lambda a: "results" in a)["results"]] == ["changed"] * 3
    top = answer(lambda a: "entries" in a and "next_cursor" in a)
    assert top["leaderboard_id"] == board_id and top["label"] == "All time"
    around = answer(lambda a: "entries" in a and a.get("player_id") == "player123")
    assert "player123" in [e["player_id"] for e in around["entries"]]
    assert answer(lambda a: "p50" in a)["leaderboard_id"] == board_id
    graphql = [a for a in answers if "data" in a or "errors" in a]
    assert graphql and [a for a in graphql if "errors" in a] == []
    submitted = answer(lambda a: "submitScore" in a.get("data", {}))["data"]["submitScore"]
    assert (submitted["outcome"], submitted["score"], submitted["replayed"]) == (
        "changed", 9007199254740991, False)
