// The player's page: join with a PIN and a nickname, then play in the room until the podium.
import {
  api, storedRecord, connectRoom, roomMessages, startCountdown, h, announce, showConnection, CHOICE_SHAPES,
  ordinal, formatScore, showScreen, serverClock,
} from "./common.js";
import { renderLeaderboard } from "./standings.js";
import { answering } from "./player_answer.js";
import { joinScreen } from "./player_join.js";
import { resultScreens } from "./player_result.js";

// token, user_id, nickname, join_code, session_id, participant_id, answer {question_id, choice},
// result {question_id, correct, points, ...}: enough to resume after a reload or a dropped network.
const store = storedRecord("livequiz.player");
const $ = (testid, root = document) => root.querySelector(`[data-testid="${testid}"]`);

const state = {
  sessionId: null,
  participantId: null,
  status: null,
  question: null,
  questionCount: 0,
  trailFrom: Infinity, // boards newer than this version come after the shown result's close
  choice: null, // what this player answered to the open question
  attempt: null, // {question_id, choice}: an answer tapped whose recording the server has not confirmed
  timeUp: false,
  boardVersion: -1,
  heldBoard: null, // leaderboard updates wait while a question is open, so they do not give answers away
  you: null,
  room: null,
  toldBusy: false, // the player heard that the room is busy, and it has not let them in since
  stopCountdown: () => {},
};

// ---- joining (player_join.js) ---------------------------------------------------------------

const showJoin = joinScreen({ store, $, onJoined: (saved) => enterRoom(saved) });

function leaveRoom() {
  state.room?.close();
  state.room = null;
  state.stopCountdown();
  store.forget("session_id", "participant_id", "answer", "result", "rejoin_code");
  history.replaceState(null, "", location.pathname);
  $("join-code").value = "";
  showJoin();
}
$("play-again").addEventListener("click", leaveRoom);
$("back-to-join").addEventListener("click", leaveRoom);
$("play-here").addEventListener("click", () => enterRoom(store.get()));

// ---- results (player_result.js) and answering (player_answer.js) -----------------------------

const { showMissedResult, showTrailing, closeQuestion, showResult, finish } = resultScreens({
  state, store, $, recordedAnswer, renderBoard, updateMe });
const { submitAnswer } = answering({ state, store, $, lockAnswers, showResult });

// ---- the room ------------------------------------------------------------------------------

async function enterRoom(saved) {
  showConnection("connecting");  // from the room's first read over HTTP, not from the socket's
  state.sessionId = saved.session_id;
  state.participantId = saved.participant_id;
  state.boardVersion = -1;
  $("player-meta").hidden = false;
  $("player-nickname").textContent = saved.nickname ?? "";
  $("lobby-nickname").textContent = saved.nickname ?? "";
  showRejoinCode(saved.rejoin_code);
  // Show the room's state over HTTP first, so the page is right even before the socket opens.
  try {
    const session = await api(`/sessions/${saved.session_id}`, { token: saved.token });
    applySession(session);
  } catch (err) {
    if (err.status === 401 || err.status === 404) {
      store.forget("session_id", "participant_id", "answer", "result", ...(err.status === 401 ? ["token"] : []));
      showJoin(err.status === 401 ? "Your session expired. Join again." : "That game no longer exists.");
      return;
    }
    showScreen("lobby");
  }
  state.room?.close();
  state.room = connectRoom({
    sessionId: saved.session_id,
    token: saved.token,
    onMessage: receive,
    onState: (connection) => {
      showConnection(connection);
      if (connection === "reconnecting") announce("Connection lost. Reconnecting…");
      if (connection === "busy" && !state.toldBusy) {  // once per wait: a busy room refuses each retry
        announce("The room is busy. Retrying…");
        state.toldBusy = true;
      }
      if (connection === "open") state.toldBusy = false;
    },
    onRefused: (code, reason) => {
      const elsewhere = code === 4409;  // this player's game was opened in another tab or device
      if (code === 4401) store.forget("token");
      if (!elsewhere) store.forget("session_id", "participant_id", "rejoin_code");
      $("refused-reason").textContent = elsewhere
        ? "This game is open in another tab or on another device."
        : code === 4401
          ? "Your session expired. Join again with the PIN."
          : code === 4404
            ? "The host deleted this game."
            : /removed/.test(reason ?? "")
            ? "The host removed you from this game."
            : `You're not a player in this game${reason ? ` (${reason})` : ""}.`;
      $("play-here").hidden = !elsewhere;
      showScreen("refused");
    },
  });
}

