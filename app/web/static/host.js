// The host's page: sign in, write a quiz, open a room, run it question by question, show the podium.
import {
  api, storedRecord, connectRoom, roomMessages, startCountdown, h, announce, showConnection,
  CHOICE_SHAPES, formatScore, renderLeaderboard, renderPodium, showScreen,
} from "./common.js";

// token, username, session_id, draft (the quiz being written): a reload resumes where the host was.
const store = storedRecord("livequiz.host");
const $ = (testid, root = document) => root.querySelector(`[data-testid="${testid}"]`);

const MAX_CHOICES = 6;
const MIN_CHOICES = 2;
const blankQuestion = () => ({ text: "", choices: ["", "", "", ""], correct_choice: 0, time_limit_s: 20, points: 1000 });

const state = {
  sessionId: null,
  status: null,
  question: null, // the current question: id, position, text, choices, deadline, time_limit_s, points
  questionCount: 0,
  boardVersion: -1,
  board: null,
  heldBoard: null, // shown when the question closes, so the projected board does not give answers away
  arrivals: new Set(),
  room: null,
  busy: false,
  stopCountdown: () => {},
};

// ---- signing in ----------------------------------------------------------------------------

function showAuth(message = "") {
  state.room?.close();
  showScreen("auth");
  $("host-bar").hidden = true;
  showConnection("closed");
  $("auth-error").textContent = message;
  $("host-username").focus();
}

$("auth-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const mode = event.submitter?.value ?? "login";
  const username = $("host-username").value.trim();
  const password = $("host-password").value;
  const error = $("auth-error");
  if (!/^[A-Za-z0-9_.-]{3,32}$/.test(username)) {
    error.textContent = "Usernames are 3–32 letters, digits, _ . or -.";
    $("host-username").focus();
    return;
  }
  if (password.length < 8) {
    error.textContent = "Passwords have at least 8 characters.";
    $("host-password").focus();
    return;
  }
  error.textContent = "";
  for (const button of event.target.querySelectorAll("button")) button.disabled = true;
  try {
    if (mode === "register") {
      await api("/auth/register", { method: "POST", body: { username, password } });
    }
    const { access_token: token } = await api("/auth/login", { method: "POST", body: { username, password } });
    const saved = store.update({ token, username });
    $("host-password").value = "";
    start(saved);
  } catch (err) {
    const messages = {
      username_taken: "That username is taken. Sign in instead, or pick another.",
      invalid_credentials: "Wrong username or password.",
    };
    error.textContent = messages[err.code] ?? err.message;
  } finally {
    for (const button of event.target.querySelectorAll("button")) button.disabled = false;
  }
});

$("sign-out").addEventListener("click", () => {
  state.room?.close();
  state.stopCountdown();
  store.clear();
  showAuth();
});

// ---- writing a quiz ------------------------------------------------------------------------

const list = $("question-list");
let cardIds = 0;

