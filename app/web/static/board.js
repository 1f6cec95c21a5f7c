// A leaderboard, live: podium and table pushed over /ws (seed 001's subscribe protocol) whenever the
// top or the player count changes, a player's place found (by name or id) and followed, past periods
// by their names, when the board last moved, the time to the next reset.
import {
  ApiError, announce, api, formatScore, h, ordinal, reconnectingSocket, showConnection, showScreen,
  socketBase,
} from "./common.js";
import { renderLeaderboard, renderPodium } from "./standings.js";

const root = document.querySelector("[data-board-id]");
const boardId = root.dataset.boardId;
const top = Number(root.dataset.top) || 25;
const $ = (testid) => document.querySelector(`[data-testid="${testid}"]`);
const path = `/leaderboards/${encodeURIComponent(boardId)}`;

const state = {
  board: null,          // GET /leaderboards/{id}
  live: null,           // the newest leaderboard_update
  viewing: null,        // null: live; else the past period shown
  player: null,         // the player found, followed on the socket
  socket: null,
  resetTimer: null,
  labels: new Map(),     // period id -> how a person names it (the service's `label`)
  updatedAt: null,       // when this page last saw the live board move
};

const UPDATED_TICK_MS = 30_000;

// Entries of the leaderboard service, in the shape the shared renderers draw.
function rows(entries) {
  return entries.map((e) => ({
    participant_id: e.player_id, nickname: e.display_name || e.player_id, score: e.score, rank: e.rank,
  }));
}

const nameOf = (period) => state.labels.get(period) || period;

function render(entries, total, label) {
  const shown = rows(entries);
  renderPodium($("podium"), shown.slice(0, 3), { highlight: state.player });
  $("podium-empty").hidden = shown.length > 0;
  renderLeaderboard($("leaderboard"), shown, { highlight: state.player });
  $("total-players").textContent = `${formatScore(total)} player${total === 1 ? "" : "s"}`;
  $("view-label").textContent = label;
  $("back-live").hidden = state.viewing === null;
}

function renderLive() {
  if (state.viewing !== null || !state.live) return;
  render(state.live.entries, state.live.total, `Live · ${nameOf(state.live.period)}`);
}

function showPeriod(period) {
  $("board-period").textContent = nameOf(period);
}

function describeUpdated() {
  const el = $("last-updated");
  el.hidden = state.viewing !== null || state.updatedAt === null;
  if (state.updatedAt === null) return;
  const minutes = Math.floor((Date.now() - state.updatedAt) / 60_000);
  el.textContent = minutes < 1 ? "Updated just now"
    : minutes < 60 ? `Updated ${minutes} min ago` : `Updated at ${new Date(state.updatedAt).toLocaleTimeString()}`;
  el.title = new Date(state.updatedAt).toLocaleString();
}

function describeReset() {
  clearInterval(state.resetTimer);
  const next = state.board?.next_reset;
  const el = $("next-reset");
  if (!next) {
    el.textContent = "Never resets";
    return;
  }
  const tick = () => {
    const left = Math.max(0, Date.parse(next) - Date.now());
    const s = Math.floor(left / 1000);
    const d = Math.floor(s / 86400), hh = Math.floor((s % 86400) / 3600), mm = Math.floor((s % 3600) / 60);
    el.textContent = left === 0 ? "Resetting now…"
      : `Resets in ${d ? `${d} d ` : ""}${hh ? `${hh} h ` : ""}${mm} min ${d ? "" : `${s % 60} s`}`.trim();
  };
  tick();
  state.resetTimer = setInterval(tick, 1000);
}

async function loadBoard() {
  state.board = await api(path);
  $("board-name").textContent = state.board.name;
  document.title = `${state.board.name} · LiveQuiz`;
  $("order-hint").hidden = state.board.sort_order !== "asc";
  describeReset();
  await loadPeriods();
  showPeriod(state.board.current_period);
}

async function loadPeriods() {
  const { periods } = await api(`${path}/periods`);
  for (const p of periods) state.labels.set(p.period, p.label);
  const picker = $("period-picker");
  const chosen = state.viewing;
  const players = (n) => `${formatScore(n)} player${n === 1 ? "" : "s"}`;
  picker.replaceChildren(...periods.map((p) => h("option", { value: p.closed_at ? p.period : "" },
    p.closed_at ? `${p.label} (final, ${players(p.total ?? 0)})` : `${p.label} (live)`)));
  picker.value = chosen ?? "";
}

async function viewPeriod(period) {
  state.viewing = period || null;
  describeUpdated();
  if (state.viewing === null) {
    renderLive();
    await refreshAround();
    return;
  }
  try {
    const board = await api(`${path}/top?limit=${top}&period=${encodeURIComponent(period)}`);
    render(board.entries, board.total, `Final standings · ${nameOf(period)}`);
    await refreshAround();
  } catch (err) {
    $("find-error").textContent = err.message;
  }
}