const receive = roomMessages({
  snapshot(message) {
    // A snapshot is the room as it is now: after a reconnect, a reload or on a second device.
    if (message.you) {
      updateMe(message.you);
      if (message.you.answer) store.update({ answer: message.you.answer });
    }
    // Its board never holds the points of an open question, so it shows at once (the one of the last close).
    if (message.session.status === "question_closed") {
      state.trailFrom = -1;
      $("result-moved").textContent = "";
    }
    applyBoard(message.leaderboard, { force: true, show: true });
    // Still on a question the room closed meanwhile (the network was away): its result comes first.
    const previous = message.you?.previous;
    const missed = previous && state.status === "question_open" && state.question?.id === previous.question_id
      ? state.question : null;
    applySession(message.session, message.you);
    if (missed && state.status === "question_open") showMissedResult(missed, previous);
  },
  leaderboard: (message) => applyBoard(message),
  question_opened(message) {
    state.questionCount = message.question_count ?? state.questionCount;
    openQuestion({ ...message, id: message.question_id });
  },
  question_closed(message) {
    // One frame: this player's result (with the answer the server recorded, as a snapshot says) and the
    // board after the close, which then tells whom the player trails.
    if (message.you?.answer) store.update({ answer: message.you.answer });
    closeQuestion(message);
    applyBoard(message.leaderboard);
  },
  question_extended(message) {
    if (state.status !== "question_open" || state.question?.id !== message.question_id) return;
    if (followDeadline(message.deadline)) announce(`${message.added_s} more seconds.`);
  },
  session_ended: (message) => finish(message.podium),
});

function showRejoinCode(code) {
  const shown = code ? `${code.slice(0, 3)}-${code.slice(3)}` : "";
  $("rejoin-code-shown").textContent = shown;
  $("rejoin-note").hidden = !code;
  $("player-rejoin").textContent = shown;
  $("player-rejoin-wrap").hidden = !code;
}

/** The answer the server recorded for question `id` (from its receipt or a snapshot), or null. */
function recordedAnswer(id) {
  const answer = store.get().answer;
  return answer?.question_id === id ? answer : null;
}

/** Show the session; `you` (a snapshot's) says what the server holds of this player's answer. */
function applySession(session, you = null) {
  state.questionCount = session.question_count;
  $("player-count").textContent = String(session.player_count);
  const q = session.current_question;
  if (session.status === "lobby") {
    state.status = "lobby";
    showScreen("lobby");
  } else if (session.status === "question_open" && q) {
    openQuestion(q);
  } else if (session.status === "question_closed" && q) {
    const saved = store.get();
    const result = saved.result?.question_id === q.id ? saved.result : null;
    const answer = recordedAnswer(q.id);
    const known = you && "answer" in you;  // the server's word: answered (with the points) or not
    const mine = known ? { ...state.you, correct: answer ? answer.choice === q.correct_choice : false,
      points: answer?.points ?? 0 } : null;
    showResult(q, q.correct_choice, mine ?? result ?? {
      ...state.you, correct: answer === null ? null : answer.choice === q.correct_choice, points: null,
    });
  } else if (session.status === "ended") {
    if (q) state.lastPosition = q.position;
    finish(state.heldBoard?.entries ?? null);
  }
}

function updateMe(you) {
  state.you = { ...state.you, ...you };
  $("player-score").textContent = formatScore(state.you.score);
  // Nobody has earned a place on 0 points.
  const ranked = Boolean(state.you.rank) && state.you.score > 0;
  $("player-rank").textContent = ranked ? ordinal(state.you.rank) : "–";
  $("player-rank-wrap").hidden = !ranked;
}

function applyBoard(board, { force = false, show = false } = {}) {
  if (!board || (!force && board.version <= state.boardVersion)) return;
  state.boardVersion = board.version;
  // Who joined reaches players as the board's count, at most once per interval (names go to the host).
  $("player-count").textContent = String(board.player_count ?? board.total_players);
  state.heldBoard = board;
  if (show || state.status !== "question_open") renderBoard(board);
  if (state.status === "question_closed" && board.version > state.trailFrom) showTrailing(board);
}

function renderBoard(board) {
  renderLeaderboard($("leaderboard"), board.entries, { highlight: state.participantId });
  $("leaderboard-empty").hidden = board.entries.length > 0;
  $("total-players").textContent = board.total_players ? `of ${board.total_players}` : "";
  const mine = board.entries.find((e) => e.participant_id === state.participantId);
  if (mine) updateMe({ score: mine.score, rank: mine.rank });
}

