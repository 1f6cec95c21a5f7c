// The host writes a quiz: its questions (choice, true or false, poll), pictures with the words a
// screen reader says for them, a get-ready length; a draft kept across reloads; saved, or saved and hosted.
import { ApiError, CHOICE_SHAPES, announce, h, showScreen } from "./common.js";

const MAX_CHOICES = 6;
const MIN_CHOICES = 2;
const KINDS = [["choice", "Multiple choice"], ["true_false", "True or false"], ["poll", "Poll (no right answer)"]];
const TRUE_FALSE = ["True", "False"];
const blankQuestion = () => ({ kind: "choice", text: "", choices: ["", "", "", ""], correct_choice: null,
  time_limit_s: 20, points: 1000, image_id: null, image_url: null });

/** Wire the quiz form. Returns `showEditor(quiz?, message?)` (no quiz: the stored draft, or a new one). */
export function quizEditor({ store, $, call, token, leaveRoom, showLibrary, hostQuiz }) {
  const list = $("question-list");
  let cardIds = 0;
  let unsaved = false;  // changes since the quiz was opened or saved (Back asks before dropping them)

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

  function saveDraft() {
    unsaved = true;
    store.update({ draft: { ...collectQuiz(), editing: store.get().draft?.editing ?? null } });
  }

  /** The question without the choices left empty (the form starts with four), while two remain. */
  function withoutEmptyChoices(q) {
    if (q.kind === "true_false") return q;
    const kept = [];
    let correct = null;
    q.choices.forEach((choice, i) => {
      if (!choice) return;
      if (i === q.correct_choice) correct = kept.length;
      kept.push(choice);
    });
    return kept.length < MIN_CHOICES ? q : { ...q, choices: kept, correct_choice: correct };
  }

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
    const written = collectQuiz();
    const quiz = { ...written, questions: written.questions.map(withoutEmptyChoices) };
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
      unsaved = false;
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
    if (quizId) showLibrary("", "Quiz saved.");
  });
  $("editor-cancel").addEventListener("click", () => {
    if (unsaved && !window.confirm("This quiz is not saved. Leave it and lose your changes?")) return;
    unsaved = false;
    store.forget("draft");
    showLibrary();
  });

  function showEditor(quiz = null, message = "") {
    leaveRoom();
    const draft = quiz ?? store.get().draft ?? { title: "", questions: [blankQuestion()] };
    unsaved = quiz === null && Boolean(store.get().draft);  // a draft taken back after a reload was never saved
    store.update({ draft: { ...draft, editing: draft.editing ?? null } });
    renderEditor(draft);
    $("editor-heading").textContent = draft.editing ? "Edit the quiz" : "Write a quiz";
    showScreen("editor");
    $("quiz-error").textContent = message;
    $("quiz-title").focus();
  }

  $("new-quiz-button").addEventListener("click", () => showEditor({ title: "", questions: [blankQuestion()] }));
  return { showEditor };
}
