// The player's page: join with a PIN and a nickname, then play in the room until the podium.
import {
  ApiError, api, storedRecord, connectRoom, roomMessages, startCountdown, h, announce, showConnection,
  CHOICE_SHAPES, ordinal, formatScore, renderDistribution, renderLeaderboard, renderPodium, showScreen, serverClock,
} from "./common.js";
import { joinScreen } from "./player_join.js";

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

// ---- the room ------------------------------------------------------------------------------

async function enterRoom(saved) {
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
  question_closed: (message) => closeQuestion(message),
  question_extended(message) {
    if (state.status !== "question_open" || state.question?.id !== message.question_id) return;
    if (followDeadline(message.deadline)) announce(`${message.added_s} more seconds.`);
  },
  player_joined(message) {
    $("player-count").textContent = String(message.player_count);
  },
  player_removed(message) {
    $("player-count").textContent = String(message.player_count);
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

/** A line on the question screen: how the question that closed while this device was away went. */
function showMissedResult(q, previous) {
  const late = !previous.answered && state.attempt?.question_id === q.id;
  const verdict = late ? "Too late: your answer arrived after it closed."
    : q.kind === "poll" ? (previous.answered ? "Thanks for voting!" : "No vote.")
      : !previous.answered ? "No answer."
        : previous.correct ? `Correct! +${formatScore(previous.points)} points.` : "Wrong.";
  $("missed-result").textContent = `Question ${previous.position + 1}: ${verdict}`;
  $("missed-result").hidden = false;
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
  state.heldBoard = board;
  if (show || state.status !== "question_open") renderBoard(board);
  if (state.status === "question_closed" && board.version > state.trailFrom) showTrailing(board);
}

/** On the result: how far behind the player just above this one is (when both are on the board). */
function showTrailing(board) {
  const mine = board.entries.find((e) => e.participant_id === state.participantId);
  const ahead = mine && mine.score > 0 ? board.entries.find((e) => e.rank === mine.rank - 1) : null;
  $("result-behind").textContent = ahead
    ? `${formatScore(ahead.score - mine.score)} points behind ${ahead.nickname}` : "";
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

// Answers are safe to send again: the server gives a recorded answer's original receipt. So when
// the network drops or the server cannot tell whether it recorded the answer (504), the same answer
// is sent again, a few times, while the question is open.
const ANSWER_RETRIES = 5;
// How long an answer sent over the room socket waits for its acknowledgement before going by HTTP.
const SOCKET_ANSWER_WAIT_MS = 4000;

/** Deliver an answer over the room's socket when it is open (acknowledged after the commit), else,
 * or when the socket cannot tell, over HTTP: both are safe to repeat. Rejects like `api`. */
async function deliverAnswer(q, choice, token) {
  const body = { question_id: q.id, choice };
  const reply = await state.room?.request({ type: "answer", ...body }, SOCKET_ANSWER_WAIT_MS);
  if (reply?.type === "answer_recorded") return reply;
  if (reply?.type === "error" && !["unavailable", "outcome_unknown", "unknown_message"].includes(reply.code)) {
    const { type, code, message, ref, ...extra } = reply;
    throw new ApiError(400, code, message, extra);
  }
  return api(`/sessions/${state.sessionId}/answers`, { method: "POST", body, token });
}

async function submitAnswer(choice) {
  const q = state.question;
  if (state.status !== "question_open" || state.choice !== null || state.timeUp || state.gettingReady || !q) return;
  state.choice = choice;
  state.attempt = { question_id: q.id, choice };
  lockAnswers("Sending…");
  const { token } = store.get();
  const showing = () => state.question === q && state.status === "question_open";
  for (let attempt = 0; ; attempt += 1) {
    try {
      await deliverAnswer(q, choice, token);
      answerRecorded(q, choice);
      return;
    } catch (err) {
      if (err.code === "already_answered") {  // an earlier answer counts: show the one recorded
        answerRecorded(q, err.extra.answer?.choice ?? choice);
        return;
      }
      // Closed, or the game moved on while the answer was on its way: it was not counted.
      if (err.code === "question_closed" || (err.code === "invalid_question" && !showing())) {
        answerTooLate(q, choice);
        return;
      }
      if (err.code === "not_open_yet" && attempt < ANSWER_RETRIES) {  // this clock ran ahead of the server's
        await new Promise((resolve) => setTimeout(resolve, 300));
        continue;
      }
      const uncertain = err.status === 0 || err.status === 429 || err.status >= 500;
      if (uncertain && attempt < ANSWER_RETRIES && showing()) {
        if (!state.timeUp) $("answer-status").textContent = "Connection trouble: sending your answer again…";
        await new Promise((resolve) => setTimeout(resolve, 400 * 2 ** attempt));
        continue;
      }
      if (!showing()) return;  // the page shows another screen by now: the close's result tells
      state.choice = null;
      for (const button of $("answers").querySelectorAll("button")) {
        button.disabled = state.timeUp;
        button.classList.remove("chosen");
      }
      $("answer-status").textContent = `Your answer was not sent: ${err.message}`;
      $("answers").querySelectorAll("button")[choice]?.focus();
      return;
    }
  }
}

function answerRecorded(q, choice) {
  store.update({ answer: { question_id: q.id, choice } });
  if (state.attempt?.question_id === q.id) state.attempt = null;
  if (state.status === "question_closed" && state.question?.id === q.id) {
    showResult(state.question, state.closedWith.correctChoice, state.closedWith.you, state.closedWith.counts);
  }
  if (state.question !== q || state.status !== "question_open") return;
  state.choice = choice;
  lockAnswers("Answer locked in! Waiting for the others…");
}

/** The answer reached the server after its question had closed: not counted, and said so. */
function answerTooLate(q, choice) {
  state.attempt = { question_id: q.id, choice };
  if (state.question === q && state.status === "question_open") {
    state.choice = null;
    lockAnswers("Too late: the question has closed.", choice);
  } else if (state.status === "question_closed" && state.question?.id === q.id) {
    showResult(state.question, state.closedWith.correctChoice, state.closedWith.you, state.closedWith.counts);
  }
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

function closeQuestion(message) {
  const q = state.question?.id === message.question_id ? state.question : null;
  const you = message.you ?? null;
  // The board that comes after this close tells whom the player trails (boards until then are older).
  state.trailFrom = state.boardVersion;
  $("result-behind").textContent = "";
  const before = state.you;
  const ranked = (standing) => Boolean(standing?.rank) && standing.score > 0;
  const moved = you && ranked(before) && ranked(you) ? before.rank - you.rank : 0;
  $("result-moved").textContent = moved > 0 ? `You moved up ${moved} place${moved > 1 ? "s" : ""}!` : "";
  if (you) {
    updateMe({ score: you.score, rank: you.rank, streak: you.streak });
    store.update({ result: { question_id: message.question_id, ...you } });
  }
  showResult(q ?? { id: message.question_id, choices: [] }, message.correct_choice,
    you ?? { correct: null, points: null, ...state.you }, message.choice_counts);
}

function showResult(q, correctChoice, you, counts = null) {
  state.status = "question_closed";
  state.question = q;
  if (q.position !== undefined) state.lastPosition = q.position;
  state.stopCountdown();
  if (state.heldBoard) renderBoard(state.heldBoard);
  state.closedWith = { correctChoice, you, counts };
  const verdict = $("result-verdict");
  const result = $("result");
  const recorded = recordedAnswer(q.id);
  // Tapped, but never recorded: the answer arrived after the close (or not at all). Never "Wrong".
  const late = !recorded && you.correct !== true && state.attempt?.question_id === q.id ? state.attempt : null;
  const picked = recorded?.choice ?? late?.choice ?? null;
  if (q.kind === "poll") {
    verdict.textContent = late ? "Too late" : picked === null ? "Poll closed" : "Thanks for voting!";
    result.dataset.verdict = late ? "late" : "poll";
  } else if (you.correct === true) {
    verdict.textContent = "Correct!";
    result.dataset.verdict = "correct";
  } else if (late) {
    verdict.textContent = "Too late";
    result.dataset.verdict = "late";
  } else if (you.correct === false) {
    verdict.textContent = recorded ? "Wrong" : "No answer";
    result.dataset.verdict = "wrong";
  } else {
    verdict.textContent = "Question closed";
    result.dataset.verdict = "unknown";
  }
  $("result-points").textContent = late ? "Your answer arrived after the question closed: it did not count."
    : you.points === null || you.points === undefined || q.kind === "poll" ? "" : `+${formatScore(you.points)} points`;
  const correctText = correctChoice === null || correctChoice === undefined ? undefined : q.choices?.[correctChoice];
  $("result-correct").textContent = correctText === undefined ? "" : `Correct answer: ${correctText}`;
  const pickedText = picked === null || picked === undefined ? undefined : q.choices?.[picked];
  $("result-choice").textContent = pickedText === undefined ? "" : `You picked: ${pickedText}`;
  renderDistribution($("result-distribution"), q, counts ?? q.choice_counts, correctChoice, picked);
  const last = (q.position ?? -1) + 1 >= state.questionCount && state.questionCount > 0;
  $("result-next").textContent = last ? "That was the last question. The host will show the podium."
    : "Next question coming up…";
  $("result-score").textContent = formatScore(you.score ?? state.you?.score ?? 0);
  const score = you.score ?? state.you?.score ?? 0;
  const ranked = Boolean(you.rank) && score > 0;
  $("result-rank").textContent = ranked ? ordinal(you.rank) : "–";
  const streak = you.streak ?? state.you?.streak ?? 0;
  $("result-streak").textContent = streak > 1 ? `${streak} 🔥` : String(streak);
  showScreen("result");
  const points = $("result-points").textContent;
  announce([verdict.textContent, points && !points.endsWith(".") ? `${points}.` : points,
    ranked ? `You are ${ordinal(you.rank)}.` : "", $("result-moved").textContent].filter(Boolean).join(" "));
}

async function finish(podium) {
  state.status = "ended";
  state.stopCountdown();
  if (state.heldBoard) renderBoard(state.heldBoard);
  const entries = podium ?? state.heldBoard?.entries ?? [];
  renderPodium($("podium"), entries.slice(0, 5), { highlight: state.participantId, scoredOnly: true,
    empty: "Nobody scored any points in this game." });
  showScreen("final");
  if (state.lastPosition === undefined && !(state.heldBoard?.entries ?? []).some((e) => e.score > 0)) {
    // Ended in the lobby: no question was asked, so there are no places to give.
    $("final-place").textContent = "The game ended before it started.";
    announce("The host ended the game before it started.");
    return;
  }
  const { token } = store.get();
  // My exact final place, even outside the top 10; fall back to what the room last told us.
  try {
    const mine = await api(`/sessions/${state.sessionId}/leaderboard/${state.participantId}?around=0`, { token });
    updateMe({ rank: mine.rank, score: mine.score });
  } catch { /* keep the last known rank */ }
  const you = state.you ?? {};
  const total = state.heldBoard?.total_players;
  $("final-place").textContent = you.rank && you.score > 0  // nobody has a place on 0 points
    ? `You finished ${ordinal(you.rank)}${total ? ` of ${total}` : ""} with ${formatScore(you.score)} points.`
    : `You scored ${formatScore(you.score)} points.`;
  announce(`Game over. ${$("final-place").textContent}`);
}

// ---- start ---------------------------------------------------------------------------------

const saved = store.get();
if (saved.token && saved.session_id && saved.participant_id) enterRoom(saved);
else showJoin();
