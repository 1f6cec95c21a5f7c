"""The room fan-out without services: buffers, version order, isolation and coalescing."""
from __future__ import annotations

import json
import threading
import time
import uuid

from app.web.rooms.connection import Connection
from app.web.rooms.hub import RoomHub
from app.web.rooms.leaderboards import LeaderboardChannel, LeaderboardReads, Watch
from app.web.rooms.room import Room
from tests.helpers import wait_until
from tests.unit.rooms_support import FakeReads, make_connection, message_of


def test_an_overflowing_buffer_counts_the_drop_and_closes_the_socket_for_a_fresh_snapshot():
    dropped, closed, sent = [], [], []
    connection = Connection(sent.append, uuid.uuid4(), participant_id=None, max_buffered=3,
                            on_drop=dropped.append, on_sent=lambda kind: None,
                            close=lambda code, reason: closed.append(code))
    results = [connection.offer("player_joined", "{}") for _ in range(5)]
    assert results == [True, True, True, False, False]
    assert dropped == ["player_joined"] and not connection.is_open
    connection.run_sender()
    assert closed == [4408] and sent == []


def test_a_queued_leaderboard_is_replaced_by_the_newer_one():
    sent = []
    connection = make_connection(uuid.uuid4(), sent, max_buffered=2)
    for version in range(1, 50):
        connection.offer_leaderboard(version, f"board {version}")
    connection.offer("question_opened", "q")
    connection.close()
    connection.run_sender()
    assert sent == ["board 49", "q"]


def test_the_snapshot_goes_first_and_leaderboards_it_covers_are_dropped():
    sent = []
    connection = make_connection(uuid.uuid4(), sent)
    connection.offer_leaderboard(4, "board 4")
    connection.offer("player_joined", "joined")
    connection.offer_snapshot(5, "snapshot")
    connection.offer_leaderboard(5, "board 5 again")
    connection.offer_leaderboard(6, "board 6")
    connection.close()
    connection.run_sender()
    assert sent == ["snapshot", "joined", "board 6"]


def test_leaderboard_versions_only_move_forward_on_a_connection():
    sent = []
    connection = make_connection(uuid.uuid4(), sent)
    assert [connection.offer_leaderboard(v, str(v)) for v in (3, 2, 3, 5, 4)] == [
        True, False, False, True, False]
    connection.close()
    connection.run_sender()
    assert sent == ["5"]  # 5 replaced the queued 3 before the sender ran


def test_a_slow_client_does_not_delay_the_others():
    release = threading.Event()
    slow_sent, fast_sent = [], []

    def slow_send(text):
        release.wait(5)
        slow_sent.append(text)

    session_id = uuid.uuid4()
    slow = Connection(slow_send, session_id, participant_id=None, max_buffered=2, on_drop=lambda k: None,
                      on_sent=lambda k: None)
    fast = make_connection(session_id, fast_sent)
    for connection in (slow, fast):
        threading.Thread(target=connection.run_sender, daemon=True).start()
    for i in range(5):
        slow.offer("x", str(i))
        fast.offer("x", str(i))
    deadline = time.monotonic() + 5
    while len(fast_sent) < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert fast_sent == ["0", "1", "2", "3", "4"] and slow_sent == []
    assert slow.dropped == 1 and not slow.is_open
    release.set()
    slow.close()
    fast.close()


