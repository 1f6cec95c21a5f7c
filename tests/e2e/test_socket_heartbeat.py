"""One heartbeat per web process pings every socket and closes the ones that stopped answering (the
WebPair runs with a ping every 0.3 s and a silence of 6 s closing a socket): a phone that lost its
network is closed by the server, while a client that answers pings (every browser and WebSocket library
does by itself) stays, sending nothing of its own."""
from __future__ import annotations

import struct
import threading
import uuid

import websocket

from app.quiz.board.keys import SessionKeys
from tests.e2e.conftest import WebPair, as_address, new_address
from tests.e2e.room_client import SocketClient, ticket_for
from tests.helpers import WAIT_S, Api, HttpClient, wait_until

CLOSE_SILENT = 4408


class DeafClient:
    """A room socket that reads frames but never answers a ping: a phone whose network went away."""

    def __init__(self, url: str, **options):
        self.ws = websocket.create_connection(url, timeout=WAIT_S, **options)
        self.pings = 0
        self.close_code: int | None = None
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                frame = self.ws.recv_frame()  # the raw frame: no automatic pong
            except Exception:
                return
            if frame.opcode == websocket.ABNF.OPCODE_PING:
                self.pings += 1
            elif frame.opcode == websocket.ABNF.OPCODE_CLOSE:
                if len(frame.data) >= 2:
                    self.close_code = struct.unpack("!H", frame.data[:2])[0]
                return

    def wait_closed(self) -> int | None:
        self._reader.join(WAIT_S)
        return self.close_code


def test_a_socket_that_stops_answering_pings_is_closed_and_one_that_answers_stays(web_pair: WebPair,
                                                                                  redis_client):
    http = Api(HttpClient(web_pair.url(0)))
    host = http.host()
    session = http.live_session(host)
    player = http.join(session["id"], http.guest())
    room = f"{web_pair.ws_url(0)}/ws/sessions/{session['id']}?ticket="
    listening = SocketClient(room + ticket_for(web_pair.ws_url(0), session["id"], host.token),
                             header=as_address(new_address()))
    deaf = DeafClient(room + ticket_for(web_pair.ws_url(0), session["id"], player.token),
                      header=as_address(new_address()))
    try:
        listening.wait_type("snapshot")
        # While the player's socket is there, every process can read that their seat is in use.
        presence = SessionKeys.of(uuid.UUID(session["id"])).presence
        wait_until(lambda: redis_client.zscore(presence, player.participant_id) is not None,
                   "the player's socket was never noted as present")
        assert deaf.wait_closed() == CLOSE_SILENT
        # Closed: the seat is free for another device at once.
        wait_until(lambda: redis_client.zscore(presence, player.participant_id) is None,
                   "the closed socket's player still looks present")
        assert deaf.pings > 1  # pinged more than once before it was given up
        # The host's socket answered every ping (and sent nothing else): it is still in the room.
        http.next_question(session["id"], host)
        listening.wait_type("question_opened")
        assert listening.close_code is None
    finally:
        listening.close()
        deaf.ws.close()
