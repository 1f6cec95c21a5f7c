// The host's lobby: a chip per player who arrived (selecting one removes them), and the room's lock.
import { announce, h } from "./common.js";

/** Wire the lobby's chips and lock; `sessionId()` is the room's, `onCount(n)` takes the new player count. */
export function hostLobby({ $, call, sessionId, onCount }) {
  const players = new Map();  // participant id -> nickname, for the chips
  let locked = false;

  function setLocked(value) {
    locked = value;
    const button = $("lock-room");
    button.textContent = locked ? "Unlock the room" : "Lock the room";
    button.setAttribute("aria-pressed", String(locked));
    $("locked-badge").hidden = !locked;
  }

  $("lock-room").addEventListener("click", async () => {
    try {
      const result = await call(`/sessions/${sessionId()}/lock`, { method: "POST", body: { locked: !locked } });
      setLocked(result.locked);
      announce(result.locked ? "The room is locked: nobody new can join." : "The room is open again.");
    } catch (err) {
      if (err.status !== 401) $("control-error").textContent = err.message;
    }
  });

  /** A chip per player in the lobby; selecting one removes that player (after a confirmation). */
  function addArrival(participantId, nickname, { quiet = false } = {}) {
    if (!nickname || !participantId || players.has(participantId)) return;
    players.set(participantId, nickname);
    const arrivals = $("arrivals");
    arrivals.append(h("li", { class: "arrival-item", dataset: { participant: participantId } },
      h("button", { type: "button", class: "arrival", dataset: { testid: "remove-player" },
        "aria-label": `${nickname}: remove from the game`, title: "Remove this player",
        onclick: () => removePlayer(participantId, nickname) },
      h("span", { dataset: { testid: "arrival" } }, nickname), h("span", { "aria-hidden": "true" }, " ×"))));
    while (arrivals.children.length > 60) arrivals.firstElementChild.remove();
    if (!quiet) announce(`${nickname} joined`);
  }

  function removeArrival(participantId) {
    players.delete(participantId);
    $("arrivals").querySelector(`[data-participant="${CSS.escape(participantId)}"]`)?.remove();
  }

  async function removePlayer(participantId, nickname) {
    if (!window.confirm(`Remove ${nickname} from this game? You can undo this in the list of players.`)) return;
    try {
      const result = await call(`/sessions/${sessionId()}/participants/${participantId}`, { method: "DELETE" });
      onCount(result.player_count);
      removeArrival(participantId);
      announce(`${nickname} was removed.`);
    } catch (err) {
      if (err.status !== 401) $("control-error").textContent = err.message;
    }
  }

  function clear() {
    players.clear();
    $("arrivals").replaceChildren();
  }

  return { addArrival, removeArrival, setLocked, clear };
}
