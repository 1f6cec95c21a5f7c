// A game's report for its host: per player, per question (the hardest first) and each player's answer
// to each question, tables a phone reads as cards; the CSV and the JSON to download.
import { formatScore, h, showScreen } from "./common.js";

/** Wire the report screen. Returns `showReport(sessionId)`. */
export function reportScreen({ $, call, token, leaveRoom, showLibrary }) {
  function seconds(ms) { return ms === null || ms === undefined ? "–" : `${(ms / 1000).toFixed(1)} s`; }
  function percent(rate) { return rate === null || rate === undefined ? "–" : `${Math.round(rate * 100)}%`; }

  // Each cell names its column, which a phone shows beside it when a row stands as a card (host.css).
  function labelCells(table) {
    const heads = [...table.querySelectorAll("thead th")].map((th) => th.dataset.label ?? th.textContent);
    for (const row of table.querySelectorAll("tbody tr")) {
      [...row.children].forEach((cell, i) => { cell.dataset.label = heads[i] ?? ""; });
    }
  }

  /** One player's answer to one question: the verdict (a mark, and in words for a screen reader), the
   * choice and the time. */
  function answerCell(answer) {
    if (answer.choice === null) {
      return h("td", { dataset: { verdict: "none" } }, h("span", {}, h("span", { "aria-hidden": "true" }, "—"),
        h("span", { class: "visually-hidden" }, "no answer")));
    }
    const verdict = answer.correct === null ? "poll" : answer.correct ? "correct" : "wrong";
    const said = verdict === "poll" ? [answer.choice_text, h("span", { class: "muted" }, " (poll)")]
      : [h("span", { class: "answer-mark", "aria-hidden": "true" }, verdict === "correct" ? "✓ " : "✗ "),
        h("span", { class: "visually-hidden" }, `${verdict}: `), answer.choice_text];
    // One span: a phone's card lays a cell out as its label beside one block.
    return h("td", { dataset: { verdict } },
      h("span", {}, said, h("span", { class: "muted" }, ` · ${seconds(answer.answered_ms)}`)));
  }

  function showAnswers(players, asked) {
    const table = $("report-answers");
    table.querySelector("thead tr").replaceChildren(h("th", { scope: "col" }, "Player"),
      ...asked.map((q) => h("th", { scope: "col", title: q.text, dataset: { label: `Q${q.position + 1}` } },
        `Q${q.position + 1}`, h("span", { class: "visually-hidden" }, `: ${q.text}`))));
    table.querySelector("tbody").replaceChildren(...players.map((p) => h("tr", {},
      h("th", { scope: "row" }, p.removed ? `${p.nickname} (removed)` : p.nickname),
      ...p.answers.map(answerCell))));
    labelCells(table);
  }

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
    const byPosition = new Map(asked.map((q) => [q.position, q]));
    $("report-summary").textContent = `${report.players.length} player${report.players.length === 1 ? "" : "s"}, `
      + `${asked.length} question${asked.length === 1 ? "" : "s"} asked`;
    $("report-players").querySelector("tbody").replaceChildren(...report.players.map((p) => h("tr", {},
      h("td", {}, p.rank === null ? "–" : String(p.rank)), h("td", {}, p.removed ? `${p.nickname} (removed)` : p.nickname), h("td", {}, formatScore(p.score)),
      h("td", {}, String(p.correct)), h("td", {}, String(p.answered)), h("td", {}, seconds(p.average_answer_ms)))));
    $("report-questions").querySelector("tbody").replaceChildren(...report.hardest_first.map((position) => {
      const q = byPosition.get(position);
      return h("tr", {},
        h("td", {}, String(q.position + 1)), h("td", {}, q.text), h("td", {}, String(q.answered)),
        h("td", {}, q.kind === "poll" ? "poll" : percent(q.correct_rate)), h("td", {}, seconds(q.average_answer_ms)),
        h("td", {}, q.choices.map((choice, i) => `${choice}: ${q.choice_counts[i] ?? 0}`).join(" · ")));
    }));
    labelCells($("report-players"));
    labelCells($("report-questions"));
    showAnswers(report.players, asked);
    $("report-csv").focus();
  }

  /** Fetch a report file with the host's token and hand it to the browser as a download. */
  async function download(extension) {
    const sessionId = $("report").dataset.session;
    const response = await fetch(`/api/v1/sessions/${sessionId}/report.${extension}`, {
      headers: { Authorization: `Bearer ${token()}` } });
    if (!response.ok) {
      $("report-summary").textContent = `The ${extension.toUpperCase()} file could not be made. Try again.`;
      return;
    }
    const name = /filename="([^"]+)"/.exec(response.headers.get("Content-Disposition") ?? "")?.[1]
      ?? `report.${extension}`;
    const link = h("a", { href: URL.createObjectURL(await response.blob()), download: name, hidden: true });
    document.body.append(link);
    link.click();
    link.remove();
  }

  $("report-csv").addEventListener("click", () => download("csv"));
  $("report-json").addEventListener("click", () => download("json"));
  $("report-back").addEventListener("click", () => showLibrary());

  return { showReport };
}