def test_a_rebuilt_board_resyncs_every_socket_of_its_room_after_what_it_was_sent():
    """Events a rebuild's snapshot covered arrive as duplicates and notify nobody: the room's sockets
    get a fresh snapshot instead, one read for the whole room."""
    fake = FakeReads()
    hub = RoomHub(redis_client=None, reads=fake.reads(), interval_s=0.05)
    room_id, player_id = uuid.uuid4(), uuid.uuid4()
    sent_host, sent_player = [], []
    host = Connection(sent_host.append, room_id, participant_id=None, is_host=True, max_buffered=8,
                      on_drop=lambda kind: None, on_sent=lambda kind: None)
    player = make_connection(room_id, sent_player, participant_id=player_id)
    room = Room(room_id, "a", "0-0", {host, player})
    hub.rooms = {room_id: room}
    player.offer("player_joined", "older")
    hub.delivery.resync(room, rebuilt_version=1)
    # A leaderboard the snapshot already covers is never sent after it; a newer one is.
    assert player.offer_leaderboard(fake.version, "stale") is False
    assert player.offer_leaderboard(fake.version + 1, "newer") is True
    for connection in (host, player):
        connection.close()
        connection.run_sender()
    assert fake.snapshot_calls == [[player_id]]
    host_snapshot = json.loads(sent_host[0])
    assert (host_snapshot["type"], host_snapshot["role"], host_snapshot["session"]["player_count"]) == (
        "snapshot", "host", 3)
    assert "you" not in host_snapshot
    assert sent_player[0] == "older"
    player_snapshot = json.loads(sent_player[1])
    assert player_snapshot["role"] == "player" and player_snapshot["you"]["participant_id"] == str(player_id)
    assert sent_player[2:] == ["newer"]


def test_a_resync_skips_sockets_already_as_new_as_the_rebuild_and_a_later_rebuild_covers_an_earlier():
    """A reconnect wave after Redis lost a board: sockets that joined after the rebuild hold a snapshot
    that covers it, and of several rebuilds queued for a room only the last resyncs it."""
    fake = FakeReads()
    hub = RoomHub(redis_client=None, reads=fake.reads(), interval_s=60)
    room_id, old_id, new_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    sent_old, sent_new = [], []
    old = make_connection(room_id, sent_old, participant_id=old_id)
    new = make_connection(room_id, sent_new, participant_id=new_id)
    new.offer_snapshot(5, "snapshot at 5")
    room = Room(room_id, "a", "0-0", {old, new})
    hub.rooms = {room_id: room}
    room.inbox.extend([{"type": "board_rebuilt", "version": "4"}, {"type": "board_rebuilt", "version": "5"}])
    room.delivering = True
    hub.delivery.deliver(room)
    assert fake.snapshot_calls == [[old_id]]
    for connection in (old, new):
        connection.close()
        connection.run_sender()
    assert [json.loads(text)["type"] for text in sent_old] == ["snapshot"]
    assert sent_new == ["snapshot at 5"]


def test_a_burst_becomes_one_leaderboard_read_per_room_per_interval_and_rooms_stay_apart():
    """The ticker's rounds on a clock of the test's: what they read follows from what moved and when, not
    from how fast the machine runs a thread."""
    fake = FakeReads()
    hub = RoomHub(redis_client=None, reads=fake.reads(), interval_s=60)
    now = [1000.0]
    hub.ticker.clock = lambda: now[0]
    room_a, room_b = uuid.uuid4(), uuid.uuid4()
    sent_a, sent_b = [], []
    conn_a, conn_b = make_connection(room_a, sent_a), make_connection(room_b, sent_b)
    hub.rooms = {room_a: Room(room_a, "a", "0-0", {conn_a}), room_b: Room(room_b, "b", "0-0", {conn_b})}
    for _ in range(2000):
        hub.delivery.dispatch(hub.rooms[room_a], {"type": "answer_scored"})
    assert hub.ticker.tick() == 60  # nothing left to push: the next round waits a whole interval
    now[0] += 10
    hub.ticker.tick()
    assert fake.top_calls == [room_a], "a burst is read once, not once per answer"
    hub.delivery.dispatch(hub.rooms[room_a], {"type": "answer_scored"})
    assert hub.ticker.tick() == 50  # pushed 10 s ago: due when the interval is up
    assert fake.top_calls == [room_a]
    now[0] += 50
    hub.ticker.tick()
    assert fake.top_calls == [room_a, room_a], "one read per interval per room"
    for connection in (conn_a, conn_b):
        connection.close()
        connection.run_sender()
    assert len(sent_a) == 1 and json.loads(sent_a[0])["entries"][0]["participant_id"] == str(room_a)
    assert sent_b == []


