// The operators' dashboard (/ops): each panel's series from /ops/api/panels/<name> (the web asks Prometheus),
// drawn with uPlot; the processes and firing alerts from /ops/api/targets. Everything refreshes every 15 s.
"use strict";

const REFRESH_MS = 15000;
const STATUS_MAX = 5;  // series named in a panel's "now:" line
const COLOURS = ["#4a2bb8", "#c8102e", "#1660c4", "#946200", "#1e7b0a", "#0b7474", "#6f3bb0", "#5b5675"];
const charts = new Map();  // panel name -> {plot, key}

function rangeMinutes() {
  return document.getElementById("range").value;
}

async function fetchJson(url) {
  const response = await fetch(url, {credentials: "same-origin", headers: {Accept: "application/json"}});
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    throw new Error((body.error && body.error.message) || `HTTP ${response.status}`);
  }
  return body;
}

function formatValue(value) {
  if (value === null || value === undefined) return "–";
  const magnitude = Math.abs(value);
  if (magnitude !== 0 && magnitude < 0.01) return value.toExponential(1);
  return magnitude >= 100 ? value.toFixed(0) : value.toPrecision(3);
}

function latest(values) {
  for (let i = values.length - 1; i >= 0; i--) if (values[i] !== null) return values[i];
  return null;
}

// A value between two gaps draws no line (a route's latency at the one step it had requests): dots, then.
function isolated(values) {
  return values.some((v, i) => v !== null && (values[i - 1] ?? null) === null && (values[i + 1] ?? null) === null);
}

function draw(element, data) {
  const name = element.dataset.panel;
  const status = document.querySelector(`[data-status-of="${name}"]`);
  const key = data.series.map((s) => s.name).join("\n");
  const columns = [data.times, ...data.series.map((s) => s.values)];
  status.classList.remove("bad");
  // The highest values now first, a few of them: the slowest routes, the longest lags.
  const now = data.series.map((s) => [s.name, latest(s.values)]).sort((a, b) => (b[1] ?? -1) - (a[1] ?? -1));
  const shown = now.slice(0, STATUS_MAX).map(([label, value]) => `${label} ${formatValue(value)}`);
  if (now.length > STATUS_MAX) shown.push(`${now.length - STATUS_MAX} more`);
  status.textContent = data.series.length ? "now: " + shown.join(" · ") : "no samples in this range yet";
  element.dataset.series = String(data.series.length);
  element.dataset.samples = String(data.series.reduce((n, s) => n + s.values.filter((v) => v !== null).length, 0));
  const existing = charts.get(name);
  if (existing && existing.key === key) {
    existing.plot.setData(columns);
    return;
  }
  if (existing) existing.plot.destroy();
  const options = {
    width: Math.max(300, element.clientWidth),
    height: 220,
    series: [{}, ...data.series.map((s, i) => ({label: s.name, stroke: COLOURS[i % COLOURS.length], width: 1.5,
                                                 value: (u, v) => formatValue(v),
                                                 points: {show: isolated(s.values), size: 5}}))],
    axes: [{}, {size: 60, values: (u, ticks) => ticks.map(formatValue)}],
    legend: {live: false},  // the values are the status line's: the legend stays one line per few series
  };
  charts.set(name, {plot: new uPlot(options, columns, element), key});
}

async function refreshPanel(element) {
  const name = element.dataset.panel;
  try {
    draw(element, await fetchJson(`/ops/api/panels/${encodeURIComponent(name)}?minutes=${rangeMinutes()}`));
  } catch (error) {
    const status = document.querySelector(`[data-status-of="${name}"]`);
    status.textContent = `unavailable: ${error.message}`;
    status.classList.add("bad");
  }
}

function pill(text, className) {
  const span = document.createElement("span");
  span.className = className;
  span.textContent = text;
  return span;
}

async function refreshTargets() {
  const box = document.getElementById("targets");
  try {
    const data = await fetchJson("/ops/api/targets");
    const items = data.alerts.map((a) => pill(`${a.alert} (${a.severity}) ${a.instance || a.job}`, "ops-alert"));
    for (const t of data.targets) {
      items.push(pill(`${t.job} ${t.instance} ${t.up ? "up" : "DOWN"}`, `ops-target ${t.up ? "up" : "down"}`));
    }
    if (!data.alerts.length) items.unshift(pill("no alert firing", "ops-target up"));
    box.replaceChildren(...items);
    box.dataset.up = String(data.targets.filter((t) => t.up).length);
    box.dataset.down = String(data.targets.filter((t) => !t.up).length);
  } catch (error) {
    box.replaceChildren(pill(`Prometheus unavailable: ${error.message}`, "bad"));
  }
}

async function refreshAll() {
  await Promise.all([refreshTargets(), ...[...document.querySelectorAll("[data-panel]")].map(refreshPanel)]);
  document.getElementById("updated").textContent = "updated " + new Date().toLocaleTimeString();
}

document.addEventListener("DOMContentLoaded", () => {
  const range = document.getElementById("range");
  const wanted = new URLSearchParams(location.search).get("minutes");  // a link to a range: /ops?minutes=15
  if ([...range.options].some((option) => option.value === wanted)) range.value = wanted;
  range.addEventListener("change", refreshAll);
  refreshAll();
  setInterval(refreshAll, REFRESH_MS);
});
