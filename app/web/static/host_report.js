// A game's report for its host: per player and per question, a table a phone reads as cards, and the CSV.
import { formatScore, h, showScreen } from "./common.js";

/** Wire the report screen. Returns `showReport(sessionId)`. */
export function reportScreen({ $, call, token, leaveRoom, showLibrary }) {
  function seconds(ms) { return ms === null || ms === undefined ? "–" : `${(ms / 1000).toFixed(1)} s`; }
  function percent(rate) { return rate === null || rate === undefined ? "–" : `${Math.round(rate * 100)}%`; }

  // Each cell names its column, which a phone shows beside it when a row stands as a card (style.css).
  function labelCells(table) {
    const heads = [...table.querySelectorAll("thead th")].map((th) => th.textContent);
    for (const row of table.querySelectorAll("tbody tr")) {
      [...row.children].forEach((cell, i) => { cell.dataset.label = heads[i] ?? ""; });
    }
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
    $("report-summary").textContent = `${report.players.length} player${report.players.length === 1 ? "" : "s"}, `
      + `${asked.length} question${asked.length === 1 ? "" : "s"} asked`;
    $("report-players").querySelector("tbody").replaceChildren(...report.players.map((p) => h("tr", {},
      h("td", {}, p.rank === null ? "–" : String(p.rank)), h("td", {}, p.removed ? `${p.nickname} (removed)` : p.nickname), h("td", {}, formatScore(p.score)),
      h("td", {}, String(p.correct)), h("td", {}, String(p.answered)), h("td", {}, seconds(p.average_answer_ms)))));
    $("report-questions").querySelector("tbody").replaceChildren(...asked.map((q) => h("tr", {},
      h("td", {}, String(q.position + 1)), h("td", {}, q.text), h("td", {}, String(q.answered)),
      h("td", {}, q.kind === "poll" ? "poll" : percent(q.correct_rate)),
      h("td", {}, q.choices.map((choice, i) => `${choice}: ${q.choice_counts[i] ?? 0}`).join(" · ")))));
    labelCells($("report-players"));
    labelCells($("report-questions"));
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

  return { showReport };
}
