// The player's answer on its way: over the room socket, else HTTP, sent again while the outcome is
// uncertain, and "Too late" (never "Wrong") when it reached the server after the close.
import { ApiError, api } from "./common.js";

/** Answering over the page's `state`; `lockAnswers` and `showResult` are the question's and result's. */
export function answering({ state, store, $, lockAnswers, showResult }) {
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

  return { submitAnswer };
}
