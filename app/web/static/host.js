// The host's page: sign in, the quiz library and its games; writing a quiz (host_editor.js), running a
// room (host_room.js) and the report (host_report.js) are modules of their own.
import { api, announce, h, showConnection, showScreen, storedRecord } from "./common.js";
import { quizEditor } from "./host_editor.js";
import { reportScreen } from "./host_report.js";
import { hostRoom } from "./host_room.js";

// token, username, session_id, draft (the quiz being written, with the id it edits): a reload resumes.
const store = storedRecord("livequiz.host");
const $ = (testid, root = document) => root.querySelector(`[data-testid="${testid}"]`);

const token = () => store.get().token;
const room = hostRoom({ store, $, call, showLibrary, showAuth, showReport: (sessionId) => showReport(sessionId) });
const { enterRoom, leaveRoom } = room;
const { showReport } = reportScreen({ $, call, token, leaveRoom, showLibrary });
const { showEditor } = quizEditor({ store, $, call, token, leaveRoom, showLibrary, hostQuiz });

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
  room.closeRoom();
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
  room.closeRoom();
  store.clear();
  showAuth();
});

// ---- the library ---------------------------------------------------------------------------

/** The library, with an error (`message`) or good news (`notice`: "Quiz saved.") above it. */
async function showLibrary(message = "", notice = "") {
  leaveRoom();
  showScreen("library");
  $("library-error").textContent = message;
  $("library-status").textContent = notice;
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
