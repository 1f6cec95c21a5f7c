"""The live-room protocol over a real WebSocket against the running stack."""
from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import text

from tests.e2e.conftest import WebPair, as_address, new_address
from tests.e2e.room_client import RoomClient, SocketClient, ticket_for
from tests.helpers import Api, HttpClient, sample_questions


@pytest.fixture()
def http(live_stack) -> Api:
    return Api(HttpClient(live_stack.base_url))


def room(live_stack, session_id, player) -> RoomClient:
    return RoomClient(live_stack.ws_url, session_id, player.token)


def scores_in_postgres(engine, session_id) -> dict[str, int]:
    with engine.connect() as connection:
        return {str(pid): score for pid, score in connection.execute(text(
            "SELECT id, score FROM quiz_session_participants WHERE quiz_session_id = :s"), {"s": session_id})}


def test_snapshot_comes_first_for_host_and_player(live_stack, http: Api):
    host = http.host()
    sid = http.live_session(host)["id"]
    player = http.join(sid, http.guest("Ann"))
    host_room, player_room = room(live_stack, sid, host), room(live_stack, sid, player)
    try:
        first = host_room.wait_for(lambda m: True)
        assert first["type"] == "snapshot" and first["role"] == "host" and "you" not in first
        assert first["session"]["id"] == sid and first["session"]["status"] == "lobby"
        assert first["leaderboard"]["total_players"] == 1
        mine = player_room.wait_for(lambda m: True)
        assert mine["type"] == "snapshot" and mine["role"] == "player"
        assert mine["you"]["participant_id"] == player.participant_id
        assert (mine["you"]["score"], mine["you"]["rank"], mine["you"]["streak"]) == (0, 1, 0)
        assert "answer" not in mine["you"] and "previous" not in mine["you"]  # no question yet
        player_room.send({"type": "ping"})
        assert player_room.wait_type("pong")
        player_room.send("not json")
        player_room.send({"type": "answer", "choice": 1})  # no question
        player_room.send({"type": "dance"})
        errors = [player_room.wait_for(lambda m, code=code: m["type"] == "error" and m["code"] == code)
                  for code in ("invalid_json", "invalid_message", "unknown_message")]
        assert len(errors) == 3
        player_room.send({"type": "ping"})  # the socket still answers after bad messages
        player_room.wait_for(lambda m: len(player_room.of_type("pong")) == 2)
    finally:
        host_room.close()
        player_room.close()


def test_refusals_use_close_codes(live_stack, http: Api):
    host = http.host()
    sid = http.live_session(host)["id"]
    bad_ticket = RoomClient(live_stack.ws_url, sid, query="ticket=not-a-ticket")
    assert bad_ticket.wait_closed() == 4401
    # An access token never belongs in a URL: the room refuses it even when it is valid.
    token_in_url = RoomClient(live_stack.ws_url, sid, query=f"access_token={host.token}")
    assert token_in_url.wait_closed() == 4401 and "ticket" in token_in_url.close_reason
    outsider = http.guest()
    refused = http.post("/api/v1/ws-tickets", {"session_id": sid}, token=outsider.token)
    assert refused.status_code == 403 and refused.get_json()["error"]["code"] == "not_in_session"
    assert bad_ticket.messages == [] and token_in_url.messages == []


def test_a_ticket_opens_one_socket_of_its_own_session_once(live_stack, http: Api):
    host = http.host()
    sid = http.live_session(host)["id"]
    other = http.live_session(host)["id"]
    ticket = ticket_for(live_stack.ws_url, sid, host.token)
    first = RoomClient(live_stack.ws_url, sid, query=f"ticket={ticket}")
    assert first.wait_type("snapshot")["session"]["id"] == sid
    again = RoomClient(live_stack.ws_url, sid, query=f"ticket={ticket}")
    assert again.wait_closed() == 4401
    elsewhere = RoomClient(live_stack.ws_url, other,
                           query=f"ticket={ticket_for(live_stack.ws_url, sid, host.token)}")
    assert elsewhere.wait_closed() == 4401
    first.close()


