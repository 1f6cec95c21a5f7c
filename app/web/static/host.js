// The host's page: sign in, the quiz library, write or edit a quiz, run a room question by question
// (join link and QR code, lock, remove players, answers coming in), the podium and the report.
import {
  api, ApiError, storedRecord, connectRoom, roomMessages, startCountdown, h, announce, showConnection,
  CHOICE_SHAPES, formatScore, renderLeaderboard, renderPodium, showScreen, serverClock,
} from "./common.js";
import { hostRoster } from "./host_roster.js";

// token, username, session_id, draft (the quiz being written, with the id it edits): a reload resumes.
const store = storedRecord("livequiz.host");
const $ = (testid, root = document) => root.querySelector(`[data-testid="${testid}"]`);

const MAX_CHOICES = 6;
const MIN_CHOICES = 2;
const KINDS = [["choice", "Multiple choice"], ["true_false", "True or false"], ["poll", "Poll (no right answer)"]];
const TRUE_FALSE = ["True", "False"];
const blankQuestion = () => ({ kind: "choice", text: "", choices: ["", "", "", ""], correct_choice: null,
  time_limit_s: 20, points: 1000, image_id: null, image_url: null });

const state = {
  sessionId: null,
  status: null,
  question: null, // the current question: id, position, kind, text, choices, deadline, time_limit_s, points
  questionCount: 0,
  boardVersion: -1,
  board: null,
  players: new Map(), // participant id -> nickname, for the lobby's chips
  playerCount: 0,
  locked: false,
  room: null,
  busy: false,
  stopCountdown: () => {},
};

const token = () => store.get().token;
const roster = hostRoster({ listEl: $("roster"), emptyEl: $("roster-empty"), errorEl: $("control-error"), call,
  onCount: (count) => setPlayerCount(count),
  // The room's count of answers includes a removed player's; the list knows who is still in the game.
  onAnswered: (answered) => { if (state.status === "question_open") showAnswered(answered); } });

/** An API call of the signed-in host; an expired sign-in goes back to the sign-in form. */
async function call(path, options = {}) {
  try {
    return await api(path, { ...options, token: token() });
  } catch (err) {
    if (err.status === 401) {
      store.forget("token", "session_id");
      showAuth("Your sign-in expired. Sign in again.");
    }
    throw err;
  }
}

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
    const { access_token: accessToken } = await api("/auth/login", { method: "POST", body: { username, password } });
    const saved = store.update({ token: accessToken, username });
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

// ---- the library ---------------------------------------------------------------------------

function leaveRoom() {
  roster.follow(null);
  state.room?.close();
  state.room = null;
  state.stopCountdown();
  showConnection("closed");
  $("connection").hidden = true;  // no room, no connection to speak of
  $("small-code").hidden = true;
}

async function showLibrary(message = "") {
  leaveRoom();
  showScreen("library");
  $("library-error").textContent = message;
  let quizzes;
  try {
    ({ quizzes } = await call("/quizzes"));
  } catch (err) {
    if (err.status !== 401) $("library-error").textContent = err.message;
    return;
  }
  $("library-empty").hidden = quizzes.length > 0;
  $("quiz-list").replaceChildren(...quizzes.map((quiz) => h("li", { class: "card quiz-item", dataset: { testid: "quiz-item" } },
    h("div", { class: "quiz-info" },
      h("h2", { dataset: { testid: "quiz-item-title" } }, quiz.title),
      h("p", { class: "muted small" }, `${quiz.question_count} question${quiz.question_count === 1 ? "" : "s"} · `
        + `played ${quiz.games_played} time${quiz.games_played === 1 ? "" : "s"}`)),
    h("div", { class: "row quiz-actions" },
      quiz.live_session
        ? h("button", { type: "button", class: "btn btn-primary", dataset: { testid: "quiz-resume" },
          onclick: () => enterRoom(store.update({ session_id: quiz.live_session.id })) }, "Back to the room")
        : h("button", { type: "button", class: "btn btn-primary", dataset: { testid: "quiz-host" },
          onclick: () => hostQuiz(quiz.id) }, "Host"),
      h("button", { type: "button", class: "btn btn-secondary", dataset: { testid: "quiz-edit" },
        disabled: Boolean(quiz.live_session), onclick: () => editQuiz(quiz.id) }, "Edit"),
      h("button", { type: "button", class: "btn btn-secondary", dataset: { testid: "quiz-copy" },
        onclick: () => libraryAction(() => call(`/quizzes/${quiz.id}/copy`, { method: "POST" }), `Copied “${quiz.title}”.`) },
      "Duplicate"),
      h("button", { type: "button", class: "btn btn-secondary", dataset: { testid: "quiz-games" },
        onclick: () => showGames(quiz) }, "Games and reports"),
      h("button", { type: "button", class: "btn btn-danger", dataset: { testid: "quiz-delete" },
        disabled: Boolean(quiz.live_session),
        onclick: () => {
          if (!window.confirm(`Delete “${quiz.title}” with all its games and players' answers?`)) return;
          libraryAction(() => call(`/quizzes/${quiz.id}`, { method: "DELETE" }), `Deleted “${quiz.title}”.`);
        } }, "Delete")))));
}

