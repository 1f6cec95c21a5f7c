"""A room's frames written from one loop over its sockets, on real socket pairs: no sender is woken for a
socket that takes the frame, and a socket whose peer reads nothing delays nobody and is dropped past its
bound."""
from __future__ import annotations

import json
import socket
import threading
import uuid
from types import SimpleNamespace

from app.web.rooms.connection import Connection
from app.web.rooms.frames import frame_trier, frame_writer, text_frame
from app.web.rooms.room import Room, RoomDelivery, RoomReads
from tests.helpers import wait_until

# 100 frames of about 470 bytes fit in a socket pair's default kernel buffer (about 167 do) even if the
# fast peers' readers get no CPU during the broadcast, as on a loaded machine: a fast socket is one whose
# buffer has room, whatever the scheduler does.
MESSAGES = 100


class Peer:
    """The client end of a socket pair, reading everything it is sent (unless it is the slow one)."""

    def __init__(self, reads: bool):
        self.server, self.client = socket.socketpair()
        if not reads:  # small buffers: they fill after a few frames
            self.server.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
            self.client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.received = bytearray()
        self.writes_through_sender = 0
        if reads:
            threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        while chunk := self.client.recv(65536):
            self.received += chunk

    def connection(self, session_id: uuid.UUID, max_buffered: int) -> Connection:
        ws = SimpleNamespace(sock=self.server, connected=True, close_reason=None, close_message=None)
        write = frame_writer(ws)

        def through_sender(text):
            self.writes_through_sender += 1
            write(text)

        return Connection(through_sender, session_id, participant_id=None, max_buffered=max_buffered,
                          on_drop=lambda kind: None, on_sent=lambda kind: None, try_send=frame_trier(ws))


def test_frames_are_written_by_the_broadcast_itself_and_a_slow_socket_delays_nobody():
    session_id = uuid.uuid4()
    fast = [Peer(reads=True) for _ in range(3)]
    slow = Peer(reads=False)
    room = Room(session_id, "room", "0-0")
    connections = {peer: peer.connection(session_id, max_buffered=16) for peer in [*fast, slow]}
    for connection in connections.values():
        room.connections.add(connection)
        connection.start_sender()
    delivery = RoomDelivery(RoomReads(top=None, question_results=None, snapshot=None), threading.Lock(),
                            threading.Event(), errors=None)

    # 47 KB in all: within a fast socket's kernel buffer, whether or not its reader gets to run.
    messages = [{"type": "question_extended", "seq": i, "pad": "x" * 450} for i in range(MESSAGES)]
    for message in messages:
        delivery.broadcast(room, message)

    expected = b"".join(text_frame(json.dumps(m, separators=(",", ":"))) for m in messages)
    for peer in fast:
        wait_until(lambda peer=peer: len(peer.received) >= len(expected), "every frame reaches a fast socket")
        assert bytes(peer.received) == expected  # whole frames, in order
    # The slow socket's kernel buffer filled, the rest queued until its bound, and then it was dropped.
    assert not connections[slow].is_open and connections[slow].dropped == 1
    # A fast socket took each frame when the broadcast wrote it: its sender never woke to write one.
    assert [peer.writes_through_sender for peer in fast] == [0, 0, 0]
    for peer, connection in connections.items():
        connection.close()
        peer.client.close()  # the slow socket's sender, stuck writing, stops


def test_a_socket_whose_write_fails_unexpectedly_closes_and_the_broadcast_goes_on_to_the_others():
    session_id = uuid.uuid4()
    room = Room(session_id, "room", "0-0")
    sent: list[bytes] = []

    def broken(frame: bytes) -> int:
        raise ValueError("a bug of the transport")

    def taking(frame: bytes) -> int:
        sent.append(frame)
        return len(frame)

    connections = [Connection(lambda text: None, session_id, participant_id=None, max_buffered=4,
                              on_drop=lambda kind: None, on_sent=lambda kind: None, try_send=try_send)
                   for try_send in (broken, taking, broken, taking)]
    for connection in connections:
        connection.start_sender()
        room.connections.add(connection)
    delivery = RoomDelivery(RoomReads(top=None, question_results=None, snapshot=None), threading.Lock(),
                            threading.Event(), errors=None)
    delivery.broadcast(room, {"type": "question_extended", "seq": 1})
    assert len(sent) == 2
    assert [c.is_open for c in connections] == [False, True, False, True]
    for connection in connections:
        connection.finish()
