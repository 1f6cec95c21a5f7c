// The player's result screens: a question's verdict (never "Wrong" for an answer that arrived after the
// close), the streak bonus apart, how a question missed while away went, whom the player trails, and
// the final place. player.js shows them.
import { api, announce, formatScore, ordinal, showScreen } from "./common.js";
import { renderDistribution, renderPodium } from "./standings.js";

/** The result screens over the page's `state`; `renderBoard` and `updateMe` are player.js's. */
export function resultScreens({ state, store, $, recordedAnswer, renderBoard, updateMe }) {
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

  /** On the result: how far behind the player just above this one is (when both are on the board); a tie
   * ranked by who got there first says so. */
  function showTrailing(board) {
    const mine = board.entries.find((e) => e.participant_id === state.participantId);
    const ahead = mine && mine.score > 0 ? board.entries.find((e) => e.rank === mine.rank - 1) : null;
    const gap = ahead ? ahead.score - mine.score : 0;
    $("result-behind").textContent = !ahead ? ""
      : gap === 0 ? `Tied on points with ${ahead.nickname}`
        : `${formatScore(gap)} point${gap === 1 ? "" : "s"} behind ${ahead.nickname}`;
  }

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
    const bonus = you.streak_bonus ?? 0;  // part of the points, earned by the right answers in a row
    $("result-points").textContent = late ? "Your answer arrived after the question closed: it did not count."
      : you.points === null || you.points === undefined || q.kind === "poll" ? ""
        : bonus > 0 ? `+${formatScore(you.points - bonus)} + ${formatScore(bonus)} streak bonus`
          : `+${formatScore(you.points)} points`;
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

  return { showMissedResult, showTrailing, closeQuestion, showResult, finish };
}