async function libraryAction(run, done) {
  try {
    await run();
    await showLibrary();
    announce(done);
  } catch (err) {
    if (err.status !== 401) $("library-error").textContent = err.message;
  }
}

async function hostQuiz(quizId) {
  try {
    const session = await call(`/quizzes/${quizId}/sessions`, { method: "POST" });
    enterRoom(store.update({ session_id: session.id }));
  } catch (err) {
    if (err.status !== 401) $("library-error").textContent = err.message;
  }
}

async function editQuiz(quizId) {
  try {
    const quiz = await call(`/quizzes/${quizId}`);
    showEditor({ ...quiz, editing: quiz.id });
  } catch (err) {
    if (err.status !== 401) $("library-error").textContent = err.message;
  }
}

async function showGames(quiz) {
  showScreen("games");
  $("games-title").textContent = quiz.title;
  let sessions = [];
  try {
    ({ sessions } = await call(`/quizzes/${quiz.id}/sessions`));
  } catch (err) {
    if (err.status !== 401) $("library-error").textContent = err.message;
  }
  $("games-empty").hidden = sessions.length > 0;
  $("games-list").replaceChildren(...sessions.map((game) => h("li", { class: "card quiz-item", dataset: { testid: "game-item" } },
    h("div", { class: "quiz-info" },
      h("h2", {}, new Date(game.created_at).toLocaleString()),
      h("p", { class: "muted small" }, `${game.player_count} player${game.player_count === 1 ? "" : "s"} · ${
        game.status === "ended" ? "ended" : "not finished"}`)),
    h("div", { class: "row quiz-actions" },
      h("button", { type: "button", class: "btn btn-primary", dataset: { testid: "game-report" },
        onclick: () => showReport(game.id) }, "Report"),
      h("button", { type: "button", class: "btn btn-danger", dataset: { testid: "game-delete" },
        disabled: !["ended", "lobby"].includes(game.status),
        onclick: async () => {
          if (!window.confirm("Delete this game with its players' answers?")) return;
          try {
            await call(`/sessions/${game.id}`, { method: "DELETE" });
            showGames(quiz);
          } catch (err) { if (err.status !== 401) $("library-error").textContent = err.message; }
        } }, "Delete")))));
}
$("games-back").addEventListener("click", () => showLibrary());
$("new-quiz-button").addEventListener("click", () => showEditor({ title: "", questions: [blankQuestion()] }));

// ---- the report ----------------------------------------------------------------------------

function seconds(ms) { return ms === null || ms === undefined ? "–" : `${(ms / 1000).toFixed(1)} s`; }
function percent(rate) { return rate === null || rate === undefined ? "–" : `${Math.round(rate * 100)}%`; }

