// A leaderboard, live: podium and table pushed over /ws (seed 001's subscribe protocol) whenever the
// top changes, a player's place found and followed, past periods, the time to the next reset.
import {
  ApiError, announce, api, formatScore, h, ordinal, reconnectingSocket, renderLeaderboard, renderPodium,
  showConnection, showScreen, socketBase,
} from "./common.js";

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
};

// Entries of the leaderboard service, in the shape the shared renderers draw.
function rows(entries) {
  return entries.map((e) => ({
    participant_id: e.player_id, nickname: e.display_name || e.player_id, score: e.score, rank: e.rank,
  }));
}

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
  render(state.live.entries, state.live.total, `Live · ${state.live.period}`);
}

function showPeriod(period) {
  $("board-period").textContent = period;
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
  showPeriod(state.board.current_period);
  describeReset();
  await loadPeriods();
}

async function loadPeriods() {
  const { periods } = await api(`${path}/periods`);
  const picker = $("period-picker");
  const chosen = state.viewing;
  picker.replaceChildren(...periods.map((p) => h("option", { value: p.closed_at ? p.period : "" },
    p.closed_at ? `${p.period} (final, ${formatScore(p.total ?? 0)} players)` : `${p.period} (live)`)));
  picker.value = chosen ?? "";
}

async function viewPeriod(period) {
  state.viewing = period || null;
  if (state.viewing === null) {
    renderLive();
    await refreshAround();
    return;
  }
  try {
    const board = await api(`${path}/top?limit=${top}&period=${encodeURIComponent(period)}`);
    render(board.entries, board.total, `Final standings · ${period}`);
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
    announce(`The period ${message.period} has ended.`);
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
$("find-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const wanted = $("find-player").value.trim();
  if (!wanted) {
    $("find-error").textContent = "Type a player id.";
    return;
  }
  state.player = wanted;
  await refreshAround();
  subscribe(state.socket.send);  // follow the player's standing live
  if (state.viewing === null) renderLive();
});

(async function start() {
  try {
    await loadBoard();
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) {
      showScreen("missing");
      return;
    }
    throw err;
  }
  showScreen("board");
  connect();
})();
