"""CPU per socket of a question's close as a room builds and offers it, without sockets, stores or load:
`python -m tests.bench.close_frames --sockets 2000 --closes 50`.

Every socket is a player with a result (the close's personal part) and a kernel buffer that takes every
frame at once, so what is timed is the close's own loop: each player's part encoded and framed, and the
frame offered. The reads are in-memory fakes: a close's reads are timed by bench 3, not here.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
import uuid

from app.web.rooms.connection import Connection
from app.web.rooms.hub import RoomHub
from app.web.rooms.room import Room, RoomReads


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sockets", type=int, default=2000)
    parser.add_argument("--closes", type=int, default=50)
    args = parser.parse_args()
    session_id, question = uuid.uuid4(), str(uuid.uuid4())
    players = [uuid.uuid4() for _ in range(args.sockets)]
    board = {"session_id": str(session_id), "version": 1, "total_players": args.sockets,
             "entries": [{"rank": i + 1, "participant_id": str(players[i]), "nickname": f"p{i}",
                          "score": 1000 - i} for i in range(10)]}
    results = {pid: {"participant_id": str(pid), "score": 500 + n, "rank": n + 1, "streak": n % 4,
                     "answered": n % 5 != 0, "choice": None if n % 5 == 0 else n % 4,
                     "correct": n % 3 == 0, "points": 0 if n % 3 else 600, "streak_bonus": 0}
               for n, pid in enumerate(players)}
    hub = RoomHub(redis_client=None, reads=RoomReads(top=lambda s, n: board,
                                                     question_results=lambda s, q, ids: results,
                                                     snapshot=lambda s, p: ({}, {})), interval_s=0.1)
    room = Room(session_id, "room", "0-0")
    written = [0]

    def take(frame) -> int:
        written[0] += len(frame)
        return len(frame)

    for pid in players:
        connection = Connection(take, session_id, participant_id=pid, max_buffered=64,
                                on_drop=lambda kind: None, on_sent=lambda kind: None, try_send=take)
        connection._started = True  # as after its snapshot went out: frames are written, not queued
        room.connections.add(connection)
    per_close = []
    for _ in range(args.closes):
        board["version"] += 1
        start = time.process_time()
        hub.delivery.dispatch(room, {"type": "question_closed", "question_id": question, "position": 0,
                                     "correct_choice": 1, "choice_counts": [0, args.sockets, 0, 0],
                                     "reason": "host"})
        per_close.append(time.process_time() - start)
    median = statistics.median(per_close)
    print(json.dumps({"sockets": args.sockets, "closes": args.closes,
                      "cpu_ms_per_close_median": round(median * 1000, 2),
                      "cpu_us_per_socket_median": round(median * 1e6 / args.sockets, 2),
                      "cpu_ms_per_close_min": round(min(per_close) * 1000, 2),
                      "bytes_per_close": written[0] // args.closes}))


if __name__ == "__main__":
    main()