def test_a_new_socket_of_a_player_beyond_the_allowance_closes_the_oldest(live_stack, http: Api):
    host = http.host()
    sid = http.live_session(host)["id"]
    player = http.join(sid, http.guest())
    allowed = live_stack.config.ws_max_per_participant
    sockets = []
    for _ in range(allowed + 1):
        sockets.append(room(live_stack, sid, player))
        sockets[-1].wait_type("snapshot")
    assert sockets[0].wait_closed() == 4409
    for newer in sockets[1:]:
        newer.send({"type": "ping"})
        assert newer.wait_type("pong") and newer.close_code is None
        newer.close()


def test_an_oversized_message_gets_an_error_and_the_socket_stays_open(live_stack, http: Api):
    host = http.host()
    sid = http.live_session(host)["id"]
    watch = room(live_stack, sid, host)
    watch.wait_type("snapshot")
    watch.send(json.dumps({"type": "ping", "padding": "x" * 5000}))
    assert watch.wait_type("error")["code"] == "message_too_large"
    watch.send({"type": "ping"})
    assert watch.wait_type("pong") and watch.close_code is None
    watch.close()


def test_the_open_questions_points_stay_hidden_until_it_closes(live_stack, http: Api):
    """Three guests: two answer 0 and 2, the third reads every board it can while the question is
    open and learns nothing; the close shows every point at once, in one board version."""
    host = http.host()
    sid = http.live_session(host, sample_questions(1, time_limit_s=60))["id"]  # choice 0 is right
    right, wrong, other_right, spy = (http.join(sid, http.guest()) for _ in range(4))
    spying = room(live_stack, sid, spy)
    spying.wait_type("snapshot")
    question = http.next_question(sid, host)
    spying.wait_type("question_opened")
    receipts = [http.answer(sid, p, question["question_id"], c).get_json()
                for p, c in ((right, 0), (wrong, 2), (other_right, 0))]
    assert all(set(r) == {"answer_id", "question_id", "choice", "answered_ms"} for r in receipts)
    around = http.get(f"/api/v1/sessions/{sid}/leaderboard/{spy.participant_id}", token=spy.token,
                      expect=200, around=5).get_json()
    page = http.get(f"/api/v1/sessions/{sid}/leaderboard", token=spy.token, expect=200).get_json()
    assert {e["score"] for e in around["entries"]} == {0} and {e["score"] for e in page["entries"]} == {0}
    assert page["total_players"] == 4
    # A socket opened now sees the same: its snapshot shows nobody's points, nor the answer.
    late = room(live_stack, sid, right)
    snapshot = late.wait_type("snapshot")
    assert {e["score"] for e in snapshot["leaderboard"]["entries"]} == {0}
    assert (snapshot["you"]["score"], snapshot["you"]["streak"]) == (0, 0)
    assert "correct_choice" not in snapshot["session"]["current_question"]
    late.close()

    http.close_question(sid, host)
    closed = spying.wait_type("question_closed")
    assert closed["choice_counts"][:3] == [2, 0, 1]
    board = closed["leaderboard"]  # the close's one frame carries the board after it
    # The first board with any points has all of them: they arrived in one version, not one by one.
    scores = {e["participant_id"]: e["score"] for e in board["entries"]}
    assert scores[right.participant_id] > 0 and scores[other_right.participant_id] > 0
    assert scores[wrong.participant_id] == 0 and scores[spy.participant_id] == 0
    before_close = [m for m in spying.messages if m["_received"] < closed["_received"]]
    assert all(e["score"] == 0 for m in before_close if m["type"] == "leaderboard" for e in m["entries"])
    spying.close()


