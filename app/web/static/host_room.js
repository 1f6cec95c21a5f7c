// The host running a room, question by question: the join link and QR code, lock, players arriving and
// removed, answers coming in, get ready, more time, closing, the scoreboard and the podium.
import {
  CHOICE_SHAPES, announce, connectRoom, formatScore, h, roomMessages, serverClock, showConnection,
  showScreen, startCountdown,
} from "./common.js";
import { renderLeaderboard, renderPodium } from "./standings.js";
import { hostLobby } from "./host_lobby.js";
import { hostRoster } from "./host_roster.js";

/** Wire the room screen. Returns `enterRoom(saved)`, `leaveRoom()` and `closeRoom()` (the socket only). */
export function hostRoom({ store, $, call, showLibrary, showAuth, showReport }) {
  const state = {
    sessionId: null,
    status: null,
    question: null, // the current question: id, position, kind, text, choices, deadline, time_limit_s, points
    questionCount: 0,
    boardVersion: -1,
    board: null,
    playerCount: 0,
    room: null,
    busy: false,
    stopCountdown: () => {},
  };

  const lobby = hostLobby({ $, call, sessionId: () => state.sessionId, onCount: (count) => setPlayerCount(count) });
  const roster = hostRoster({ listEl: $("roster"), emptyEl: $("roster-empty"), errorEl: $("control-error"), call,
    onCount: (count) => setPlayerCount(count),
    // The room's count of answers includes a removed player's; the list knows who is still in the game.
    onAnswered: (answered) => { if (state.status === "question_open") showAnswered(answered); } });

  function leaveRoom() {
    roster.follow(null);
    state.room?.close();
    state.room = null;
    state.stopCountdown();
    showConnection("closed");
    $("connection").hidden = true;  // no room, no connection to speak of
    $("small-code").hidden = true;
  }

  function closeRoom() {
    state.room?.close();
    state.stopCountdown();
  }

  async function enterRoom(saved) {
    $("connection").hidden = false;
    showConnection("connecting");  // from the room's first read over HTTP, not from the socket's
    Object.assign(state, { sessionId: saved.session_id, status: null, question: null, boardVersion: -1,
      board: null });
    lobby.clear();
    $("leaderboard").replaceChildren();
    $("leaderboard-empty").hidden = false;
    $("total-players").textContent = "";
    roster.follow(saved.session_id);
    showScreen("room");
    try {
      applySession(await call(`/sessions/${saved.session_id}`));
    } catch (err) {
      if (err.status === 401) return;
      if (err.status === 404) { store.forget("session_id"); showLibrary("That room no longer exists."); return; }
    }
    state.room?.close();
    state.room = connectRoom({
      sessionId: saved.session_id,
      token: saved.token,
      onMessage: receive,
      onState: showConnection,
      onRefused: (code, reason) => {
        if (code === 4409) {  // the room was opened in another tab or on another device
          showLibrary("This room is open in another tab or on another device. Reload this page to host it here.");
          return;
        }
        store.forget("session_id", ...(code === 4401 ? ["token"] : []));
        if (code === 4401) showAuth("Your sign-in expired. Sign in again.");
        else if (code === 4404) showLibrary("That game was deleted.");
        else showLibrary(`You are not the host of that room${reason ? ` (${reason})` : ""}.`);
      },
    });
  }

  const receive = roomMessages({
    snapshot(message) {
      applyBoard(message.leaderboard, { force: true });
      for (const entry of message.leaderboard?.entries ?? []) lobby.addArrival(entry.participant_id, entry.nickname, { quiet: true });
      applySession(message.session);
    },
    leaderboard: (message) => applyBoard(message),
    question_opened(message) {
      state.questionCount = message.question_count ?? state.questionCount;
      showQuestion({ ...message, id: message.question_id, answered: 0 });
    },
    question_closed(message) {
      showClosed(message);
      applyBoard(message.leaderboard);  // the board after the close comes in the same frame
      roster.refresh();
    },
    player_joined(message) {
      setPlayerCount(message.player_count);
      lobby.addArrival(message.participant_id, message.nickname);
      roster.refresh();
    },
    player_removed(message) {
      setPlayerCount(message.player_count);
      lobby.removeArrival(message.participant_id);
      roster.mark(message.participant_id, { removed: true });
    },
    player_restored(message) {
      setPlayerCount(message.player_count);
      if (state.status === "lobby") lobby.addArrival(message.participant_id, message.nickname, { quiet: true });
      roster.mark(message.participant_id, { removed: false });
    },
    answer_count(message) {
      if (message.question_id === state.question?.id) showAnswered(message.answered);
      roster.refresh();
    },
    question_extended: (message) => extendQuestion(message),
    session_ended: (message) => showFinal(message.podium),
  });

  function applySession(session) {
    state.questionCount = session.question_count;
    setPlayerCount(session.player_count);
    lobby.setLocked(Boolean(session.locked));
    const code = session.join_code;
    const base = $("join-banner").dataset.publicUrl;  // PUBLIC_URL: what the QR code draws too
    const link = `${base}/?code=${code}`;
    $("join-code").textContent = code;
    $("small-code").querySelector("strong").textContent = code;
    $("join-url").textContent = base.replace(/^https?:\/\//, "");
    $("join-link").textContent = link.replace(/^https?:\/\//, "");
    $("join-qr").src = `/join/${code}.svg`;
    $("join-banner").title = link;
    $("host-bar").hidden = false;
    $("host-user").textContent = store.get().username ?? "";
    const q = session.current_question;
    if (session.status === "lobby") {
      state.status = "lobby";
      $("host-question").hidden = true;
      $("host-final").hidden = true;
      $("scoreboard").hidden = true;
      $("join-banner").hidden = false;
      $("small-code").hidden = true;
      updateControls();
    } else if (session.status === "question_open" && q) {
      showQuestion(q);
    } else if (session.status === "question_closed" && q) {
      showQuestion(q, { closed: true });
      showClosed({ question_id: q.id, correct_choice: q.correct_choice, choice_counts: q.choice_counts });
    } else if (session.status === "ended") {
      showFinal(null);
    }
  }

  function setPlayerCount(count) {
    state.playerCount = count;
    roster.expect(count);
    $("player-count").textContent = String(count);
    $("player-count-label").textContent = count === 1 ? "player" : "players";
    if (state.status === "question_open") showAnswered(state.question?.answered ?? 0);
  }

  function applyBoard(board, { force = false } = {}) {
    if (!board || (!force && board.version <= state.boardVersion)) return;
    state.boardVersion = board.version;
    // Points stay hidden on the server until a question closes, so every board is safe to show.
    renderBoard(board);
  }

  function renderBoard(board) {
    state.board = board;
    renderLeaderboard($("leaderboard"), board.entries);
    $("leaderboard-empty").hidden = board.entries.length > 0;
    $("total-players").textContent = board.total_players ? `${board.total_players} playing` : "";
    if (state.status === "question_closed") showScoreboard();
  }

  function showScoreboard() {
    const entries = (state.board?.entries ?? []).slice(0, 5);
    $("scoreboard").hidden = entries.length === 0;
    renderLeaderboard($("scoreboard-list"), entries, { testid: "scoreboard" });
  }

  function showAnswered(answered) {
    if (state.question) state.question.answered = answered;
    $("answered").textContent = `${answered} of ${state.playerCount} answered`;
  }

  function showQuestion(q, { closed = false } = {}) {
    if (!closed && state.status === "question_open" && state.question?.id === q.id) return;
    state.status = closed ? "question_closed" : "question_open";
    state.question = q;
    $("join-banner").hidden = true;
    $("host-final").hidden = true;
    $("scoreboard").hidden = true;
    $("host-question").hidden = false;
    $("small-code").hidden = false;
    $("question-position").textContent = `Question ${q.position + 1} of ${state.questionCount}`;
    $("question-points").textContent = q.kind === "poll" ? "Poll"
      : q.points === 0 ? "No points" : q.points === 2000 ? "Double points" : `${formatScore(q.points)} pts`;
    $("question-status").textContent = closed ? "Closed" : "Open";
    $("host-question").dataset.closed = String(closed);
    $("host-question").dataset.waiting = "false";
    $("question-text").textContent = q.text;
    const image = $("question-image");
    image.hidden = !q.image_url;
    if (q.image_url) { image.src = q.image_url; image.alt = q.image_alt || "Picture for this question"; }
    $("choice-results").replaceChildren(...q.choices.map((text, i) => h("li", {
      class: `choice-result c${i}`, dataset: { testid: `choice-${i}` },
    },
    h("span", { class: "shape", "aria-hidden": "true" }, CHOICE_SHAPES[i]),
    h("span", { class: "choice-text" }, text),
    h("span", { class: "choice-count", dataset: { testid: `choice-count-${i}` } }),
    h("span", { class: "choice-bar", "aria-hidden": "true" }))));
    state.stopCountdown();
    $("get-ready").hidden = true;
    $("answered").hidden = closed;
    if (!closed) {
      showAnswered(q.answered ?? 0);
      announce(`Question ${q.position + 1}: ${q.text}`);
      const wait = q.opened_at ? serverClock.remainingMs(q.opened_at) : 0;
      if (wait > 0) {
        // Answers are not open yet: no "Open" badge, and no timer bubble until its time runs.
        $("question-status").textContent = "Get ready";
        $("host-question").dataset.waiting = "true";
        $("get-ready").hidden = false;
        state.stopCountdown = startCountdown({ deadline: q.opened_at, totalS: wait / 1000,
          numberEl: $("get-ready-count"), onEnd: () => { if (state.question === q) startTimer(q); } });
      } else {
        startTimer(q);
      }
    }
    updateControls();
  }

  /** The open question's countdown, to its deadline (which "+10 s" moves). */
  function startTimer(q) {
    $("get-ready").hidden = true;
    $("host-question").dataset.waiting = "false";
    state.stopCountdown();
    $("question-status").textContent = "Open";
    state.stopCountdown = startCountdown({
      deadline: q.deadline,
      // The bar spans the question's whole time, any extension included.
      totalS: q.opened_at ? (Date.parse(q.deadline) - Date.parse(q.opened_at)) / 1000 : q.time_limit_s,
      numberEl: $("countdown"),
      barEl: document.querySelector("[data-testid=host-question] .timebar-fill"),
      announceAt: [10],
      onEnd: () => { $("question-status").textContent = "Time's up"; },
    });
  }

  /** The open question got more time (here, or from another tab of the host): its timer runs to the new deadline. */
  function extendQuestion(message) {
    const q = state.question;
    if (state.status !== "question_open" || !q || message.question_id !== q.id
        || Date.parse(message.deadline) <= Date.parse(q.deadline)) return;  // seen already
    q.deadline = message.deadline;
    if (!q.opened_at || serverClock.remainingMs(q.opened_at) <= 0) startTimer(q);
    announce(`${message.added_s} more seconds.`);
  }

  function showClosed(message) {
    state.stopCountdown();
    state.status = "question_closed";
    $("question-status").textContent = "Closed";
    $("host-question").dataset.closed = "true";
    $("host-question").dataset.waiting = "false";
    $("get-ready").hidden = true;
    $("answered").hidden = true;
    const bar = document.querySelector("[data-testid=host-question] .timebar-fill");
    if (bar) bar.style.transform = "scaleX(0)";
    const counts = message.choice_counts;
    const most = counts ? Math.max(1, ...counts) : 1;
    const poll = message.correct_choice === null || message.correct_choice === undefined;
    for (const [i, row] of [...$("choice-results").children].entries()) {
      const correct = i === message.correct_choice;
      row.classList.toggle("correct", !poll && correct);
      row.classList.toggle("wrong", !poll && !correct);
      if (correct) row.setAttribute("aria-label", `${row.querySelector(".choice-text").textContent} (correct)`);
      if (counts) {
        row.querySelector(".choice-count").textContent = String(counts[i] ?? 0);
        row.style.setProperty("--share", String((counts[i] ?? 0) / most));
      }
    }
    showScoreboard();
    const right = poll ? null : state.question?.choices?.[message.correct_choice];
    announce(`Question closed.${right ? ` The answer was ${right}.` : ""}`);
    updateControls();
  }

  async function showFinal(podium) {
    state.status = "ended";
    roster.ended();
    state.stopCountdown();
    $("host-question").hidden = true;
    $("join-banner").hidden = true;
    $("scoreboard").hidden = true;
    $("small-code").hidden = true;
    $("host-final").hidden = false;
    updateControls();
    let entries = podium;
    if (!entries) {
      try {
        entries = (await call(`/sessions/${state.sessionId}/leaderboard?limit=5`)).entries;
      } catch {
        entries = state.board?.entries ?? [];
      }
    }
    renderPodium($("podium"), entries.slice(0, 5), { scoredOnly: true, empty: state.playerCount
      ? "Nobody scored any points in this game." : "Nobody played this game." });
    const winner = entries.find((entry) => entry.score > 0);
    if (podium) announce(`The game is over.${winner ? ` ${winner.nickname} wins!` : ""}`);
  }

  function updateControls() {
    const next = $("next-question");
    const close = $("close-question");
    const end = $("end-session");
    $("add-time").disabled = state.busy || state.status !== "question_open";
    const position = state.question?.position ?? -1;
    const more = position + 1 < state.questionCount;
    next.closest(".controls").hidden = state.status === "ended";
    next.textContent = state.status === "lobby" ? "Start the quiz" : more ? "Next question" : "No more questions";
    next.disabled = state.busy || state.status === "question_open" || !more;
    close.disabled = state.busy || state.status !== "question_open";
    end.disabled = state.busy || state.status === "ended";
    end.textContent = state.status === "question_closed" && !more ? "Show the podium" : "End game";
    end.classList.toggle("btn-primary", state.status === "question_closed" && !more);
    end.classList.toggle("btn-danger", !(state.status === "question_closed" && !more));
  }

  async function hostAction(path, apply, body = undefined) {
    state.busy = true;
    updateControls();
    $("control-error").textContent = "";
    try {
      apply(await call(`/sessions/${state.sessionId}${path}`, { method: "POST", body }));
    } catch (err) {
      if (err.status === 401) return;
      $("control-error").textContent = err.message;
      // The room moved on without us (e.g. the question closed at its deadline): re-read it.
      if (err.status === 409) {
        try { applySession(await call(`/sessions/${state.sessionId}`)); } catch { /* shown */ }
      }
    } finally {
      state.busy = false;
      updateControls();
    }
  }

  $("next-question").addEventListener("click", () => hostAction("/questions/next", (opened) => {
    state.questionCount = opened.question_count ?? state.questionCount;
    showQuestion({ ...opened, id: opened.question_id, answered: 0 });
  }));
  $("close-question").addEventListener("click", () => hostAction("/questions/close", showClosed));
  // The deadline on screen makes a retry safe: the server extends a question only from that deadline.
  $("add-time").addEventListener("click", () => hostAction("/questions/extend", extendQuestion,
    { seconds: 10, deadline: state.question?.deadline }));
  $("end-session").addEventListener("click", () => {
    const last = state.status === "question_closed" && (state.question?.position ?? -1) + 1 >= state.questionCount;
    if (!last && !window.confirm("End the game now for everyone?")) return;
    hostAction("/end", () => showFinal(null));
  });
  $("new-quiz").addEventListener("click", () => {
    store.forget("session_id");
    showLibrary();
  });
  $("open-report").addEventListener("click", () => {
    const sessionId = state.sessionId;
    store.forget("session_id");
    showReport(sessionId);
  });

  return { enterRoom, leaveRoom, closeRoom };
}