async function showReport(sessionId) {
  leaveRoom();
  showScreen("report");
  $("report").dataset.session = sessionId;
  let report;
  try {
    report = await call(`/sessions/${sessionId}/report`);
  } catch (err) {
    $("report-summary").textContent = err.message;
    return;
  }
  $("report-title").textContent = report.session.title;
  const asked = report.questions.filter((q) => q.shown);
  $("report-summary").textContent = `${report.players.length} player${report.players.length === 1 ? "" : "s"}, `
    + `${asked.length} question${asked.length === 1 ? "" : "s"} asked`;
  $("report-players").querySelector("tbody").replaceChildren(...report.players.map((p) => h("tr", {},
    h("td", {}, p.rank === null ? "–" : String(p.rank)), h("td", {}, p.removed ? `${p.nickname} (removed)` : p.nickname), h("td", {}, formatScore(p.score)),
    h("td", {}, String(p.correct)), h("td", {}, String(p.answered)), h("td", {}, seconds(p.average_answer_ms)))));
  $("report-questions").querySelector("tbody").replaceChildren(...asked.map((q) => h("tr", {},
    h("td", {}, String(q.position + 1)), h("td", {}, q.text), h("td", {}, String(q.answered)),
    h("td", {}, q.kind === "poll" ? "poll" : percent(q.correct_rate)),
    h("td", {}, q.choices.map((choice, i) => `${choice}: ${q.choice_counts[i] ?? 0}`).join(" · ")))));
  $("report-csv").focus();
}

$("report-csv").addEventListener("click", async () => {
  const sessionId = $("report").dataset.session;
  const response = await fetch(`/api/v1/sessions/${sessionId}/report.csv`, {
    headers: { Authorization: `Bearer ${token()}` } });
  if (!response.ok) {
    $("report-summary").textContent = "The CSV could not be made. Try again.";
    return;
  }
  const name = /filename="([^"]+)"/.exec(response.headers.get("Content-Disposition") ?? "")?.[1] ?? "report.csv";
  const link = h("a", { href: URL.createObjectURL(await response.blob()), download: name, hidden: true });
  document.body.append(link);
  link.click();
  link.remove();
});
$("report-back").addEventListener("click", () => showLibrary());

// ---- writing a quiz ------------------------------------------------------------------------

const list = $("question-list");
let cardIds = 0;