def test_rooms_are_isolated(live_stack, http: Api):
    host_a, host_b = http.host(), http.host()
    sid_a, sid_b = http.live_session(host_a)["id"], http.live_session(host_b)["id"]
    players_b = [http.join(sid_b, http.guest()) for _ in range(2)]
    watch_b = room(live_stack, sid_b, host_b)
    watch_b.wait_type("snapshot")
    players_a = [http.join(sid_a, http.guest()) for _ in range(3)]
    watch_a = room(live_stack, sid_a, host_a)
    question = http.next_question(sid_a, host_a)
    for player in players_a:
        http.answer(sid_a, player, question["question_id"], 0)
    # Every player answered: it closes by itself. A's last message is the close, which carries the board
    # with its points; a join in B after it is B's last. Whatever of A reached B's sockets by mistake
    # would have come before it.
    closed = watch_a.wait_type("question_closed")
    assert any(e["score"] > 0 for e in closed["leaderboard"]["entries"])
    last_of_b = http.join(sid_b, http.guest())
    players_b.append(last_of_b)
    watch_b.wait_for(lambda m: m["type"] == "player_joined"
                     and m["participant_id"] == last_of_b.participant_id)
    a_ids = {p.participant_id for p in players_a} | {sid_a, question["question_id"]}
    for message in watch_b.messages:
        assert not any(value in str(message) for value in a_ids), message
        if message["type"] == "player_joined":  # B's own joins may still be on their way
            assert message["participant_id"] in {p.participant_id for p in players_b}
        else:
            assert message["type"] in {"snapshot", "leaderboard"}, message
    assert {p.participant_id for p in players_b}.isdisjoint(str(watch_a.messages))
    watch_a.close()
    watch_b.close()


def test_leaderboard_pushes_are_coalesced_and_end_on_the_newest_state(live_stack, http: Api, engine):
    host = http.host()
    sid = http.live_session(host)["id"]
    watch = room(live_stack, sid, host)
    watch.wait_type("snapshot")
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=16) as pool:  # 120 joins, each of which moves the board
        players = list(pool.map(lambda _: http.join(sid, http.guest()), range(120)))
    final = watch.wait_for(lambda m: m["type"] == "leaderboard" and m["total_players"] == 120)
    elapsed = final["_received"] - started
    boards = [m for m in watch.of_type("leaderboard") if m["_received"] <= final["_received"]]
    interval_s = live_stack.config.leaderboard_interval_ms / 1000
    # Two web workers may each serve the room's sockets, but one socket sees at most one push per interval.
    assert len(boards) <= elapsed / interval_s + 2, (len(boards), elapsed)
    assert len(boards) < len(players)
    versions = [m["version"] for m in boards]
    assert versions == sorted(set(versions)), "versions must strictly increase on a connection"
    watch.close()


def test_reconnect_keeps_score_and_streak(live_stack, http: Api, engine):
    host = http.host()
    sid = http.live_session(host, sample_questions(3))["id"]
    player = http.join(sid, http.guest())
    http.join(sid, http.guest())  # a second player keeps questions from closing early
    for _ in range(2):
        question = http.next_question(sid, host)
        http.answer(sid, player, question["question_id"], question["position"] % 4)
    http.close_question(sid, host)  # both questions' points are visible now
    first = room(live_stack, sid, player)
    first.wait_type("snapshot")
    first.close()
    again = room(live_stack, sid, player)
    snapshot = again.wait_type("snapshot")
    score = scores_in_postgres(engine, sid)[player.participant_id]
    assert score > 2000
    assert (snapshot["you"]["score"], snapshot["you"]["streak"]) == (score, 2)
    # Past the lobby, the snapshot carries the player's answer to the current question and the one before.
    assert (snapshot["you"]["answer"]["choice"], snapshot["you"]["answer"]["correct"]) == (1, True)
    assert (snapshot["you"]["previous"]["position"], snapshot["you"]["previous"]["correct"]) == (0, True)
    again.close()


def test_question_closes_by_itself_at_the_deadline(live_stack, http: Api, engine):
    host = http.host()
    sid = http.live_session(host, sample_questions(1, time_limit_s=5))["id"]
    player = http.join(sid, http.guest())
    watch = room(live_stack, sid, player)
    watch.wait_type("snapshot")
    opened = http.next_question(sid, host)
    closed = watch.wait_type("question_closed")
    assert closed["reason"] == "deadline" and closed["question_id"] == opened["question_id"]
    assert closed["you"] == {"correct": False, "points": 0, "score": 0, "rank": 1, "streak": 0,
                             "streak_bonus": 0, "answered": False, "answer": None}
    watch.close()


