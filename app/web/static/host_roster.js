// The host's list of players during a game: who is connected and who answered the open question, each
// player's rejoin code (for a student whose phone died; hidden until asked for, since the host's screen
// is often projected), and Remove / Undo at any time.
import { h, announce } from "./common.js";

const REFRESH_AFTER_MS = 400;  // a burst of arrivals or answers reads the list once
// Who is connected changes with no message to the room (a phone dies in silence): read it this often.
const PRESENCE_EVERY_MS = 5000;

/** The list in `listEl`; `call(path, options)` is the host's API call, `onCount(n)` gets the player count,
 * `onAnswered(n)` how many players in the game answered the open question. */
export function hostRoster({ listEl, emptyEl, errorEl, call, onCount, onAnswered }) {
  let sessionId = null;
  let ended = false;
  let timer = null;
  let presence = null;
  let reading = false;
  let again = false;
  let players = [];
  let expected = 0;  // the room's player count, which arrives before the list is read again
  const codesShown = new Set();  // participant ids whose rejoin code the host chose to show

  async function read() {
    if (!sessionId) return;
    if (reading) { again = true; return; }
    reading = true;
    try {
      ({ players } = await call(`/sessions/${sessionId}/participants`));
      render(players);
      onAnswered(players.filter((p) => p.answered && !p.removed).length);
    } catch (err) {
      if (err.status !== 401) errorEl.textContent = err.message;
    } finally {
      reading = false;
      if (again) { again = false; refresh(); }
    }
  }

  function refresh() {
    clearTimeout(timer);
    timer = setTimeout(read, REFRESH_AFTER_MS);
  }

  function toggleCode(player) {
    if (codesShown.has(player.participant_id)) codesShown.delete(player.participant_id);
    else codesShown.add(player.participant_id);
    render(players);
    listEl.querySelector(`[data-participant="${CSS.escape(player.participant_id)}"] [data-testid=roster-show-code]`)
      ?.focus();
  }

  function render(players) {
    // "Nobody has joined yet" only while the room's count agrees (a join's message comes before the read).
    emptyEl.hidden = players.length > 0 || expected > 0;
    listEl.replaceChildren(...players.map((p) => h("li", {
      class: `roster-item${p.removed ? " removed" : ""}`, dataset: { testid: "roster-player", participant: p.participant_id },
    },
    h("div", { class: "roster-who" },
      h("span", { class: "roster-name", dataset: { testid: "roster-name" } }, p.nickname),
      h("span", { class: "roster-meta muted small" },
        p.removed || p.connected === null || p.connected === undefined ? null : h("span", {
          class: "roster-presence", dataset: { testid: "roster-presence", connected: String(p.connected) },
        }, p.connected ? "connected" : "away"),
        h("span", { dataset: { testid: "roster-state" } }, p.removed ? "removed" : p.answered ? "answered" : ""),
        p.rejoin_code && !p.removed && codesShown.has(p.participant_id) ? h("span", {
          class: "roster-code", dataset: { testid: "roster-code" } },
        `${p.rejoin_code.slice(0, 3)}-${p.rejoin_code.slice(3)}`) : null)),
    p.rejoin_code && !p.removed && !ended ? h("button", {
      type: "button", class: "btn btn-ghost btn-small", dataset: { testid: "roster-show-code" },
      "aria-expanded": String(codesShown.has(p.participant_id)),
      "aria-label": `Code: ${codesShown.has(p.participant_id) ? "hide" : "show"} ${p.nickname}'s rejoin code`,
      onclick: () => toggleCode(p) }, "Code") : null,
    ended ? null : p.removed
      ? h("button", { type: "button", class: "btn btn-ghost btn-small", dataset: { testid: "roster-restore" },
        "aria-label": `Undo: put ${p.nickname} back in the game`, onclick: () => restore(p) }, "Undo")
      : h("button", { type: "button", class: "btn btn-ghost btn-small", dataset: { testid: "roster-remove" },
        "aria-label": `Remove ${p.nickname} from the game`, onclick: () => remove(p) }, "Remove"))));
  }

  async function remove(player) {
    if (!window.confirm(`Remove ${player.nickname}? Their answers stop counting from now on; you can undo this.`)) {
      return;
    }
    await change(`/sessions/${sessionId}/participants/${player.participant_id}`, { method: "DELETE" },
      `${player.nickname} was removed.`);
  }

  async function restore(player) {
    await change(`/sessions/${sessionId}/participants/${player.participant_id}/restore`, { method: "POST" },
      `${player.nickname} is back in the game.`);
  }

  async function change(path, options, said) {
    errorEl.textContent = "";
    try {
      const result = await call(path, options);
      onCount(result.player_count);
      announce(said);
    } catch (err) {
      if (err.status !== 401) errorEl.textContent = err.message;
    }
    read();
  }

  return {
    /** Follow the room `id` (null: none); `isEnded` hides the buttons of a finished game. */
    follow(id, { isEnded = false } = {}) {
      sessionId = id;
      ended = isEnded;
      players = [];
      expected = 0;
      codesShown.clear();
      listEl.replaceChildren();
      clearInterval(presence);
      if (id) read();
      if (id && !isEnded) presence = setInterval(refresh, PRESENCE_EVERY_MS);
    },
    ended() { ended = true; clearInterval(presence); read(); },
    /** A player was removed or put back: shown at once, and read again with the rest. */
    mark(participantId, { removed }) {
      const player = players.find((p) => p.participant_id === participantId);
      if (player) { player.removed = removed; render(players); }
      refresh();
    },
    /** The room's player count changed to `count`: the list follows on its next read. */
    expect(count) {
      expected = count;
      emptyEl.hidden = players.length > 0 || expected > 0;
    },
    refresh,
  };
}