def test_a_slow_read_for_one_room_delays_no_other_room():
    """The close of a question reads every player's result from PostgreSQL: while that read hangs for
    room A, room B's notifications still go out, and A's next notification waits behind its close."""
    release = threading.Event()
    reads = FakeReads().reads()

    def slow_results(session_id, question_id, participant_ids):
        release.wait(10)
        return {}

    reads.question_results = slow_results
    hub = RoomHub(redis_client=None, reads=reads, interval_s=0.05)
    room_a, room_b = uuid.uuid4(), uuid.uuid4()
    sent_a, sent_b = [], []
    conn_a, conn_b = make_connection(room_a, sent_a), make_connection(room_b, sent_b)
    hub.rooms = {room_a: Room(room_a, "a", "0-0", {conn_a}), room_b: Room(room_b, "b", "0-0", {conn_b})}
    question = str(uuid.uuid4())
    hub.delivery.hand_over(hub.rooms[room_a], [{"type": "question_closed", "question_id": question},
                                               {"type": "question_opened", "question_id": str(uuid.uuid4())}])
    hub.delivery.hand_over(hub.rooms[room_b], [{"type": "question_extended", "question_id": question}])
    threading.Thread(target=conn_b.run_sender, daemon=True).start()
    threading.Thread(target=conn_a.run_sender, daemon=True).start()
    wait_until(lambda: sent_b, "room B's notification waited for room A's read")
    assert sent_a == []
    release.set()
    wait_until(lambda: len(sent_a) == 2, "room A's notifications did not go out after its read")
    assert [message_of(m)["type"] for m in sent_a] == ["question_closed", "question_opened"]
    conn_a.close()
    conn_b.close()


class FakeBoard:
    """A board read by the live boards: entries best first, a version bumped by every change."""

    def __init__(self, scores: dict[str, int]):
        self.scores = dict(scores)
        self.version = 1
        self.reads = 0

    def set(self, player: str, score: int) -> None:
        self.scores[player] = score
        self.version += 1

    def board_reads(self) -> LeaderboardReads:
        def top(board_id, period, n):
            self.reads += 1
            ranked = sorted(self.scores.items(), key=lambda item: -item[1])
            return {"period": period or "all", "starts_at": "2026-12-01T00:00:00+00:00", "ends_at": None,
                    "label": "All time", "version": self.version, "total": len(ranked),
                    "entries": [{"rank": i + 1, "player_id": p, "score": s}
                                for i, (p, s) in enumerate(ranked[:n])]}

        def standing(board_id, period, player):
            ranked = [p for p, _ in sorted(self.scores.items(), key=lambda item: -item[1])]
            return {"rank": ranked.index(player) + 1, "score": self.scores[player], "top_percent": 0.0} \
                if player in self.scores else None

        return LeaderboardReads(top=top, standing=standing)


class Offers:
    """Records what a live board offers a socket (a queued state of a kind would be replaced in place)."""

    def __init__(self):
        self.messages: list[dict] = []
        self.versions: dict[str, int] = {}

    def offer(self, kind, text):
        self.messages.append(json.loads(text))
        return True

    def offer_latest(self, kind, version, text):
        if version <= self.versions.get(kind, -1):
            return False
        self.versions[kind] = version
        self.messages.append(json.loads(text))
        return True


def test_each_watch_of_a_board_gets_only_the_changes_of_its_own_top():
    board = FakeBoard({f"p{i}": 100 * i for i in range(1, 8)})
    top2 = Watch(Offers(), "b", top=2, player_id="p1")
    top5 = Watch(Offers(), "b", top=5)
    channel = LeaderboardChannel("b", "lbroom:{b:b}", "0-0", {top2, top5})
    channel.push(board.board_reads())
    board.set("p3", 350)  # rank 5 moves within the top 5, below the top 2
    channel.push(board.board_reads())
    board.set("p1", 150)  # below both tops: only p1's standing moves
    channel.push(board.board_reads())
    board.set("p1", 1000)  # into both tops
    channel.push(board.board_reads())
    assert [m["type"] for m in top2.connection.messages] == [
        "leaderboard_update", "standing", "standing", "leaderboard_update", "standing"]
    updates = top5.connection.messages
    assert [[e["player_id"] for e in u["entries"]] for u in updates] == [
        ["p7", "p6", "p5", "p4", "p3"], ["p7", "p6", "p5", "p4", "p3"], ["p1", "p7", "p6", "p5", "p4"]]
    assert [u["entries"][4]["score"] for u in updates[:2]] == [300, 350]
    assert [u["version"] for u in updates] == [1, 2, 4]
    assert board.reads == 4  # one read per push, for every watch of the board


