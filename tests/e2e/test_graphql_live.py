"""GraphQL subscriptions through the running processes, with the third-party `gql` client (its
graphql-transport-ws transport) and with a raw socket for the protocol's refusals."""
from __future__ import annotations

import asyncio
import uuid
from concurrent.futures import ThreadPoolExecutor

from gql import Client, GraphQLRequest, gql
from gql.transport.websockets import WebsocketsTransport
from websocket import WebSocketException

from tests.e2e.room_client import SocketClient
from tests.helpers import WAIT_S, Api, HttpClient, fragment_bomb, wait_until

PROTOCOL = "graphql-transport-ws"
BOARD_TOP = gql("""subscription($b: ID!) { boardTop(board_id: $b, top: 3) {
    leaderboard_id period version total entries { rank player_id score } } }""")
STANDING = gql("subscription($b: ID!, $p: ID!) "
               "{ playerStanding(board_id: $b, player_id: $p) { rank score } }")


def _board_with_players(http: Api) -> tuple[str, object]:
    owner = http.host()
    board_id = "gql-" + uuid.uuid4().hex[:10]
    http.post("/api/v1/leaderboards", {"id": board_id, "name": "Live", "sort_order": "desc",
                                       "update_mode": "best", "reset_period": "never"},
              token=owner.token, expect=201)
    http.post("/api/v1/scores/batch",
              {"scores": [{"leaderboard_id": board_id, "player_id": f"p{i}", "score": 100 * i}
                          for i in range(1, 6)]}, token=owner.token, expect=200)
    wait_until(lambda: http.get(f"/api/v1/leaderboards/{board_id}/top", expect=200).get_json()["total"] == 5,
               "the scores never reached the board")
    return board_id, owner


def test_a_gql_client_follows_a_boards_top_and_hears_nothing_below_it(live_stack):
    http = Api(HttpClient(live_stack.base_url))
    board_id, owner = _board_with_players(http)

    def write(player: str, value: int) -> None:
        http.post("/api/v1/scores", {"leaderboard_id": board_id, "player_id": player, "score": value},
                  token=owner.token, expect=201)

    async def follow() -> tuple[list[dict], list[dict]]:
        # gql's own bounds (10 s to connect and to be acknowledged) are too short for a loaded machine.
        transport = WebsocketsTransport(url=f"{live_stack.ws_url}/graphql", subprotocols=[PROTOCOL],
                                        connect_timeout=WAIT_S, ack_timeout=WAIT_S)
        tops: list[dict] = []
        standings: list[dict] = []
        async with Client(transport=transport) as session:
            async def top_feed():
                async for result in session.subscribe(
                        GraphQLRequest(BOARD_TOP, variable_values={"b": board_id})):
                    tops.append(result["boardTop"])
                    if any(e["score"] == 600 for e in result["boardTop"]["entries"]):
                        return

            async def standing_feed():
                async for result in session.subscribe(
                        GraphQLRequest(STANDING, variable_values={"b": board_id, "p": "p1"})):
                    standings.append(result["playerStanding"])
                    if result["playerStanding"]["score"] == 150:
                        return

            tops_task = asyncio.create_task(top_feed())
            standing_task = asyncio.create_task(standing_feed())
            async def first_results():
                while not tops or not standings:
                    await asyncio.sleep(0.05)

            await asyncio.wait_for(first_results(), WAIT_S)
            # below the top 3: p1's standing moves, the top does not
            await asyncio.to_thread(write, "p1", 150)
            await asyncio.wait_for(standing_task, WAIT_S)
            await asyncio.to_thread(write, "p1", 600)  # into the top 3
            await asyncio.wait_for(tops_task, WAIT_S)
        return tops, standings

    # A thread of its own: the browser tests' Playwright keeps an event loop running in this one.
    with ThreadPoolExecutor(1) as pool:
        tops, standings = pool.submit(asyncio.run, follow()).result()
    assert [(e["player_id"], e["score"]) for e in tops[0]["entries"]] == [
        ("p5", 500), ("p4", 400), ("p3", 300)]
    assert tops[0]["total"] == 5 and tops[0]["leaderboard_id"] == board_id
    assert [(e["player_id"], e["score"]) for e in tops[-1]["entries"]] == [
        ("p1", 600), ("p5", 500), ("p4", 400)]
    # Every `next` showed a different top: the write below it sent nothing.
    assert all(a["entries"] != b["entries"] for a, b in zip(tops, tops[1:]))
    assert [tops[i]["version"] < tops[i + 1]["version"]
            for i in range(len(tops) - 1)] == [True] * (len(tops) - 1)
    assert (standings[0]["rank"], standings[-1]) == (5, {"rank": 5, "score": 150})


def _socket(live_stack, **options) -> SocketClient:
    return SocketClient(f"{live_stack.ws_url}/graphql", **options)


