// The player's join screen: a game PIN and a nickname, as a guest or with an account (a new one too),
// or a place taken back with a rejoin code. player.js enters the room once joined.
import { api, backoffMs, showConnection, showScreen } from "./common.js";

// While a join is refused for load and tried again by itself: the truth, and no claim of being in.
const BUSY_LABEL = "Busy, retrying…";
const BUSY_NOTES = {
  server: "The server is busy right now. You're not in yet; trying again by itself…",
  network: "Too many tries just now. You're not in yet; trying again by itself…",  // 429
  unconfirmed: "No answer from the server yet, so you're not confirmed in the game; trying again by itself…",
};
const STOPPED_NOTE = "Stopped trying. You're not in the game: press Enter to try again.";
const STOPPED_UNCONFIRMED = "Stopped trying. The server never confirmed your place: press Enter to try again.";
// Past this, a forgotten tab stops asking (a player still there presses Enter again).
const RETRY_FOR_MS = 5 * 60 * 1000;
// A rejoin gives the place a new code, so one sent again after an unconfirmed answer would be refused.
const REJOIN_UNCONFIRMED = "No answer from the server: your rejoin may have gone through with a new code. "
  + "Reload the page; if you are not back in the game, ask the host for your code.";

/** Wire the join form; `onJoined(saved)` enters the room. Returns `showJoin(message)`. */
export function joinScreen({ store, $, onJoined }) {
  const joinForm = $("join-form");
  const ACCOUNT_NEEDED = "To create an account, pick a username and a password of at least 8 characters.";
  const accountReady = () => Boolean($("player-username").value.trim()) && $("player-password").value.length >= 8;

  function showJoin(message = "") {
    showScreen("join");
    $("player-meta").hidden = true;
    showConnection("closed");
    const saved = store.get();
    const fromLink = new URLSearchParams(location.search).get("code");
    if (fromLink && /^\d{6}$/.test(fromLink)) $("join-code").value = fromLink;
    if (!$("join-nickname").value && saved.nickname) $("join-nickname").value = saved.nickname;
    $("join-error").textContent = message;
    ($("join-code").value ? $("join-nickname") : $("join-code")).focus();
  }

  /** A token to play with: the account typed in "sign in", else the stored one, else a new guest's. */
  async function playerToken(nickname) {
    const username = $("player-username").value.trim();
    const password = $("player-password").value;
    const saved = store.get();
    const creating = $("player-create").checked;
    if (username && password && (creating || saved.username !== username)) {
      if (creating) {
        await api("/auth/register", { method: "POST", body: { username, password } });
        $("player-create").checked = false;  // created: from now on these are sign-in details
      }
      const { access_token: token } = await api("/auth/login", { method: "POST", body: { username, password } });
      $("player-password").value = "";
      store.update({ token, username });
      return token;
    }
    if (saved.token) return saved.token;
    const guest = await api("/auth/guest", { method: "POST", body: { nickname } });
    store.update({ token: guest.access_token, user_id: guest.user_id, username: null });
    return guest.access_token;
  }

  async function findAndJoin(code, nickname) {
    const token = await playerToken(nickname);
    const session = await api(`/sessions?join_code=${code}`, { token });
    let joined;
    try {
      joined = await api(`/sessions/${session.id}/join`, { method: "POST", body: { nickname }, token });
    } catch (err) {
      if (err.code !== "already_joined") throw err;
      joined = { participant_id: err.extra.participant_id, nickname: err.extra.nickname ?? nickname,
        rejoin_code: store.get().rejoin_code };
    }
    return store.update({
      session_id: session.id, participant_id: joined.participant_id, nickname: joined.nickname, join_code: code,
      rejoin_code: joined.rejoin_code ?? null,
    });
  }

  async function rejoin(code, nickname, rejoinCode) {
    const token = await playerToken(nickname);
    const session = await api(`/sessions?join_code=${code}`, { token });
    const place = await api(`/sessions/${session.id}/rejoin`, {
      method: "POST", body: { nickname, rejoin_code: rejoinCode }, token });
    return store.update({
      session_id: session.id, participant_id: place.participant_id, nickname: place.nickname, join_code: code,
      rejoin_code: place.rejoin_code,
    });
  }

  const JOIN_MESSAGES = {
    not_found: "No game is running with that PIN. Check the host's screen.",
    session_ended: "That game has ended. Ask the host for the new PIN.",
    nickname_taken: "Someone in this game already has that nickname. If it's you, type your rejoin code "
      + "below to get your place back; if not, pick another nickname.",
    room_locked: "The host has locked this game: nobody new can join.",
    removed: "The host removed you from this game.",
    no_such_player: "No player of this game has that nickname and rejoin code.",
    rejoin_unconfirmed: REJOIN_UNCONFIRMED,
    invalid_credentials: "Wrong username or password.",
    username_taken: "That username is taken. Sign in with it, or pick another.",
    invalid_body: "That nickname can't be used. Try another one.",
  };

  /** Run a join (or a rejoin) once, starting over as a new guest when the stored token expired. */
  async function runOnce(run) {
    try {
      return await run();
    } catch (err) {
      if (err.status !== 401 || err.code === "invalid_credentials") throw err;
      store.forget("token", "user_id", "username"); // an expired token: start over as a new guest
      return await run();
    }
  }

  // A join refused for load and being tried again: `stop()` ends it once the request in flight is answered
  // (a join that goes through meanwhile is the player's place: they are in).
  let retrying = null;

  /** Run a join (or a rejoin) from the form. A refusal for load (503, 429 with Retry-After...: nothing was
   * recorded) is tried again by itself with backoff, the button and the pill saying "Busy, retrying…",
   * until the server answers for real, the player stops it or RETRY_FOR_MS passes; any other refusal is
   * shown at once. A join tried again after its answer was lost finds the place it made (`already_joined`);
   * a rejoin (`repeatable: false`) is not sent again after an unconfirmed answer. */
  async function joinFromForm(run, button, busyLabel, { repeatable = true } = {}) {
    const error = $("join-error");
    const note = $("join-busy");
    const stop = $("join-stop");
    const buttons = [$("join-submit"), $("rejoin-submit")];
    const label = button.textContent;
    for (const b of buttons) b.disabled = true;
    button.textContent = busyLabel;
    const attempt = { stopped: false, wake: () => {} };
    retrying = {
      stop() {
        attempt.stopped = true;
        stop.disabled = true;
        stop.textContent = "Stopping…";
        attempt.wake();
      },
    };
    try {
      let saved = null;
      let unconfirmed = false;
      const giveUpAt = Date.now() + RETRY_FOR_MS;
      for (let tries = 1; !attempt.stopped; tries += 1) {
        try {
          saved = await runOnce(run);
          break;
        } catch (err) {
          if (!err.busy) throw err;
          if (err.unconfirmed && !repeatable) throw Object.assign(err, { code: "rejoin_unconfirmed" });
          unconfirmed ||= err.unconfirmed;  // once a try may have gone through, the place is unconfirmed
          if (attempt.stopped || Date.now() > giveUpAt) break;
          button.textContent = BUSY_LABEL;
          showConnection("busy");
          note.hidden = false;
          $("join-busy-text").textContent = BUSY_NOTES[
            err.status === 429 ? "network" : err.unconfirmed ? "unconfirmed" : "server"];
          await new Promise((resolve) => {
            const timer = setTimeout(resolve, backoffMs(tries, err.retryAfterMs));
            attempt.wake = () => { clearTimeout(timer); resolve(); };
          });
        }
      }
      note.hidden = true;
      if (saved === null) {
        showConnection("closed");
        error.textContent = unconfirmed ? STOPPED_UNCONFIRMED : STOPPED_NOTE;
        return;
      }
      store.forget("answer", "result");
      onJoined(saved);
    } catch (err) {
      note.hidden = true;
      showConnection("closed");
      error.textContent = JOIN_MESSAGES[err.code] ?? err.message;
      if (err.code === "nickname_taken") offerRejoin();
    } finally {
      retrying = null;
      stop.disabled = false;
      stop.textContent = "Stop trying";
      for (const b of buttons) b.disabled = false;
      button.textContent = label;
    }
  }

  $("join-stop").addEventListener("click", () => retrying?.stop());

  /** The nickname is someone's place: perhaps this player's, from a device that is gone. */
  function offerRejoin() {
    $("rejoin-box").open = true;
    $("rejoin-nickname").value = $("join-nickname").value.trim();
    $("rejoin-code").focus();
  }

  joinForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const code = $("join-code").value.replace(/\D/g, "");
    const nickname = $("join-nickname").value.trim();
    const error = $("join-error");
    if (!/^\d{6}$/.test(code)) { error.textContent = "The game PIN has 6 digits."; $("join-code").focus(); return; }
    if (!nickname) { error.textContent = "Pick a nickname."; $("join-nickname").focus(); return; }
    if ($("player-create").checked && !accountReady()) {
      error.textContent = ACCOUNT_NEEDED;
      $("player-username").focus();
      return;
    }
    error.textContent = "";
    await joinFromForm(() => findAndJoin(code, nickname), $("join-submit"), "Joining…");
  });

  $("rejoin-submit").addEventListener("click", async () => {
    const code = $("join-code").value.replace(/\D/g, "");
    const nickname = $("rejoin-nickname").value.trim();
    const rejoinCode = $("rejoin-code").value.trim();
    const error = $("join-error");
    if (!/^\d{6}$/.test(code)) { error.textContent = "Type the game PIN (6 digits) above."; $("join-code").focus(); return; }
    if (!nickname) { error.textContent = "Type the nickname you played with."; $("rejoin-nickname").focus(); return; }
    if (!rejoinCode) { error.textContent = "Type your rejoin code."; $("rejoin-code").focus(); return; }
    error.textContent = "";
    await joinFromForm(() => rejoin(code, nickname, rejoinCode), $("rejoin-submit"), "Rejoining…",
      { repeatable: false });
  });

  // The account's error goes once the fields it asks for are right (it stayed beside a good password).
  for (const field of ["player-username", "player-password", "player-create"]) {
    $(field).addEventListener("input", () => {
      const error = $("join-error");
      if (error.textContent === ACCOUNT_NEEDED && (accountReady() || !$("player-create").checked)) error.textContent = "";
    });
  }

  $("player-create").addEventListener("change", (event) => {
    $("player-password").autocomplete = event.target.checked ? "new-password" : "current-password";
  });

  $("join-code").addEventListener("input", (event) => {
    event.target.value = event.target.value.replace(/\D/g, "").slice(0, 6);
  });

  return showJoin;
}