function questionCard(q, index, total) {
  const id = `q${++cardIds}`;
  const choiceRows = q.choices.map((text, i) => h("li", { class: `choice-row c${i}` },
    h("span", { class: "choice-shape", "aria-hidden": "true" }, CHOICE_SHAPES[i]),
    h("input", {
      type: "radio", name: `${id}-correct`, value: String(i), checked: q.correct_choice === i,
      id: `${id}-correct-${i}`, dataset: { testid: `q-correct-${i}` }, "aria-label": `Choice ${i + 1} is correct`,
    }),
    h("input", {
      type: "text", value: text, maxlength: "200", id: `${id}-choice-${i}`, dataset: { testid: `q-choice-${i}` },
      "aria-label": `Choice ${i + 1}`, placeholder: `Choice ${i + 1}`, class: "choice-input",
    }),
    h("button", {
      type: "button", class: "btn btn-ghost btn-icon", "aria-label": `Remove choice ${i + 1}`,
      dataset: { testid: `q-remove-choice-${i}` }, disabled: q.choices.length <= MIN_CHOICES,
      onclick: () => edit((quiz) => {
        const target = quiz.questions[index];
        target.choices.splice(i, 1);
        if (target.correct_choice === i) target.correct_choice = 0;
        else if (target.correct_choice > i) target.correct_choice -= 1;
      }, `#${id}-choice-${Math.max(0, i - 1)}`),
    }, "×")));
  return h("li", { class: "card q-card", dataset: { testid: "question-card" } },
    h("fieldset", {},
      h("legend", {}, `Question ${index + 1}`),
      h("label", { for: `${id}-text` }, "Question"),
      h("textarea", { id: `${id}-text`, rows: "2", maxlength: "500", dataset: { testid: "q-text" }, value: q.text,
        placeholder: "What is the capital of France?" }),
      h("fieldset", { class: "choices" },
        h("legend", {}, "Choices ", h("span", { class: "hint" }, "(select the correct one)")),
        h("ol", { class: "choice-list" }, choiceRows),
        h("button", {
          type: "button", class: "btn btn-ghost btn-small", dataset: { testid: "q-add-choice" },
          disabled: q.choices.length >= MAX_CHOICES,
          onclick: () => edit((quiz) => { quiz.questions[index].choices.push(""); },
            `#${id}-choice-${q.choices.length}`),
        }, "+ Add choice")),
      h("div", { class: "row q-settings" },
        h("div", {},
          h("label", { for: `${id}-time` }, "Time limit (seconds)"),
          h("input", { id: `${id}-time`, type: "number", min: "5", max: "240", step: "1", value: String(q.time_limit_s),
            dataset: { testid: "q-time" } })),
        h("div", {},
          h("label", { for: `${id}-points` }, "Points"),
          h("select", { id: `${id}-points`, dataset: { testid: "q-points" } },
            [[1000, "Standard (1000)"], [2000, "Double (2000)"], [0, "No points (0)"]].map(([value, label]) =>
              h("option", { value: String(value), selected: q.points === value }, label)))),
        h("button", {
          type: "button", class: "btn btn-ghost btn-small q-remove", dataset: { testid: "remove-question" },
          disabled: total <= 1, "aria-label": `Remove question ${index + 1}`,
          onclick: () => edit((quiz) => { quiz.questions.splice(index, 1); },
            `[data-testid=question-card]:nth-child(${Math.max(1, index)}) textarea`),
        }, "Remove question"))));
}

function renderEditor(quiz) {
  $("quiz-title").value = quiz.title ?? "";
  const questions = quiz.questions?.length ? quiz.questions : [blankQuestion()];
  list.replaceChildren(...questions.map((q, i) => questionCard(q, i, questions.length)));
}

function collectQuiz() {
  return {
    title: $("quiz-title").value.trim(),
    questions: [...list.children].map((card) => ({
      text: $("q-text", card).value.trim(),
      choices: [...card.querySelectorAll(".choice-input")].map((input) => input.value.trim()),
      correct_choice: Number(card.querySelector("input[type=radio]:checked")?.value ?? -1),
      time_limit_s: Number($("q-time", card).value),
      points: Number($("q-points", card).value),
    })),
  };
}

/** Change the quiz through `change(quiz)`, redraw the form, and move focus to `focusSelector`. */
function edit(change, focusSelector) {
  const quiz = collectQuiz();
  change(quiz);
  renderEditor(quiz);
  saveDraft();
  if (focusSelector) list.querySelector(focusSelector)?.focus();
}

function saveDraft() { store.update({ draft: collectQuiz() }); }

$("quiz-form").addEventListener("input", saveDraft);
$("add-question").addEventListener("click", () => {
  edit((quiz) => { quiz.questions.push(blankQuestion()); }, "[data-testid=question-card]:last-child textarea");
});

$("load-json").addEventListener("click", () => {
  const error = $("quiz-error");
  try {
    const quiz = JSON.parse($("quiz-json").value);
    if (!quiz || !Array.isArray(quiz.questions) || !quiz.questions.length) throw new Error("it needs a \"questions\" list");
    renderEditor({
      title: String(quiz.title ?? ""),
      questions: quiz.questions.map((q) => ({
        text: String(q.text ?? ""),
        choices: (Array.isArray(q.choices) ? q.choices : ["", ""]).slice(0, MAX_CHOICES).map(String),
        correct_choice: Number.isInteger(q.correct_choice) ? q.correct_choice : 0,
        time_limit_s: Number(q.time_limit_s ?? 20),
        points: [0, 1000, 2000].includes(q.points) ? q.points : 1000,
      })),
    });
    saveDraft();
    error.textContent = "";
    announce(`Loaded ${quiz.questions.length} questions into the form.`);
    $("quiz-title").focus();
  } catch (err) {
    error.textContent = `That JSON could not be loaded: ${err.message}`;
  }
});