function questionCard(q, index, total) {
  const id = `q${++cardIds}`;
  const poll = q.kind === "poll";
  const fixed = q.kind === "true_false";
  const choiceRows = q.choices.map((text, i) => h("li", { class: `choice-row c${i}` },
    h("span", { class: "choice-shape", "aria-hidden": "true" }, CHOICE_SHAPES[i]),
    poll ? null : h("input", {
      type: "radio", name: `${id}-correct`, value: String(i), checked: q.correct_choice === i,
      id: `${id}-correct-${i}`, dataset: { testid: `q-correct-${i}` }, "aria-label": `Choice ${i + 1} is correct`,
    }),
    h("input", {
      type: "text", value: text, maxlength: "200", id: `${id}-choice-${i}`, dataset: { testid: `q-choice-${i}` },
      "aria-label": `Choice ${i + 1}`, placeholder: `Choice ${i + 1}`, class: "choice-input", readonly: fixed,
    }),
    fixed ? null : h("button", {
      type: "button", class: "btn btn-ghost btn-icon", "aria-label": `Remove choice ${i + 1}`,
      dataset: { testid: `q-remove-choice-${i}` }, disabled: q.choices.length <= MIN_CHOICES,
      onclick: () => edit((quiz) => {
        const target = quiz.questions[index];
        target.choices.splice(i, 1);
        if (target.correct_choice === i) target.correct_choice = null;
        else if (target.correct_choice > i) target.correct_choice -= 1;
      }, `#${id}-choice-${Math.max(0, i - 1)}`),
    }, "×")));
  const image = q.image_url ? h("div", { class: "q-image" },
    h("img", { src: q.image_url, alt: q.image_alt || "The question's picture", dataset: { testid: "q-image-preview" } }),
    h("label", { for: `${id}-image-alt` }, "What the picture shows (read to players who cannot see it)"),
    h("input", { id: `${id}-image-alt`, type: "text", maxlength: "250", value: q.image_alt ?? "",
      dataset: { testid: "q-image-alt" }, placeholder: "e.g. A map of Europe with Paris circled" }),
    h("button", { type: "button", class: "btn btn-ghost btn-small", dataset: { testid: "q-image-remove" },
      onclick: () => edit((quiz) => { Object.assign(quiz.questions[index], { image_id: null, image_url: null }); }) },
    "Remove picture")) : null;
  return h("li", { class: "card q-card", dataset: { testid: "question-card", imageId: q.image_id ?? "",
    imageUrl: q.image_url ?? "" } },
  h("fieldset", {},
    h("legend", {}, `Question ${index + 1}`),
    h("div", { class: "row q-kind" },
      h("div", {},
        h("label", { for: `${id}-kind` }, "Kind"),
        h("select", { id: `${id}-kind`, dataset: { testid: "q-kind" },
          onchange: (event) => edit((quiz) => setKind(quiz.questions[index], event.target.value)) },
        KINDS.map(([value, label]) => h("option", { value, selected: q.kind === value }, label))))),
    h("label", { for: `${id}-text` }, "Question"),
    h("textarea", { id: `${id}-text`, rows: "2", maxlength: "500", dataset: { testid: "q-text" }, value: q.text,
      placeholder: "What is the capital of France?" }),
    image,
    h("label", { for: `${id}-image` }, q.image_url ? "Replace the picture" : "Picture (optional)"),
    h("input", { id: `${id}-image`, type: "file", accept: "image/png,image/jpeg,image/gif,image/webp",
      dataset: { testid: "q-image" }, onchange: (event) => uploadPicture(index, event.target) }),
    h("fieldset", { class: "choices" },
      h("legend", {}, "Choices ", h("span", { class: "hint" },
        poll ? "(a poll has no right answer)" : "(select the correct one)")),
      h("ol", { class: "choice-list" }, choiceRows),
      fixed ? null : h("button", {
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
      poll ? null : h("div", {},
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

function setKind(q, kind) {
  q.kind = kind;
  if (kind === "true_false") {
    q.choices = [...TRUE_FALSE];
    if (q.correct_choice !== 0 && q.correct_choice !== 1) q.correct_choice = null;
  } else if (q.choices.length === 2 && q.choices.every((c, i) => c === TRUE_FALSE[i])) {
    q.choices = ["", "", "", ""];
  }
  if (kind === "poll") { q.correct_choice = null; q.points = 0; } else if (q.points === 0) q.points = 1000;
}

async function uploadPicture(index, input) {
  const file = input.files?.[0];
  if (!file) return;
  const error = $("quiz-error");
  try {
    const response = await fetch("/api/v1/images", { method: "POST", body: file,
      headers: { "Content-Type": file.type || "application/octet-stream", Authorization: `Bearer ${token()}` } });
    const data = await response.json().catch(() => null);
    if (!response.ok) throw new ApiError(response.status, data?.error?.code, data?.error?.message ?? response.statusText);
    edit((quiz) => { Object.assign(quiz.questions[index], { image_id: data.id, image_url: data.url }); });
    error.textContent = "";
    announce("Picture added.");
  } catch (err) {
    const messages = { body_too_large: "That picture is too big (at most 2 MB).", unsupported_image:
      "Pictures can be PNG, JPEG, GIF or WebP." };
    error.textContent = messages[err.code] ?? `The picture could not be added: ${err.message}`;
  }
}

function renderEditor(quiz) {
  $("quiz-title").value = quiz.title ?? "";
  $("quiz-get-ready").value = quiz.get_ready_s === null || quiz.get_ready_s === undefined ? "" : String(quiz.get_ready_s);
  const questions = quiz.questions?.length ? quiz.questions : [blankQuestion()];
  list.replaceChildren(...questions.map((q, i) => questionCard(q, i, questions.length)));
}

function collectQuiz() {
  const getReady = $("quiz-get-ready").value;
  return {
    title: $("quiz-title").value.trim(),
    get_ready_s: getReady === "" ? null : Number(getReady),
    questions: [...list.children].map((card) => {
      const kind = $("q-kind", card).value;
      const checked = card.querySelector("input[type=radio]:checked");
      return {
        kind,
        text: $("q-text", card).value.trim(),
        choices: [...card.querySelectorAll(".choice-input")].map((input) => input.value.trim()),
        correct_choice: kind === "poll" || !checked ? null : Number(checked.value),
        time_limit_s: Number($("q-time", card).value),
        points: kind === "poll" ? 0 : Number($("q-points", card).value),
        image_id: card.dataset.imageId || null,
        image_url: card.dataset.imageUrl || null,
        image_alt: card.querySelector("[data-testid=q-image-alt]")?.value.trim() || null,
      };
    }),
  };
}

/** The quiz as the API takes it. */
function quizBody(quiz) {
  return {
    title: quiz.title,
    get_ready_s: quiz.get_ready_s ?? null,
    questions: quiz.questions.map((q) => ({
      kind: q.kind, text: q.text, time_limit_s: q.time_limit_s, image_id: q.image_id ?? null,
      image_alt: q.image_id ? q.image_alt ?? null : null,
      ...(q.kind === "true_false" ? {} : { choices: q.choices }),
      ...(q.kind === "poll" ? {} : { correct_choice: q.correct_choice, points: q.points }),
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

function saveDraft() { store.update({ draft: { ...collectQuiz(), editing: store.get().draft?.editing ?? null } }); }

$("quiz-form").addEventListener("input", saveDraft);
$("add-question").addEventListener("click", () => {
  edit((quiz) => { quiz.questions.push(blankQuestion()); }, "[data-testid=question-card]:last-child textarea");
});

$("load-json").addEventListener("click", () => {
  const error = $("quiz-error");
  let quiz;
  try {
    quiz = JSON.parse($("quiz-json").value);
  } catch {
    error.textContent = "That text is not a quiz: check its quotes, commas and brackets, or start from the example.";
    $("quiz-json").focus();
    return;
  }
  if (!quiz || !Array.isArray(quiz.questions) || !quiz.questions.length) {
    error.textContent = "That quiz has no questions: it needs a list called \"questions\".";
    return;
  }
  renderEditor({
    title: String(quiz.title ?? ""),
    questions: quiz.questions.map((q) => {
      const kind = KINDS.some(([value]) => value === q.kind) ? q.kind : "choice";
      const question = {
        ...blankQuestion(), kind, text: String(q.text ?? ""),
        choices: (Array.isArray(q.choices) ? q.choices : ["", ""]).slice(0, MAX_CHOICES).map(String),
        correct_choice: Number.isInteger(q.correct_choice) ? q.correct_choice : null,
        time_limit_s: Number(q.time_limit_s ?? 20),
        points: [0, 1000, 2000].includes(q.points) ? q.points : 1000,
      };
      setKind(question, kind);
      return question;
    }),
  });
  saveDraft();
  error.textContent = "";
  announce(`Loaded ${quiz.questions.length} questions into the form.`);
  $("quiz-title").focus();
});

/** The first problem with the quiz, with the field to focus, or null. */
function findProblem(quiz) {
  if (!quiz.title) return ["Give the quiz a title.", $("quiz-title")];
  for (const [i, q] of quiz.questions.entries()) {
    const card = list.children[i];
    if (!q.text) return [`Question ${i + 1} has no text.`, $("q-text", card)];
    const empty = q.choices.findIndex((c) => !c);
    if (empty >= 0) return [`Question ${i + 1}: choice ${empty + 1} is empty.`, $(`q-choice-${empty}`, card)];
    if (q.kind !== "poll" && q.correct_choice === null) {
      return [`Question ${i + 1}: select the correct answer.`, $("q-correct-0", card)];
    }
    if (!(q.time_limit_s >= 5 && q.time_limit_s <= 240)) {
      return [`Question ${i + 1}: the time limit is 5 to 240 seconds.`, $("q-time", card)];
    }
  }
  return null;
}

/** Save the quiz being written (a new one, or the one it edits); returns its id, or null. */
async function saveQuiz() {
  const quiz = collectQuiz();
  const error = $("quiz-error");
  const problem = findProblem(quiz);
  if (problem) {
    error.textContent = problem[0];
    problem[1]?.focus();
    return null;
  }
  error.textContent = "";
  const editing = store.get().draft?.editing;
  try {
    const saved = editing
      ? await call(`/quizzes/${editing}`, { method: "PUT", body: quizBody(quiz) })
      : await call("/quizzes", { method: "POST", body: quizBody(quiz) });
    store.forget("draft");
    return saved.id;
  } catch (err) {
    if (err.status !== 401) error.textContent = err.code === "quiz_in_use"
      ? "This quiz is being played right now: end that game before changing it." : err.message;
    return null;
  }
}

$("quiz-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const button = $("create-session");
  button.disabled = true;
  try {
    const quizId = await saveQuiz();
    if (quizId) await hostQuiz(quizId);
  } finally {
    button.disabled = false;
  }
});
$("save-quiz").addEventListener("click", async () => {
  const quizId = await saveQuiz();
  if (quizId) showLibrary("Quiz saved.");
});
$("editor-cancel").addEventListener("click", () => {
  store.forget("draft");
  showLibrary();
});

function showEditor(quiz = null, message = "") {
  leaveRoom();
  const draft = quiz ?? store.get().draft ?? { title: "", questions: [blankQuestion()] };
  store.update({ draft: { ...draft, editing: draft.editing ?? null } });
  renderEditor(draft);
  $("editor-heading").textContent = draft.editing ? "Edit the quiz" : "Write a quiz";
  showScreen("editor");
  $("quiz-error").textContent = message;
  $("quiz-title").focus();
}

// ---- running the room ----------------------------------------------------------------------

async function enterRoom(saved) {
  $("connection").hidden = false;
  Object.assign(state, { sessionId: saved.session_id, status: null, question: null, boardVersion: -1,
    board: null, players: new Map(), locked: false });
  $("arrivals").replaceChildren();
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
    for (const entry of message.leaderboard?.entries ?? []) addArrival(entry.participant_id, entry.nickname, { quiet: true });
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
    addArrival(message.participant_id, message.nickname);
    roster.refresh();
  },
  player_removed(message) {
    setPlayerCount(message.player_count);
    removeArrival(message.participant_id);
    roster.refresh();
  },
  player_restored(message) {
    setPlayerCount(message.player_count);
    if (state.status === "lobby") addArrival(message.participant_id, message.nickname, { quiet: true });
    roster.refresh();
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
  setLocked(Boolean(session.locked));
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
  $("player-count").textContent = String(count);
  $("player-count-label").textContent = count === 1 ? "player" : "players";
  if (state.status === "question_open") showAnswered(state.question?.answered ?? 0);
}

function setLocked(locked) {
  state.locked = locked;
  const button = $("lock-room");
  button.textContent = locked ? "Unlock the room" : "Lock the room";
  button.setAttribute("aria-pressed", String(locked));
  $("locked-badge").hidden = !locked;
}

$("lock-room").addEventListener("click", async () => {
  try {
    const result = await call(`/sessions/${state.sessionId}/lock`, { method: "POST", body: { locked: !state.locked } });
    setLocked(result.locked);
    announce(result.locked ? "The room is locked: nobody new can join." : "The room is open again.");
  } catch (err) {
    if (err.status !== 401) $("control-error").textContent = err.message;
  }
});

/** A chip per player in the lobby; selecting one removes that player (after a confirmation). */
function addArrival(participantId, nickname, { quiet = false } = {}) {
  if (!nickname || !participantId || state.players.has(participantId)) return;
  state.players.set(participantId, nickname);
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
  state.players.delete(participantId);
  $("arrivals").querySelector(`[data-participant="${CSS.escape(participantId)}"]`)?.remove();
}

async function removePlayer(participantId, nickname) {
  if (!window.confirm(`Remove ${nickname} from this game? They cannot join it again.`)) return;
  try {
    const result = await call(`/sessions/${state.sessionId}/participants/${participantId}`, { method: "DELETE" });
    setPlayerCount(result.player_count);
    removeArrival(participantId);
    announce(`${nickname} was removed.`);
  } catch (err) {
    if (err.status !== 401) $("control-error").textContent = err.message;
  }
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

// ---- start ---------------------------------------------------------------------------------

function start(saved) {
  $("host-bar").hidden = false;
  $("host-user").textContent = saved.username ?? "";
  if (saved.session_id) enterRoom(saved);
  else if (saved.draft) showEditor();
  else showLibrary();
}

const saved = store.get();
if (saved.token) start(saved);
else showAuth();
