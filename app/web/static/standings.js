// The standings drawn on every page: a leaderboard that slides as ranks change, a podium, and how
// the room answered a question.
import { CHOICE_SHAPES, formatScore, h, ordinal } from "./common.js";

/**
 * Render leaderboard entries into an <ol>, reusing one <li> per participant so rank changes can
 * slide (FLIP: measure, re-order, invert with a transform, then play the transform back to zero).
 */
export function renderLeaderboard(list, entries, { highlight = null, testid = "leaderboard" } = {}) {
  const reduceMotion = window.matchMedia("(prefers-reduced-motion: reduce)").matches;
  const before = new Map();
  for (const li of list.children) before.set(li.dataset.participant, li.getBoundingClientRect().top);
  const existing = new Map([...list.children].map((li) => [li.dataset.participant, li]));
  const rows = entries.map((entry) => {
    let li = existing.get(entry.participant_id);
    const oldScore = li ? Number(li.dataset.score) : null;
    if (!li) {
      li = h("li", { class: "lb-row", dataset: { testid: `${testid}-row`, participant: entry.participant_id } },
        h("span", { class: "lb-rank", dataset: { testid: `${testid}-rank` } }),
        h("span", { class: "lb-name", dataset: { testid: `${testid}-name` } }),
        h("span", { class: "lb-score", dataset: { testid: `${testid}-score` } }));
    }
    // Nobody has earned a place on 0 points: no rank, no medal (a lobby shows everyone on 0).
    const ranked = entry.score > 0;
    li.dataset.score = String(entry.score);
    li.dataset.rank = ranked ? String(entry.rank) : "";
    li.querySelector(".lb-rank").textContent = ranked ? String(entry.rank) : "–";
    li.querySelector(".lb-name").textContent = entry.nickname;
    li.querySelector(".lb-score").textContent = formatScore(entry.score);
    li.classList.toggle("me", entry.participant_id === highlight);
    li.setAttribute("aria-label", ranked ? `${ordinal(entry.rank)}: ${entry.nickname}, ${formatScore(entry.score)} points`
      : `${entry.nickname}, no points yet`);
    if (oldScore !== null && oldScore !== entry.score && !reduceMotion) {
      li.classList.remove("bumped");
      void li.offsetWidth; // restart the highlight animation
      li.classList.add("bumped");
    }
    return li;
  });
  list.replaceChildren(...rows);
  if (reduceMotion) return;
  for (const li of rows) {
    const top = before.get(li.dataset.participant);
    const delta = top === undefined ? 0 : top - li.getBoundingClientRect().top;
    if (top === undefined) {
      li.animate([{ opacity: 0, transform: "translateY(8px)" }, { opacity: 1, transform: "none" }],
        { duration: 300, easing: "ease-out" });
    } else if (delta) {
      li.animate([{ transform: `translateY(${delta}px)` }, { transform: "none" }],
        { duration: 500, easing: "cubic-bezier(.2,.8,.2,1)" });
    }
  }
}

/** Render a podium (top entries) into `container`: the first three on blocks, then 4th and 5th. Only
 * players who scored stand on it; with none, `empty` says so. */
/** The podium; with `scoredOnly` (a quiz) nobody stands on it without points, and `empty` says so. */
export function renderPodium(container, entries, { highlight = null, scoredOnly = false, empty = null } = {}) {
  if (scoredOnly) entries = entries.filter((entry) => entry.score > 0);
  if (!entries.length) {
    container.replaceChildren(...(empty ? [h("p", { class: "lead muted", dataset: { testid: "podium-empty" } }, empty)] : []));
    return;
  }
  // In reading order 1st, 2nd, 3rd; the stylesheet lays them out as 2nd, 1st, 3rd.
  const blocks = entries.slice(0, 3).map((entry) => h("li", {
    class: `podium-place place-${entry.rank}${entry.participant_id === highlight ? " me" : ""}`,
    dataset: { testid: "podium-entry", rank: String(entry.rank) },
  },
  h("span", { class: "podium-name", dataset: { testid: "podium-name" } }, entry.nickname),
  h("span", { class: "podium-score", dataset: { testid: "podium-score" } }, `${formatScore(entry.score)} pts`),
  h("span", { class: "podium-block", "aria-hidden": "true" }, String(entry.rank)),
  h("span", { class: "visually-hidden" }, `${ordinal(entry.rank)} place`)));
  const rest = entries.slice(3, 5).map((entry) => h("li", {
    class: `podium-rest${entry.participant_id === highlight ? " me" : ""}`,
    dataset: { testid: "podium-entry", rank: String(entry.rank) },
  }, `${ordinal(entry.rank)} `, h("strong", { dataset: { testid: "podium-name" } }, entry.nickname),
  h("span", { dataset: { testid: "podium-score" } }, ` ${formatScore(entry.score)} pts`)));
  container.replaceChildren(h("ol", { class: "podium", "aria-label": "Podium" }, blocks));
  if (rest.length) container.append(h("ol", { class: "podium-others", "aria-label": "Runners-up" }, rest));
}

/** How the room answered a closed question: a bar per choice, the right one and yours marked. */
export function renderDistribution(list, question, counts, correctChoice, picked) {
  if (!counts || !question.choices?.length) {
    list.replaceChildren();
    list.hidden = true;
    return;
  }
  const most = Math.max(1, ...counts);
  list.hidden = false;
  list.replaceChildren(...question.choices.map((text, i) => {
    const row = h("li", {
      class: `dist-row c${i}${i === correctChoice ? " correct" : ""}${i === picked ? " picked" : ""}`,
      dataset: { testid: `dist-${i}` },
      "aria-label": `${text}: ${counts[i] ?? 0}${i === correctChoice ? ", correct" : ""}${i === picked ? ", your answer" : ""}`,
    },
    h("span", { class: "shape", "aria-hidden": "true" }, CHOICE_SHAPES[i]),
    h("span", { class: "dist-text" }, text),
    h("span", { class: "dist-track", "aria-hidden": "true" }, h("span", { class: "dist-bar" })),
    h("span", { class: "dist-count", dataset: { testid: `dist-count-${i}` } }, String(counts[i] ?? 0)));
    row.style.setProperty("--share", String((counts[i] ?? 0) / most));  // CSSOM: allowed by the CSP
    return row;
  }));
}