def test_the_protocols_messages_and_refusals(live_stack):
    board_id, _ = _board_with_players(Api(HttpClient(live_stack.base_url)))
    plain = _socket(live_stack)
    assert plain.wait_closed() == 4406

    early = _socket(live_stack, subprotocols=[PROTOCOL])
    early.send({"id": "1", "type": "subscribe", "payload": {"query": "{ leaderboard { score } }"}})
    assert early.wait_closed() == 4401

    silent = _socket(live_stack, subprotocols=[PROTOCOL])
    assert silent.wait_closed() == 4408  # no connection_init within GRAPHQL_INIT_WAIT_S

    client = _socket(live_stack, subprotocols=[PROTOCOL])
    client.send({"type": "connection_init"})
    client.wait_type("connection_ack")
    client.send({"type": "ping", "payload": {"n": 1}})
    assert client.wait_type("pong")["payload"] == {"n": 1}
    client.send({"id": "q", "type": "subscribe",
                 "payload": {"query": f'query {{ stats(board_id: "{board_id}") {{ count }} }}'}})
    assert client.wait_for(lambda m: m.get("id") == "q" and m["type"] == "next")["payload"] == {
        "data": {"stats": {"count": 5}}}
    client.wait_for(lambda m: m.get("id") == "q" and m["type"] == "complete")
    client.send({"id": "bad", "type": "subscribe", "payload": {"query": "subscription { nope }"}})
    bad = client.wait_for(lambda m: m.get("id") == "bad")
    assert bad["type"] == "error" and bad["payload"][0]["extensions"]["code"] == "graphql_validation_failed"
    client.send({"id": "none", "type": "subscribe", "payload": {
        "query": 'subscription { boardTop(board_id: "no-such-board") { version } }'}})
    assert client.wait_for(lambda m: m.get("id") == "none")["payload"][0]["extensions"]["code"] == "not_found"
    watch = {"query": "subscription($b: ID!) { boardTop(board_id: $b) { total } }",
             "variables": {"b": board_id}}
    client.send({"id": "w", "type": "subscribe", "payload": watch})
    assert client.wait_for(lambda m: m.get("id") == "w")["payload"] == {"data": {"boardTop": {"total": 5}}}
    client.send({"id": "w", "type": "subscribe", "payload": watch})
    assert client.wait_closed() == 4409

    twice = _socket(live_stack, subprotocols=[PROTOCOL])
    twice.send({"type": "connection_init"})
    twice.wait_type("connection_ack")
    twice.send({"type": "connection_init"})
    assert twice.wait_closed() == 4429

    garbled = _socket(live_stack, subprotocols=[PROTOCOL])
    garbled.send("{not json")
    assert garbled.wait_closed() == 4400


def _acknowledged(live_stack) -> SocketClient:
    client = _socket(live_stack, subprotocols=[PROTOCOL])
    client.send({"type": "connection_init"})
    client.wait_type("connection_ack")
    return client


def test_the_socket_refuses_a_fragment_bomb_and_too_many_mutations_and_lives_on(live_stack):
    client = _acknowledged(live_stack)
    for n in (25, 40):
        bomb_id = f"bomb{n}"
        client.send({"id": bomb_id, "type": "subscribe", "payload": {"query": fragment_bomb(n)}})
        refused = client.wait_for(lambda m, bomb_id=bomb_id: m.get("id") == bomb_id)
        assert (refused["type"] == "error"
                and refused["payload"][0]["extensions"]["code"] == "query_too_costly")
    subscription = fragment_bomb(25, 'boardTop(board_id: "default") { version }', on="Subscription",
                                 operation="subscription")
    client.send({"id": "sub", "type": "subscribe", "payload": {"query": subscription}})
    refused = client.wait_for(lambda m: m.get("id") == "sub")
    assert refused["type"] == "error" and refused["payload"][0]["extensions"]["code"] == "query_too_costly"
    writes = " ".join(f'w{i}: createUser(user_name: "many", score: {i}) {{ user_id }}' for i in range(11))
    client.send({"id": "many", "type": "subscribe", "payload": {"query": f"mutation {{ {writes} }}"}})
    refused = client.wait_for(lambda m: m.get("id") == "many")
    assert refused["type"] == "error" and refused["payload"][0]["extensions"]["code"] == "too_many_mutations"
    client.send({"type": "ping", "payload": {"after": "refusals"}})
    assert client.wait_type("pong")["payload"] == {"after": "refusals"}


def test_a_nested_message_closes_the_socket_with_4400_and_a_flood_with_4429(live_stack):
    deep = ('{"type": "subscribe", "id": "x", "payload": {"query": "{ leaderboard { score } }", '
            '"variables": {"a": ' + "[" * 20_000 + "]" * 20_000 + "}}}")
    nested = _acknowledged(live_stack)
    nested.send(deep)
    assert nested.wait_closed() == 4400 and "too_deep" in nested.close_reason
    bare = _socket(live_stack, subprotocols=[PROTOCOL])
    bare.send("[" * 30_000 + "]" * 30_000)
    assert bare.wait_closed() == 4400

    flood = _acknowledged(live_stack)
    for n in range(200):
        try:
            flood.send({"type": "ping", "payload": {"n": n}})
        except (WebSocketException, OSError):  # closed under our feet: what the test waits for
            break
    assert flood.wait_closed() == 4429
    assert len(flood.of_type("pong")) < 200
    # Other sockets of the process go on.
    assert _acknowledged(live_stack).close_code is None