function openQuestion(q) {
  if (state.status === "question_open" && state.question?.id === q.id) {  // already showing it
    followDeadline(q.deadline);  // the host gave it more time while this device was away
    const answer = recordedAnswer(q.id);  // answered on another device, as a snapshot tells
    if (answer && state.choice === null && !state.gettingReady) {
      state.choice = answer.choice;
      lockAnswers("Answer locked in! Waiting for the others…");
    }
    return;
  }
  state.status = "question_open";
  state.question = q;
  $("missed-result").hidden = true;
  state.timeUp = false;
  state.choice = recordedAnswer(q.id)?.choice ?? null;

  state.lastPosition = q.position;
  $("question-position").textContent = `Question ${q.position + 1}${state.questionCount ? ` of ${state.questionCount}` : ""}`;
  $("question-points").textContent = pointsLabel(q);
  $("question-text").textContent = q.text;
  const image = $("question-image");
  image.hidden = !q.image_url;
  if (q.image_url) { image.src = q.image_url; image.alt = q.image_alt || "Picture for this question"; }
  const answers = $("answers");
  answers.dataset.count = String(q.choices.length);
  answers.replaceChildren(...q.choices.map((text, i) => h("button", {
    type: "button",
    class: `answer c${i}`,
    dataset: { testid: `answer-${i}`, choice: String(i) },
    "aria-keyshortcuts": String(i + 1),
    onclick: () => submitAnswer(i),
  }, h("span", { class: "shape", "aria-hidden": "true" }, CHOICE_SHAPES[i]),
  h("span", { class: "answer-text" }, text),
  h("kbd", { class: "key", "aria-hidden": "true" }, String(i + 1)))));
  showScreen("question");
  announce(`Question ${q.position + 1}: ${q.text}`);
  state.stopCountdown();
  // The question shows first; its answers open at opened_at (PostgreSQL's clock, learnt from messages).
  const wait = q.opened_at ? serverClock.remainingMs(q.opened_at) : 0;
  if (wait > 0 && state.choice === null) {
    state.gettingReady = true;
    answers.hidden = true;
    $("answer-status").textContent = "";
    $("get-ready").hidden = false;
    // The answering time has not started: the timer shows all of it, calm, and the bar is full.
    $("countdown").textContent = String(q.time_limit_s);
    $("countdown").closest("[data-urgent]").dataset.urgent = "false";
    document.querySelector("[data-screen=question] .timebar-fill").style.transform = "scaleX(1)";
    state.stopCountdown = startCountdown({
      deadline: q.opened_at, totalS: wait / 1000, numberEl: $("get-ready-count"),
      onEnd: () => { if (state.question === q) openAnswers(q); },
    });
    return;
  }
  openAnswers(q);
}

function openAnswers(q) {
  state.gettingReady = false;
  $("get-ready").hidden = true;
  const answers = $("answers");
  answers.hidden = false;
  if (state.choice !== null) lockAnswers("Answer locked in! Waiting for the others…");
  else {
    $("answer-status").textContent = "";
    answers.querySelector("button")?.focus();
  }
  startAnswerTimer(q);
}

/** The open question's deadline moved later (the host added time): the timer follows it, and answers
 * the timer had closed open again. Returns whether it moved. */
function followDeadline(deadline) {
  const q = state.question;
  if (!deadline || !q || Date.parse(deadline) <= Date.parse(q.deadline)) return false;  // seen already
  q.deadline = deadline;
  if (state.gettingReady) return true;  // the answers open on the new deadline's timer
  if (state.timeUp && serverClock.remainingMs(deadline) > 0) {
    state.timeUp = false;
    if (state.choice === null) {
      for (const button of $("answers").querySelectorAll("button")) button.disabled = false;
      $("answer-status").textContent = "";
    }
  }
  startAnswerTimer(q);
  return true;
}

function startAnswerTimer(q) {
  state.stopCountdown();
  state.stopCountdown = startCountdown({
    deadline: q.deadline,
    // The whole answering time, more time included, fills the bar.
    totalS: Math.max(q.time_limit_s, (Date.parse(q.deadline) - Date.parse(q.opened_at ?? q.deadline)) / 1000),
    numberEl: $("countdown"),
    barEl: document.querySelector("[data-screen=question] .timebar-fill"),
    announceAt: [10, 5],
    onEnd: () => {
      state.timeUp = true;
      if (state.choice === null) lockAnswers("Time's up!");
      else if (state.attempt?.question_id === q.id) lockAnswers("Time's up! Checking whether your answer arrived…");
    },
  });
}

function pointsLabel(q) {
  if (q.kind === "poll") return "Poll";
  return q.points === 0 ? "No points" : q.points === 2000 ? "Double points" : `${formatScore(q.points)} pts`;
}

function lockAnswers(status, shown = state.choice) {
  const answers = $("answers");
  const hadFocus = answers.contains(document.activeElement);
  for (const button of answers.querySelectorAll("button")) {
    button.disabled = true;
    button.classList.toggle("chosen", Number(button.dataset.choice) === shown);
  }
  $("answer-status").textContent = status;
  if (hadFocus) $("answer-status").focus();  // a disabled button drops the focus to the page's start
}

document.addEventListener("keydown", (event) => {
  if (state.status !== "question_open" || event.altKey || event.ctrlKey || event.metaKey) return;
  if (event.target instanceof HTMLInputElement || event.target instanceof HTMLTextAreaElement) return;
  const n = Number(event.key);
  if (Number.isInteger(n) && n >= 1 && n <= (state.question?.choices.length ?? 0)) {
    event.preventDefault();
    submitAnswer(n - 1);
  }
});

// ---- start ---------------------------------------------------------------------------------

const saved = store.get();
if (saved.token && saved.session_id && saved.participant_id) enterRoom(saved);
else showJoin();
