// Shared by the pages: the API wrapper, stored state, the sockets, the clock, small rendering helpers.

// Answers that refuse for load, not for what was asked (the server busy, a store or a process briefly away),
// and the same request is sent again later. A 429 counts when it says when; a 502 or 504 may have been
// done (`unconfirmed`).
const LOAD_STATUSES = new Set([502, 503, 504]);

export class ApiError extends Error {
  constructor(status, code, message, extra = {}, retryAfterMs = 0) {
    super(message);
    this.status = status;
    this.code = code;
    this.extra = extra;
    this.retryAfterMs = retryAfterMs;  // the answer's Retry-After: not sent again before that
  }

  /** The server refused for load: the same request, sent again after a while, may well pass. */
  get busy() {
    return LOAD_STATUSES.has(this.status) || (this.status === 429 && this.retryAfterMs > 0);
  }

  /** No answer came from the app itself (a proxy's 502 or 504, or the app's outcome_unknown): the request
   * may have been done, so only a request that finds what it did when sent again is sent again. */
  get unconfirmed() {
    return this.status === 502 || this.status === 504;
  }
}

/** How long to wait before retry number `attempt` (1, 2, …) after a refusal or a loss: 0.5 s doubling up
 * to 10 s, ±25 % so that a crowd refused together does not come back together, and never before
 * `notBeforeMs` (the server's Retry-After). */
export function backoffMs(attempt, notBeforeMs = 0) {
  const backoff = Math.min(10000, 500 * 2 ** (attempt - 1)) * (0.75 + Math.random() * 0.5);
  return Math.max(backoff, notBeforeMs * (1 + Math.random() * 0.25));
}