/** The first problem with the quiz, with the field to focus, or null. */
function findProblem(quiz) {
  if (!quiz.title) return ["Give the quiz a title.", $("quiz-title")];
  for (const [i, q] of quiz.questions.entries()) {
    const card = list.children[i];
    if (!q.text) return [`Question ${i + 1} has no text.`, $("q-text", card)];
    const empty = q.choices.findIndex((c) => !c);
    if (empty >= 0) return [`Question ${i + 1}: choice ${empty + 1} is empty.`, $(`q-choice-${empty}`, card)];
    if (q.correct_choice < 0) return [`Question ${i + 1}: select the correct choice.`, $("q-correct-0", card)];
    if (!(q.time_limit_s >= 5 && q.time_limit_s <= 240)) {
      return [`Question ${i + 1}: the time limit is 5 to 240 seconds.`, $("q-time", card)];
    }
  }
  return null;
}

$("quiz-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const quiz = collectQuiz();
  const error = $("quiz-error");
  const problem = findProblem(quiz);
  if (problem) {
    error.textContent = problem[0];
    problem[1]?.focus();
    return;
  }
  error.textContent = "";
  const button = $("create-session");
  button.disabled = true;
  try {
    const { token } = store.get();
    const created = await api("/quizzes", { method: "POST", body: quiz, token });
    const session = await api(`/quizzes/${created.id}/sessions`, { method: "POST", token });
    enterRoom(store.update({ session_id: session.id }));
  } catch (err) {
    if (err.status === 401) { store.forget("token"); showAuth("Your sign-in expired. Sign in again."); return; }
    error.textContent = err.message;
  } finally {
    button.disabled = false;
  }
});

function showEditor(message = "") {
  state.room?.close();
  state.room = null;
  state.stopCountdown();
  showConnection("closed");
  renderEditor(store.get().draft ?? { title: "", questions: [blankQuestion()] });
  showScreen("editor");
  $("small-code").hidden = true;
  $("quiz-error").textContent = message;
  $("quiz-title").focus();
}

// ---- running the room ----------------------------------------------------------------------

async function enterRoom(saved) {
  Object.assign(state, { sessionId: saved.session_id, status: null, question: null, boardVersion: -1,
    board: null, heldBoard: null, arrivals: new Set() });
  $("arrivals").replaceChildren();
  $("leaderboard").replaceChildren();
  $("leaderboard-empty").hidden = false;
  $("total-players").textContent = "";
  showScreen("room");
  try {
    applySession(await api(`/sessions/${saved.session_id}`, { token: saved.token }));
  } catch (err) {
    if (err.status === 401) { store.forget("token", "session_id"); showAuth("Your sign-in expired. Sign in again."); return; }
    if (err.status === 404) { store.forget("session_id"); showEditor("That room no longer exists."); return; }
  }
  state.room?.close();
  state.room = connectRoom({
    sessionId: saved.session_id,
    token: saved.token,
    onMessage: receive,
    onState: showConnection,
    onRefused: (code, reason) => {
      if (code === 4409) {  // the room was opened in another tab or on another device
        showEditor("This room is open in another tab or on another device. Reload this page to host it here.");
        return;
      }
      store.forget("session_id", ...(code === 4401 ? ["token"] : []));
      if (code === 4401) showAuth("Your sign-in expired. Sign in again.");
      else showEditor(`You are not the host of that room${reason ? ` (${reason})` : ""}.`);
    },
  });
}

const receive = roomMessages({
  snapshot(message) {
    applyBoard(message.leaderboard, { force: true });
    for (const entry of message.leaderboard?.entries ?? []) addArrival(entry.nickname, { quiet: true });
    applySession(message.session);
  },
  leaderboard: (message) => applyBoard(message),
  question_opened(message) {
    state.questionCount = message.question_count ?? state.questionCount;
    showQuestion({ ...message, id: message.question_id });
  },
  question_closed: (message) => showClosed(message),
  player_joined(message) {
    setPlayerCount(message.player_count);
    addArrival(message.nickname);
  },
  session_ended: (message) => showFinal(message.podium),
});