async function refreshAround() {
  if (!state.player) return;
  const period = state.viewing ? `&period=${encodeURIComponent(state.viewing)}` : "";
  try {
    const around = await api(`${path}/around/${encodeURIComponent(state.player)}?range=5${period}`);
    showStanding(around);
    renderLeaderboard($("around"), rows(around.entries), { highlight: state.player });
    $("find-error").textContent = "";
  } catch (err) {
    $("standing").hidden = true;
    $("find-error").textContent = err.status === 404 ? `${state.player} is not on this board${state.viewing ? " in that period" : ""}.`
      : err.message;
  }
}

function showStanding(standing) {
  $("standing").hidden = false;
  $("standing-name").textContent = standing.display_name || state.player;
  $("standing-rank").textContent = standing.rank ? ordinal(standing.rank) : "not ranked";
  $("standing-score").textContent = formatScore(standing.score);
  $("standing-top").textContent = standing.top_percent != null ? `(top ${standing.top_percent}%)` : "";
}

function subscribe(send) {
  send({ type: "subscribe", leaderboard_id: boardId, top, ...(state.player ? { player_id: state.player } : {}) });
}

const handlers = {
  leaderboard_update(message) {
    const moved = state.live && state.live.period !== message.period;
    if (state.live && state.live.period === message.period && message.version <= state.live.version) return;
    state.live = message;
    if (message.label) state.labels.set(message.period, message.label);
    state.updatedAt = Date.now();
    $("last-updated").dataset.version = `${message.period}/${message.version}`;
    describeUpdated();
    showPeriod(message.period);
    renderLive();
    if (moved) {
      loadBoard().catch(() => {});
    }
  },
  standing(message) {
    if (message.player_id !== state.player || state.viewing !== null) return;
    if (message.rank === null) return;
    refreshAround();
  },
  period_closed(message) {
    announce(`The period ${message.label || nameOf(message.period)} has ended.`);
    loadPeriods().catch(() => {});
  },
  leaderboard_deleted() {
    showScreen("missing");
    state.socket?.close();
  },
  error(message) {
    if (message.code === "not_found") {
      showScreen("missing");
      state.socket?.close();
    } else if (message.code === "unavailable") {
      // The service was briefly away when the page subscribed: nothing is watched until it asks again.
      setTimeout(() => subscribe(state.socket.send), 500 + Math.random() * 1000);
    } else {
      console.warn("board socket error", message.code, message.message);
    }
  },
};

function connect() {
  state.socket = reconnectingSocket({
    url: async () => `${socketBase()}/ws`,
    onOpen: subscribe,
    onMessage: (message) => handlers[message.type]?.(message),
    onState: showConnection,
  });
}

$("period-picker").addEventListener("change", (event) => viewPeriod(event.target.value));
$("back-live").addEventListener("click", () => {
  $("period-picker").value = "";
  viewPeriod("");
});
// The players a name (any case) or an id finds; the first is followed, the others offered.
async function findPlayers(wanted) {
  const period = state.viewing ? `&period=${encodeURIComponent(state.viewing)}` : "";
  const { players } = await api(`${path}/players?name=${encodeURIComponent(wanted)}${period}`);
  $("find-choices").replaceChildren(...(players.length > 1 ? players : []).map((p) => h("li", {},
    h("button", { type: "button", class: "btn btn-secondary btn-small", onclick: () => follow(p.player_id) },
      `${p.display_name || p.player_id} (${p.player_id})`))));
  return players;
}

async function follow(playerId) {
  state.player = playerId;
  await refreshAround();
  subscribe(state.socket.send);  // follow the player's standing live
  if (state.viewing === null) renderLive();
}

$("find-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const wanted = $("find-player").value.trim();
  if (!wanted) {
    $("find-error").textContent = "Type a name or a player id.";
    return;
  }
  let players;
  try {
    players = await findPlayers(wanted);
  } catch (err) {
    $("find-error").textContent = err.message;
    return;
  }
  if (players.length === 0) {
    $("standing").hidden = true;
    $("find-error").textContent = `${wanted} is not on this board${state.viewing ? " in that period" : ""}.`;
    if (state.player !== null) {  // nobody followed any more: no highlight left on the one before
      state.player = null;
      subscribe(state.socket.send);
      if (state.viewing === null) renderLive();
      else viewPeriod(state.viewing);
    }
    return;
  }
  await follow(players[0].player_id);
});

(async function start() {
  showConnection("connecting");  // from the board's first read over HTTP, not from the socket's
  try {
    await loadBoard();
  } catch (err) {
    showConnection("closed");
    if (err instanceof ApiError && err.status === 404) {
      showScreen("missing");
      return;
    }
    throw err;
  }
  showScreen("board");
  connect();
  setInterval(describeUpdated, UPDATED_TICK_MS);
})();
