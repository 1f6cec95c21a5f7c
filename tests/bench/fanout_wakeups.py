"""Greenlet switches, write syscalls and CPU per board change of one room, in a web worker's setting
(gevent), without the stack: `python -m tests.bench.fanout_wakeups --sockets 2000 --changes 20`.

The room's sockets are the server ends of socket pairs; a child process reads every client end (as
browsers would), so this process holds the server side only. Each change is a question's close as the
hub delivers it: the close's message(s) to every socket, then the ticker's round. Greenlet switches are
counted with `greenlet.settrace` while the changes run; run it under `strace -c -f` with `--changes 0`
and with `--changes N` and subtract for the syscalls per change.
"""
from __future__ import annotations

import argparse
import inspect
import json
import os
import resource
import selectors
import socket
import threading
import time
import uuid
from types import SimpleNamespace

import gevent
import greenlet
from gevent import monkey

from app.web.rooms import frames
from app.web.rooms.connection import Connection
from app.web.rooms.hub import RoomHub
from app.web.rooms.room import Room, RoomReads


def read_everything(fds: list[int]) -> None:
    """The child: read every client end until all are closed."""
    selector = selectors.DefaultSelector()
    for fd in fds:
        sock = socket.socket(fileno=fd)
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ)
    while selector.get_map():
        for key, _ in selector.select(1):
            try:
                if not key.fileobj.recv(1 << 16):
                    selector.unregister(key.fileobj)
            except BlockingIOError:
                pass
    os._exit(0)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sockets", type=int, default=2000)
    parser.add_argument("--changes", type=int, default=20)
    args = parser.parse_args()
    resource.setrlimit(resource.RLIMIT_NOFILE, (20_000, 20_000))
    session_id, question = uuid.uuid4(), str(uuid.uuid4())
    pairs = [socket.socketpair() for _ in range(args.sockets)]
    child = os.fork()
    if child == 0:
        for server, _ in pairs:
            server.close()
        read_everything([client.detach() for _, client in pairs])
    for _, client in pairs:
        client.close()

    version = [0]
    players = [uuid.uuid4() for _ in range(args.sockets)]

    def top(session, limit):
        return {"session_id": str(session), "version": version[0], "total_players": args.sockets,
                "entries": [{"rank": i + 1, "participant_id": str(players[i]), "nickname": f"p{i}",
                             "score": 1000 - i} for i in range(10)]}

    def results(session, question_id, ids):
        return {pid: {"participant_id": str(pid), "score": 500, "rank": 11, "streak": 1, "answered": True,
                      "choice": 1, "correct": True, "points": 500, "streak_bonus": 0} for pid in ids}

    hub = RoomHub(redis_client=None, reads=RoomReads(top=top, question_results=results,
                                                     snapshot=lambda s, p: ({}, {})), interval_s=0.1)
    room = Room(session_id, "room", "0-0")
    hub.rooms = {session_id: room}
    direct = "try_send" in inspect.signature(Connection).parameters
    for (server, _), pid in zip(pairs, players):
        ws = SimpleNamespace(sock=server, connected=True, close_reason=None, close_message=None)
        extra = {"try_send": frames.frame_trier(ws)} if direct else {}
        connection = Connection(frames.frame_writer(ws), session_id, participant_id=pid, max_buffered=64,
                                on_drop=lambda kind: None, on_sent=lambda kind: None, **extra)
        connection.start_sender()
        room.connections.add(connection)
    gevent.sleep(0.5)

    switches = [0]
    clock = [1000.0]
    hub.ticker.clock = lambda: clock[0]

    def count(event, args_):
        if event == "switch":
            switches[0] += 1

    def drained() -> bool:
        return all(not c._buffer for c in room.connections)

    cpu0, wall0 = time.process_time(), time.monotonic()
    greenlet.settrace(count)
    for _ in range(args.changes):
        version[0] += 1
        hub.delivery.dispatch(room, {"type": "question_closed", "question_id": question, "position": 0,
                                     "correct_choice": 1, "choice_counts": [0, args.sockets, 0, 0],
                                     "reason": "host"})
        clock[0] += 1.0
        hub.ticker.tick()
        while not drained():
            gevent.sleep(0.001)
    greenlet.settrace(None)
    cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    per = max(1, args.changes)
    print(json.dumps({"sockets": args.sockets, "changes": args.changes, "direct_writes": direct,
                      "greenlet_switches_per_change": round(switches[0] / per, 1),
                      "cpu_ms_per_change": round(cpu * 1000 / per, 2),
                      "wall_ms_per_change": round(wall * 1000 / per, 2),
                      "threads": threading.active_count()}))
    for server, _ in pairs:
        server.close()
    os.waitpid(child, 0)


if __name__ == "__main__":
    monkey.patch_all()  # as the gevent worker does (here, not at import: the unit tests import this module)
    main()