function applySession(session) {
  state.questionCount = session.question_count;
  setPlayerCount(session.player_count);
  const code = session.join_code;
  $("join-code").textContent = code;
  $("small-code").querySelector("strong").textContent = code;
  $("join-url").textContent = `${location.host}`;
  $("join-banner").title = `${location.origin}/?code=${code}`;
  $("host-bar").hidden = false;
  $("host-user").textContent = store.get().username ?? "";
  const q = session.current_question;
  if (session.status === "lobby") {
    state.status = "lobby";
    $("host-question").hidden = true;
    $("host-final").hidden = true;
    $("join-banner").hidden = false;
    $("small-code").hidden = true;
    updateControls();
  } else if (session.status === "question_open" && q) {
    showQuestion(q);
  } else if (session.status === "question_closed" && q) {
    showQuestion(q, { closed: true });
    showClosed({ question_id: q.id, correct_choice: q.correct_choice, choice_counts: null });
  } else if (session.status === "ended") {
    showFinal(null);
  }
}

function setPlayerCount(count) {
  $("player-count").textContent = String(count);
  $("player-count-label").textContent = count === 1 ? "player" : "players";
}

function addArrival(nickname, { quiet = false } = {}) {
  if (!nickname || state.arrivals.has(nickname)) return;
  state.arrivals.add(nickname);
  const arrivals = $("arrivals");
  arrivals.append(h("li", { class: "arrival", dataset: { testid: "arrival" } }, nickname));
  while (arrivals.children.length > 40) arrivals.firstElementChild.remove();
  if (!quiet) announce(`${nickname} joined`);
}

function applyBoard(board, { force = false } = {}) {
  if (!board || (!force && board.version <= state.boardVersion)) return;
  state.boardVersion = board.version;
  state.heldBoard = board;
  if (state.status !== "question_open") renderBoard(board);
}

function renderBoard(board) {
  state.board = board;
  renderLeaderboard($("leaderboard"), board.entries);
  $("leaderboard-empty").hidden = board.entries.length > 0;
  $("total-players").textContent = board.total_players ? `${board.total_players} playing` : "";
}

function showQuestion(q, { closed = false } = {}) {
  if (!closed && state.status === "question_open" && state.question?.id === q.id) return;
  state.status = closed ? "question_closed" : "question_open";
  state.question = q;
  $("join-banner").hidden = true;
  $("host-final").hidden = true;
  $("host-question").hidden = false;
  $("small-code").hidden = false;
  $("question-position").textContent = `Question ${q.position + 1} of ${state.questionCount}`;
  $("question-points").textContent = q.points === 0 ? "No points" : q.points === 2000 ? "Double points" : `${formatScore(q.points)} pts`;
  $("question-status").textContent = closed ? "Closed" : "Open";
  $("host-question").dataset.closed = String(closed);
  $("question-text").textContent = q.text;
  $("choice-results").replaceChildren(...q.choices.map((text, i) => h("li", {
    class: `choice-result c${i}`, dataset: { testid: `choice-${i}` },
  },
  h("span", { class: "shape", "aria-hidden": "true" }, CHOICE_SHAPES[i]),
  h("span", { class: "choice-text" }, text),
  h("span", { class: "choice-count", dataset: { testid: `choice-count-${i}` } }),
  h("span", { class: "choice-bar", "aria-hidden": "true" }))));
  state.stopCountdown();
  if (!closed) {
    announce(`Question ${q.position + 1} is open: ${q.text}`);
    state.stopCountdown = startCountdown({
      deadline: q.deadline,
      totalS: q.time_limit_s,
      numberEl: $("countdown"),
      barEl: document.querySelector("[data-testid=host-question] .timebar-fill"),
      onEnd: () => { $("question-status").textContent = "Time's up"; },
    });
  }
  updateControls();
}