/** Call the JSON API under /api/v1. Resolves to the parsed body; rejects with an ApiError. */
export async function api(path, { method = "GET", body, token } = {}) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (token) headers.Authorization = `Bearer ${token}`;
  let response;
  try {
    response = await fetch(`/api/v1${path}`, {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (err) {
    throw new ApiError(0, "network_error", "Cannot reach the server. Check your connection and try again.");
  }
  const data = await response.json().catch(() => null);
  if (!response.ok) {
    const { code = "http_error", message = response.statusText, ...extra } = data?.error ?? {};
    const retryAfterS = Number(response.headers.get("Retry-After"));
    throw new ApiError(response.status, code, message, extra, retryAfterS > 0 ? retryAfterS * 1000 : 0);
  }
  return data;
}

/** A small JSON record in localStorage under one key. */
export function storedRecord(key) {
  return {
    get() {
      try { return JSON.parse(localStorage.getItem(key)) ?? {}; } catch { return {}; }
    },
    update(changes) {
      const next = { ...this.get(), ...changes };
      localStorage.setItem(key, JSON.stringify(next));
      return next;
    },
    forget(...names) {
      const next = this.get();
      for (const name of names) delete next[name];
      localStorage.setItem(key, JSON.stringify(next));
      return next;
    },
    clear() { localStorage.removeItem(key); },
  };
}

// 4401 bad or revoked token, 4403 not in the room, 4409 replaced by a newer socket of the same player
// (another tab or device): reconnecting would only take the room away from that one again.
export const FINAL_CLOSE_CODES = new Set([4401, 4403, 4404, 4409]);

// The page's own heartbeat: a ping every PING_EVERY_MS, and a connection that has sent nothing back
// within PONG_WITHIN_MS is taken for dead. A browser cannot see protocol pings, and a phone that lost
// its network keeps its socket looking open (its frames are held, not refused), so only this tells.
export const PING_EVERY_MS = 5000;
export const PONG_WITHIN_MS = 3000;
// A room lets a socket in once its turn comes (the server answers nothing before): one not let in within
// JOIN_WITHIN_MS is taken for dead. The server refuses a socket that waited WS_JOIN_WAIT_S (30 s) for its
// turn with TRY_LATER, and reads a snapshot within 30 s, so only a lost network gets this far.
export const JOIN_WITHIN_MS = 65000;
// The server cannot let the socket in now (no turn came, or a store is briefly away): retried with backoff.
export const TRY_LATER = 1013;

/**
 * A socket that reconnects with exponential backoff (with jitter) after any drop, except a refusal
 * (a close code in `finalCodes`), which is final. `url()` gives the address of each new connection
 * (async: it may fetch a ticket first) and throws {final: true, code, message} to refuse. A connection
 * is in once the server serves it: at its handshake, or with `admits`, at the first message `admits`
 * accepts (a room's snapshot); until then it is "joining", sends nothing and is not pinged. `onOpen` is
 * called with `send` each time a connection is in. Pings the server (PING_EVERY_MS): a connection that
 * does not answer in time is dropped and replaced, whatever the browser says of it. onState receives
 * "connecting" | "joining" | "open" (in) | "busy" (refused with TRY_LATER, or `url()` threw an error
 * whose `busy` is true, e.g. an ApiError of a 503: retrying) | "reconnecting" | "closed".
 */
export function reconnectingSocket({ url, finalCodes = new Set(), admits = null, onOpen = () => {}, onMessage,
  onState = () => {}, onRefused = () => {} }) {
  let socket = null;
  let admitted = false;  // the current connection is in (see `admits`)
  let attempt = 0;  // connections tried since one was last in: the backoff grows with them
  let stopped = false;
  let pingTimer = null;
  let silenceTimer = null;
  let joinTimer = null;
  let retryTimer = null;

  function refuse(code, reason) {
    stopped = true;
    onState("closed");
    onRefused(code, reason);
  }

  function retryLater(state = "reconnecting", notBeforeMs = 0) {
    attempt += 1;
    onState(state);
    retryTimer = setTimeout(open, backoffMs(attempt, notBeforeMs));
  }

  function stopPinging() {
    clearInterval(pingTimer);
    clearTimeout(silenceTimer);
    clearTimeout(joinTimer);
    pingTimer = silenceTimer = joinTimer = null;
  }

  /** The connection went quiet: leave it (whatever it still delivers is ignored) and open another. */
  function abandon(dead, reason) {
    if (socket !== dead || stopped) return;
    stopPinging();
    socket = null;
    dead.close(4000, reason);
    retryLater();
  }

  /** The server serves `current` now: say so, and watch that it keeps answering. */
  function enter(current) {
    clearTimeout(joinTimer);
    joinTimer = null;
    admitted = true;
    attempt = 0;
    onState("open");
    pingTimer = setInterval(() => ping(current), PING_EVERY_MS);
    onOpen(send);
  }

  function ping(current) {
    if (!send({ type: "ping" }) || silenceTimer !== null) return;
    silenceTimer = setTimeout(() => abandon(current, "no answer to pings"), PONG_WITHIN_MS);
  }

  async function open() {
    retryTimer = null;
    if (attempt === 0) onState("connecting");  // a retry goes on saying why it retries
    let address;
    try {
      address = await url();
    } catch (err) {
      if (stopped) return;
      if (err.final) refuse(err.code, err.message);
      else if (err.busy) retryLater("busy", err.retryAfterMs);  // refused for load: busy, and when to retry
      else retryLater();  // offline, or a brief outage: try again
      return;
    }
    if (stopped) return;
    const current = new WebSocket(address);
    socket = current;
    admitted = false;
    current.addEventListener("open", () => {
      if (socket !== current) return;
      if (!admits) { enter(current); return; }
      onState("joining");  // connected, and waiting for the server to let it in
      joinTimer = setTimeout(() => abandon(current, "not let in"), JOIN_WITHIN_MS);
    });
    current.addEventListener("message", (event) => {
      if (socket !== current) return;  // a connection already given up on
      clearTimeout(silenceTimer);  // anything from the server shows the connection works
      silenceTimer = null;
      let message;
      try { message = JSON.parse(event.data); } catch { return; }
      if (!message || typeof message.type !== "string") return;
      if (!admitted && admits?.(message)) enter(current);
      onMessage(message);
    });
    current.addEventListener("close", (event) => {
      if (socket !== current) return;
      stopPinging();
      socket = null;
      if (stopped) return;
      if (finalCodes.has(event.code)) {
        refuse(event.code, event.reason);
        return;
      }
      retryLater(event.code === TRY_LATER ? "busy" : "reconnecting");
    });
  }

  /** Send if the socket is open and in; says whether it was. */
  function send(message) {
    if (!socket || !admitted || socket.readyState !== WebSocket.OPEN) return false;
    socket.send(JSON.stringify(message));
    return true;
  }

  // Coming back online or to the tab: retry now instead of waiting out the backoff.
  function retryNow() {
    if (!stopped && retryTimer !== null && !socket) {
      clearTimeout(retryTimer);
      retryTimer = null;
      open();
    }
  }
  window.addEventListener("online", retryNow);
  document.addEventListener("visibilitychange", () => { if (!document.hidden) retryNow(); });

  open();
  return {
    send,
    close() {
      stopped = true;
      stopPinging();
      clearTimeout(retryTimer);
      socket?.close(1000, "leaving");
      socket = null;
      onState("closed");
    },
  };
}

export function socketBase() {
  return `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}`;
}

/**
 * The room socket (reconnectingSocket). Each connection opens with a fresh one-use ticket
 * (POST /api/v1/ws-tickets), so the access token never travels in a URL, and is in the room once its
 * snapshot arrives: a busy server lets sockets in a few at a time.
 */
export function connectRoom({ sessionId, token, onMessage, onState = () => {}, onRefused = () => {} }) {
  const base = `${socketBase()}/ws/sessions/${encodeURIComponent(sessionId)}`;
  const waiting = new Map();  // ref -> resolve, for requests whose reply carries their `ref`
  let refs = 0;
  const room = reconnectingSocket({
    finalCodes: FINAL_CLOSE_CODES, onState, onRefused, admits: (message) => message.type === "snapshot",
    onMessage(message) {
      const resolve = message.ref === undefined || message.ref === null ? undefined : waiting.get(message.ref);
      if (!resolve) { onMessage(message); return; }
      waiting.delete(message.ref);
      resolve(message);
    },
    async url() {
      try {
        const { ticket } = await api("/ws-tickets", { method: "POST", body: { session_id: sessionId }, token });
        return `${base}?ticket=${encodeURIComponent(ticket)}`;
      } catch (err) {
        if (err.status === 401) throw { final: true, code: 4401, message: err.message };
        if (err.status === 403 || err.status === 404) throw { final: true, code: 4403, message: err.message };
        throw err;
      }
    },
  });
  return {
    ...room,
    /** Send `message` with a reference; resolves to the reply, or null when the socket is not open or
     * no reply came within `timeoutMs` (the caller then uses HTTP). */
    request(message, timeoutMs) {
      return new Promise((resolve) => {
        const ref = `r${++refs}`;
        if (!room.send({ ...message, ref })) { resolve(null); return; }
        const timer = setTimeout(() => { waiting.delete(ref); resolve(null); }, timeoutMs);
        waiting.set(ref, (reply) => { clearTimeout(timer); resolve(reply); });
      });
    },
  };
}

/**
 * The room's messages, dispatched in one place: `handlers` maps a message type ("snapshot",
 * "leaderboard", "question_opened", ...) to what the page does with it. Every message that carries
 * the server's time teaches the clock first; an `error` the page does not handle is logged.
 */
export function roomMessages(handlers) {
  return (message) => {
    if (message.server_time) serverClock.learn(message.server_time);
    const handle = handlers[message.type];
    if (handle) handle(message);
    else if (message.type === "error") console.warn("room error", message.code, message.message);
  };
}

/** The server's clock, as far as we can tell. Each message's server_time, taken on arrival, is behind
 * the server's clock by the message's delay (a message held by a failing network: seconds), so the
 * least delayed of the last few samples is the best guess: their largest offset. */
export const serverClock = {
  offsetMs: 0,
  samples: [],
  learn(serverTime) {
    const t = Date.parse(serverTime);
    if (Number.isNaN(t)) return;
    this.samples = [...this.samples.slice(-4), t - Date.now()];
    this.offsetMs = Math.max(...this.samples);
  },
  now() { return Date.now() + this.offsetMs; },
  remainingMs(deadline) { return Math.max(0, Date.parse(deadline) - this.now()); },
};

/**
 * Run a countdown to `deadline` (ISO): writes whole seconds into `numberEl`, shrinks `barEl`,
 * calls onEnd once at zero. Returns a function that stops it.
 */
export function startCountdown({ deadline, totalS, numberEl, barEl, onEnd = () => {}, announceAt = [] }) {
  let ended = false;
  let frame = null;
  const toAnnounce = [...announceAt];
  function tick() {
    const left = serverClock.remainingMs(deadline);
    numberEl.textContent = String(Math.ceil(left / 1000));
    // Screen readers hear the time running out, once per mark (the number itself is not read aloud).
    while (toAnnounce.length && left <= toAnnounce[0] * 1000 && left > 0) {
      announce(`${toAnnounce.shift()} seconds left`);
    }
    if (barEl) barEl.style.transform = `scaleX(${Math.min(1, left / (totalS * 1000))})`;
    numberEl.closest("[data-urgent]")?.setAttribute("data-urgent", left <= 5000 ? "true" : "false");
    if (left <= 0) {
      if (!ended) { ended = true; onEnd(); }
      return;
    }
    frame = setTimeout(tick, 100);
  }
  tick();
  return () => clearTimeout(frame);
}

/** Create an element: h("li", {class: "x", dataset: {testid: "y"}}, "text", child). */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "dataset") Object.assign(el.dataset, value);
    else if (name === "class") el.className = value;
    else if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else if (name === "value") el.value = value;
    else if (name in el && typeof value !== "string") el[name] = value;
    else el.setAttribute(name, value === true ? "" : value);
  }
  el.append(...children.flat().filter((c) => c !== undefined && c !== null && c !== false));
  return el;
}