def test_question_closes_when_everyone_answered_exactly_once(live_stack, http: Api, engine):
    host = http.host()
    sid = http.live_session(host, sample_questions(1, time_limit_s=60))["id"]
    players = [http.join(sid, http.guest()) for _ in range(4)]
    watchers = [room(live_stack, sid, p) for p in players] + [room(live_stack, sid, host)]
    for watcher in watchers:
        watcher.wait_type("snapshot")
    question = http.next_question(sid, host)
    for i, player in enumerate(players):
        http.answer(sid, player, question["question_id"], 0 if i < 3 else 1)
    closes = [w.wait_type("question_closed") for w in watchers]
    assert {c["reason"] for c in closes} == {"all_answered"}
    assert closes[0]["choice_counts"] == [3, 1, 0, 0]
    assert [c["you"]["correct"] for c in closes[:4]] == [True, True, True, False]
    assert "you" not in closes[4]
    # Once the game has ended, no close can come (the end and a close take the same row lock), and in
    # each room the end comes after every close.
    http.post(f"/api/v1/sessions/{sid}/end", token=host.token, expect=200)
    for watcher in watchers:
        watcher.wait_type("session_ended")
    with engine.connect() as connection:
        assert connection.execute(text(
            "SELECT count(*) FROM events WHERE aggregate_id = :s AND event_type = 'question_closed'"),
            {"s": sid}).scalar() == 1
    assert all(len(w.of_type("question_closed")) == 1 for w in watchers)
    for watcher in watchers:
        watcher.close()


def test_a_session_plays_to_the_podium(live_stack, http: Api, engine):
    host = http.host()
    sid = http.live_session(host, sample_questions(2))["id"]
    players = [http.join(sid, http.guest(f"racer{i}")) for i in range(6)]
    watch = room(live_stack, sid, players[0])
    watch.wait_type("snapshot")
    for _ in range(2):
        question = http.next_question(sid, host)
        opened = watch.wait_for(lambda m, question=question: m["type"] == "question_opened"
                                and m["question_id"] == question["question_id"])
        assert "correct_choice" not in opened and opened["choices"] == ["red", "green", "blue", "gold"]
        for i, player in enumerate(players):
            http.answer(sid, player, question["question_id"], question["position"] % 4 if i % 2 == 0 else 3)
        watch.wait_for(lambda m, question=question: m["type"] == "question_closed"
                       and m["question_id"] == question["question_id"])
    http.post(f"/api/v1/sessions/{sid}/end", token=host.token, expect=200)
    ended = watch.wait_type("session_ended")
    expected = sorted(scores_in_postgres(engine, sid).items(), key=lambda kv: -kv[1])[:5]
    assert [e["score"] for e in ended["podium"]] == [score for _, score in expected]
    assert [e["rank"] for e in ended["podium"]] == [1, 2, 3, 4, 5]
    watch.close()


def _host_socket(pair: WebPair, index: int, session_id: str, host) -> SocketClient:
    ticket = ticket_for(pair.ws_url(index), session_id, host.token)
    return SocketClient(f"{pair.ws_url(index)}/ws/sessions/{session_id}?ticket={ticket}",
                        header=as_address(new_address()))


def test_the_hosts_answer_count_counts_every_player_whichever_process_serves_it(live_stack, http: Api,
                                                                                web_pair: WebPair):
    """"N of M answered" counts the players on the board, not the joins one web process happened to see:
    players who joined before any socket of the room opened count, on each of two processes serving the
    host's sockets (the second opened after every join), and a removed player stops counting."""
    host = http.host()
    sid = http.live_session(host, sample_questions(1, time_limit_s=60))["id"]
    early = [http.join(sid, http.guest()) for _ in range(2)]  # before any socket of the room opened
    first = _host_socket(web_pair, 0, sid, host)
    first.wait_type("snapshot")
    late = http.join(sid, http.guest())
    first.wait_for(lambda m: m["type"] == "player_joined" and m["participant_id"] == late.participant_id)
    second = _host_socket(web_pair, 1, sid, host)  # its process saw no join at all
    try:
        second.wait_type("snapshot")
        question = http.next_question(sid, host)["question_id"]
        http.answer(sid, early[0], question, 0)
        for socket in (first, second):
            count = socket.wait_type("answer_count")
            assert (count["question_id"], count["answered"], count["player_count"]) == (question, 1, 3)
        http.delete(f"/api/v1/sessions/{sid}/participants/{early[1].participant_id}", token=host.token,
                    expect=200)
        http.answer(sid, late, question, 1)
        for socket in (first, second):
            count = socket.wait_for(lambda m: m["type"] == "answer_count" and m["answered"] == 2)
            assert count["player_count"] == 2
    finally:
        first.close()
        second.close()