function showClosed(message) {
  state.stopCountdown();
  state.status = "question_closed";
  $("question-status").textContent = "Closed";
  $("host-question").dataset.closed = "true";
  const bar = document.querySelector("[data-testid=host-question] .timebar-fill");
  if (bar) bar.style.transform = "scaleX(0)";
  const counts = message.choice_counts;
  const most = counts ? Math.max(1, ...counts) : 1;
  for (const [i, row] of [...$("choice-results").children].entries()) {
    const correct = i === message.correct_choice;
    row.classList.toggle("correct", correct);
    row.classList.toggle("wrong", !correct);
    if (correct) row.setAttribute("aria-label", `${row.querySelector(".choice-text").textContent} (correct)`);
    if (counts) {
      row.querySelector(".choice-count").textContent = String(counts[i] ?? 0);
      row.style.setProperty("--share", String((counts[i] ?? 0) / most));
    }
  }
  if (state.heldBoard) renderBoard(state.heldBoard);
  const right = state.question?.choices?.[message.correct_choice];
  announce(`Question closed.${right ? ` The answer was ${right}.` : ""}`);
  updateControls();
}

async function showFinal(podium) {
  state.status = "ended";
  state.stopCountdown();
  if (state.heldBoard) renderBoard(state.heldBoard);
  $("host-question").hidden = true;
  $("join-banner").hidden = true;
  $("small-code").hidden = true;
  $("host-final").hidden = false;
  updateControls();
  let entries = podium;
  if (!entries) {
    try {
      entries = (await api(`/sessions/${state.sessionId}/leaderboard?limit=5`, { token: store.get().token })).entries;
    } catch {
      entries = state.board?.entries ?? [];
    }
  }
  renderPodium($("podium"), entries.slice(0, 5));
  if (podium) announce(`The game is over. ${entries[0] ? `${entries[0].nickname} wins!` : ""}`);
}

function updateControls() {
  const next = $("next-question");
  const close = $("close-question");
  const end = $("end-session");
  const position = state.question?.position ?? -1;
  const more = position + 1 < state.questionCount;
  $("next-question").closest(".controls").hidden = state.status === "ended";
  next.textContent = state.status === "lobby" ? "Start the quiz" : more ? "Next question" : "No more questions";
  next.disabled = state.busy || state.status === "question_open" || !more;
  close.disabled = state.busy || state.status !== "question_open";
  end.disabled = state.busy || state.status === "ended";
  end.textContent = state.status === "question_closed" && !more ? "Show the podium" : "End game";
  end.classList.toggle("btn-primary", state.status === "question_closed" && !more);
  end.classList.toggle("btn-danger", !(state.status === "question_closed" && !more));
}

async function hostAction(path, apply) {
  state.busy = true;
  updateControls();
  $("control-error").textContent = "";
  try {
    apply(await api(`/sessions/${state.sessionId}${path}`, { method: "POST", token: store.get().token }));
  } catch (err) {
    $("control-error").textContent = err.message;
    // The room moved on without us (e.g. the question closed at its deadline): re-read it.
    if (err.status === 409) {
      try { applySession(await api(`/sessions/${state.sessionId}`, { token: store.get().token })); } catch { /* shown */ }
    }
  } finally {
    state.busy = false;
    updateControls();
  }
}

$("next-question").addEventListener("click", () => hostAction("/questions/next", (opened) => {
  state.questionCount = opened.question_count ?? state.questionCount;
  showQuestion({ ...opened, id: opened.question_id });
}));
$("close-question").addEventListener("click", () => hostAction("/questions/close", showClosed));
$("end-session").addEventListener("click", () => {
  const last = state.status === "question_closed" && (state.question?.position ?? -1) + 1 >= state.questionCount;
  if (!last && !window.confirm("End the game now for everyone?")) return;
  hostAction("/end", () => showFinal(null));
});
$("new-quiz").addEventListener("click", () => {
  store.forget("session_id");
  showEditor();
});

// ---- start ---------------------------------------------------------------------------------

function start(saved) {
  $("host-bar").hidden = false;
  $("host-user").textContent = saved.username ?? "";
  if (saved.session_id) enterRoom(saved);
  else showEditor();
}

const saved = store.get();
if (saved.token) start(saved);
else showAuth();