/** Say something to screen-reader users through the page's polite live region. */
export function announce(text) {
  const region = document.getElementById("announcer");
  if (!region) return;
  region.textContent = "";
  setTimeout(() => { region.textContent = text; }, 50);
}

/** Show the connection state in the page's status pill. */
export function showConnection(state) {
  const pill = document.querySelector("[data-testid=connection]");
  if (!pill) return;
  const labels = { connecting: "Connecting…", joining: "Joining…", open: "Live", busy: "Busy, retrying…",
    reconnecting: "Reconnecting…", closed: "Offline" };
  pill.dataset.state = state;
  pill.querySelector(".label").textContent = labels[state] ?? state;
}

export const CHOICE_SHAPES = ["▲", "◆", "●", "■", "★", "⬢"];

export function ordinal(n) {
  const s = ["th", "st", "nd", "rd"];
  const v = n % 100;
  return n + (s[(v - 20) % 10] || s[v] || s[0]);
}

export function formatScore(n) {
  return Number(n ?? 0).toLocaleString("en-US");
}

/** Show exactly one of the page's screens (elements with [data-screen]). */
export function showScreen(name) {
  for (const el of document.querySelectorAll("main [data-screen]")) el.hidden = el.dataset.screen !== name;
  document.body.dataset.view = name;
}
