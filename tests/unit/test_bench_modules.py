"""The benchmarks are never collected by `make test` (they are measurements), so a module of theirs
that no longer imports would only show at the next `make bench`: each one is imported here."""
from __future__ import annotations

import importlib
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.mark.parametrize("name", sorted(p.stem for p in BENCH.glob("*.py") if p.stem != "__init__"))
def test_each_benchmark_module_imports(name: str):
    module = importlib.import_module(f"tests.bench.{name}")
    assert module.__name__ == f"tests.bench.{name}"


class _Transport:
    def __init__(self):
        self.written, self.closed = bytearray(), False

    def write(self, data: bytes) -> None:
        self.written += data

    def close(self) -> None:
        self.closed = True


def test_the_fanout_client_says_why_a_socket_was_not_held_or_missed_a_change():
    """Bench 3 reports each socket it does not hold, and each change a socket missed, with the reason it
    saw: the server's close code and reason (before or after the snapshot), or what came while open."""
    import asyncio
    import uuid

    from tests.bench.rooms_client import RoomSocket, _WsProtocol

    async def socket_that_gets(*frames: bytes) -> RoomSocket:
        sock = RoomSocket(uuid.uuid4())
        handshake = asyncio.get_running_loop().create_future()
        protocol = _WsProtocol(sock, b"", handshake)
        protocol.connection_made(_Transport())
        protocol.data_received(b"HTTP/1.1 101 Switching Protocols\r\n\r\n")
        sock.connected, sock.connected_at, sock._protocol = True, 1.0, protocol
        for frame in frames:
            protocol.data_received(frame)
        return sock

    async def scenario() -> None:
        reason = b"Ping/Pong timeout"
        close = bytes([0x88, 2 + len(reason)]) + (1008).to_bytes(2, "big") + reason
        snapshot = b'{"type":"snapshot","leaderboard":{"session_id":"s","version":3}}'
        refused = await socket_that_gets(close)
        assert not refused.joined
        assert refused.admission(5) == "closed by the server 1008 (Ping/Pong timeout), before any snapshot"
        dropped = await socket_that_gets(bytes([0x81, len(snapshot)]) + snapshot, close)
        assert not dropped.joined
        assert dropped.admission(5) == "closed by the server 1008 (Ping/Pong timeout), after its snapshot"
        assert dropped.missed(dropped.ended_at + 1, 5).startswith("not held: closed by the server 1008")
        assert dropped.missed(0.0, 5) == "closed by the server 1008 (Ping/Pong timeout), after the change"
        silent = await socket_that_gets()
        assert silent.admission(12) == "open, nothing received within 12 s of its handshake"
        held = await socket_that_gets(bytes([0x81, len(snapshot)]) + snapshot)
        assert held.joined and held.first_arrival(3) is not None and held.first_arrival(4) is None
        assert held.missed(held.arrivals[0] + 1, 7) == "open, nothing received within 7 s of the change"

    asyncio.run(scenario())


def test_a_profile_summary_counts_each_function_once_a_stack_and_its_innermost_frame_as_self():
    from tests.bench.profile_summary import summarize, table

    venv = "/work/x/.venv/lib/python3.11/site-packages"
    lines = [
        f"run (gevent/hub.py:1);handle ({venv}/gunicorn/workers/base_async.py:9);"
        "submit_answer (/work/wt-x/app/web/api/answers.py:40);"
        "submit_answer (/work/wt-x/app/web/api/answers.py:44);execute (/usr/lib/python3.11/x.py:3) 3",
        f"run (gevent/hub.py:1);handle ({venv}/gunicorn/workers/base_async.py:12) 1",
        f"run (gevent/hub.py:1);wait ({venv}/gevent/hub.py:5) 4",
        "not a sample line",
    ]
    summary = summarize(lines, exclude=("wait (",))
    assert (summary.samples, summary.excluded) == (4, 4)
    assert summary.total["submit_answer (app/web/api/answers.py)"] == 3  # recursion counted once
    assert summary.total["handle (gunicorn/workers/base_async.py)"] == 4
    assert summary.own == {"execute (x.py)": 3, "handle (gunicorn/workers/base_async.py)": 1}
    text = table(summary, top=2, match=("app/",))
    assert "| `submit_answer (app/web/api/answers.py)` | 0.0 % | 75.0 % |" in text
    assert "| `execute (x.py)` | 75.0 % |" in text


def test_a_walsender_is_counted_for_the_process_it_streams_to():
    from tests.bench.support import _postgres_label

    title = "postgres: walsender quiz 127.0.0.1(58986) streaming 0/1A2B3C"
    assert _postgres_label(title, {58986: "outbox_relay"}) == "postgres for outbox_relay"
    assert _postgres_label(title, {}) == "postgres (server)"  # another database's, or the server's own