def test_a_new_player_below_the_top_updates_the_player_count():
    board = FakeBoard({"p1": 300, "p2": 200})
    watch = Watch(Offers(), "b", top=2)
    channel = LeaderboardChannel("b", "lbroom:{b:b}", "0-0", {watch})
    channel.push(board.board_reads())
    board.set("late", 10)  # third: the top 2 stays as it was
    channel.push(board.board_reads())
    updates = watch.connection.messages
    assert [(u["total"], [e["player_id"] for e in u["entries"]]) for u in updates] == [
        (2, ["p1", "p2"]), (3, ["p1", "p2"])]


def test_a_period_change_resets_what_was_sent_and_the_close_forwards_the_final_standings():
    board = FakeBoard({"ann": 5})
    watch = Watch(Offers(), "b", top=3)
    channel = LeaderboardChannel("b", "lbroom:{b:b}", "0-0", {watch})
    channel.push(board.board_reads())
    assert channel.note({"type": "period_closed", "period": "all", "entry_count": 1,
                         "top": [{"rank": 1, "player_id": "ann", "score": 5}]})
    assert channel.note({"type": "period_opened", "period": "next"}) and channel.period == "next"
    board.scores, board.version = {}, 1  # a new period starts its versions again
    channel.push(board.board_reads())
    messages = watch.connection.messages
    assert [(m["type"], m["period"]) for m in messages] == [
        ("leaderboard_update", "all"), ("period_closed", "all"), ("leaderboard_update", "next")]
    assert messages[1]["entries"][0]["player_id"] == "ann" and messages[2]["entries"] == []


def test_a_shared_frame_is_the_websocket_text_frame_of_its_message_at_every_length():
    """What a room writes to each socket must read back as the message in a real WebSocket client."""
    from wsproto.connection import Connection as WsConnection
    from wsproto.connection import ConnectionType
    from wsproto.events import TextMessage

    from app.web.rooms.frames import text_frame

    for text in ["", "{}", "é" * 70, "x" * 125, "x" * 126, "ü" * 40_000, "x" * 70_000]:
        client = WsConnection(ConnectionType.CLIENT)
        client.receive_data(text_frame(text))
        [event] = list(client.events())
        assert isinstance(event, TextMessage) and event.data == text and event.message_finished
    message = "{\"type\":\"leaderboard\"}"
    assert text_frame(message) is text_frame(message)  # one frame for every socket of the room


def test_a_notification_that_cannot_be_read_is_skipped_and_the_rest_still_move_their_boards():
    """One reader serves every room and board of a process: a bad note must not end it."""
    fake = FakeReads()
    hub = RoomHub(redis_client=None, reads=fake.reads(), interval_s=60)
    channel = LeaderboardChannel("b", "lbroom:{b:b}", "0-0", {Watch(Offers(), "b")})
    hub.boards = {"b": channel}
    hub._take([(b"lbroom:{b:b}", [(b"1-0", {b"type": b"board_changed", b"data": b"{not json"}),
                                  (b"2-0", {b"type": b"board_changed", b"data": b"[1, 2]"})])])
    assert channel.last_id == "2-0" and not channel.dirty
    hub._take([(b"lbroom:{b:b}", [(b"3-0", {b"type": b"board_changed", b"data": b"{not json"}),
                                  (b"4-0", {b"type": b"board_changed", b"version": b"7"})])])
    assert channel.last_id == "4-0" and channel.dirty
