"""An event's journey on the live stack, traced: every process (web, relay, worker, ingest) exports its
spans to an OTLP receiver the test runs on loopback (tests/e2e/otlp_receiver.py). A quiz answer and a score
write each make one trace, joined by trace id, that spans the request in the web, the relay's publish, the
worker's apply and the web's push of the room note to the sockets, each span the child of the one before;
and the per-hop histograms of each process (scraped from its metrics port) count both aggregates.

The stack samples as it does by default (OTEL_TRACES_SAMPLER parentbased_traceidratio, 1 % of new traces):
the requests send a `traceparent` whose sampled flag is set, and every hop across Kafka honors it; an
answer sent with the flag unset (just before) records no span in any process.

With RELAY_MODE=debezium Kafka Connect relays: it exports no spans and carries the row's `traceparent` to
the header unchanged, so the worker's apply is the request's child, with no publish between them, and
the commit → produced hop has no histogram (Debezium's lag is Connect's exporter's gauge)."""
from __future__ import annotations

import pytest

from tests.e2e.otlp_receiver import OtlpReceiver, ReceivedSpan
from tests.e2e.room_client import RoomClient, SocketClient
from tests.e2e.test_metrics import answers_http, scrape, total
from tests.helpers import Api, HttpClient, free_port, sample_questions, single_node, wait_until

pytestmark = single_node("one relay, one worker and one web export and are scraped; with two of each the "
                         "counts split between them")

PROCESSES = ("web", "relay", "worker", "ingest")
SAMPLED = "00-5bf92f3577b34da6a3ce929d0e0e4736-10f067aa0ba902b7-01"
UNSAMPLED = "00-6bf92f3577b34da6a3ce929d0e0e4736-20f067aa0ba902b7-00"


@pytest.fixture(scope="module")
def traced(live_stack):
    """The live stack with every process exporting to a receiver of the test's, and the relay and worker
    serving metrics; put back untraced afterwards."""
    receiver = OtlpReceiver().start()
    ports = {"relay": free_port(), "worker": free_port()}
    try:
        for name in PROCESSES:
            extra = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint}
            setting = f"{name.upper()}_METRICS_PORT"
            if name in ports and live_stack.envs[name].get(setting, "0") == "0":
                extra[setting] = str(ports[name])  # a port of its own, kept for the session (test_metrics.py)
            live_stack.restart(name, **extra)
        urls = {name: f"http://127.0.0.1:{live_stack.envs[name][f'{name.upper()}_METRICS_PORT']}/metrics"
                for name in ports}
        for name, url in urls.items():
            wait_until(lambda url=url: answers_http(url), f"the {name} did not serve {url}")
        urls["web"] = live_stack.metrics_url("web")
        yield live_stack, receiver, urls
    finally:
        for name in PROCESSES:
            live_stack.restart(name, OTEL_EXPORTER_OTLP_ENDPOINT="")
        receiver.stop()


def journey(receiver: OtlpReceiver, request_name: str, push_name: str,
            relay_spans: bool) -> list[ReceivedSpan] | None:
    """The spans of one trace going web (the request) → relay (publish, when it is ours: `relay_spans`) →
    worker (apply) → web (push), each the parent of the next, or None while no trace has them all."""
    publish = [("livequiz-relay", "publish")] if relay_spans else []
    for spans in receiver.traces().values():
        by_id = {span.span_id: span for span in spans}
        for push in (s for s in spans if s.name == push_name):
            chain = [push]
            while chain[-1].parent_span_id in by_id:
                chain.append(by_id[chain[-1].parent_span_id])
            chain.reverse()
            names = [(span.service, span.name.split(" ")[0]) for span in chain]
            if names == [("livequiz-web", request_name.split(" ")[0]), *publish,
                         ("livequiz-worker", "apply"), ("livequiz-web", "push")] \
                    and chain[0].name == request_name:
                return chain
    return None


def traced_journey(receiver: OtlpReceiver, request_name: str, push_name: str,
                   relay_spans: bool) -> list[ReceivedSpan]:
    """`journey`, waited for; the failure lists what the receiver got."""
    try:
        return wait_until(lambda: journey(receiver, request_name, push_name, relay_spans),
                          f"no trace from {request_name!r} to {push_name!r}")
    except pytest.fail.Exception as exc:
        got = sorted({(s.service, s.name, s.trace_id[:8], s.span_id[:8], s.parent_span_id[:8])
                      for s in receiver.spans})
        raise AssertionError(f"{exc}; received {len(got)} spans: {got[-40:]}") from None


def test_an_answer_and_a_score_are_each_one_trace_from_the_request_to_the_socket_push(traced):
    stack, receiver, urls = traced
    ours = not stack.connect  # our relay publishes (RELAY_MODE wal or poll), not Kafka Connect
    api = Api(HttpClient(stack.base_url))
    host = api.host()
    questions = sample_questions(1, time_limit_s=240)
    session = api.live_session(host, questions)
    player, unsampled = api.join(session["id"], api.guest()), api.join(session["id"], api.guest())
    room = RoomClient(stack.ws_url, session["id"], host.token)  # the host hears each answer: a push
    try:
        room.wait_type("snapshot")
        question = api.next_question(session["id"], host)
        room.wait_type("question_opened")
        for who, traceparent in ((unsampled, UNSAMPLED), (player, SAMPLED)):
            api.client.http.headers["traceparent"] = traceparent
            api.answer(session["id"], who, question["question_id"], questions[0]["correct_choice"])
        del api.client.http.headers["traceparent"]
        room.wait_type("answer_count")
        answer = traced_journey(receiver, "POST /api/v1/sessions/<session_id>/answers",
                                "push answer_received", ours)
    finally:
        room.close()
    applied, pushed = answer[-2:]
    assert applied.attributes["event.id"] == pushed.attributes["event.id"]  # the applied event is pushed
    assert answer[0].trace_id == SAMPLED.split("-")[1] and answer[0].parent_span_id == SAMPLED.split("-")[2]
    # Each process exports its spans in the order they ended: the unsampled answer's would have come first.
    assert not [span for span in receiver.spans if span.trace_id == UNSAMPLED.split("-")[1]]

    board_id = api.post("/api/v1/leaderboards", {"id": "traced-" + session["id"][:8], "name": "Traced",
                                                 "sort_order": "desc", "update_mode": "best",
                                                 "reset_period": "never"}, token=host.token,
                        expect=201).get_json()["id"]
    watcher = SocketClient(f"{stack.ws_url}/ws/leaderboards/{board_id}")
    try:
        watcher.wait_type("leaderboard_update")
        api.client.http.headers["traceparent"] = SAMPLED.replace("-10f0", "-30f0")
        api.post("/api/v1/scores", {"leaderboard_id": board_id, "player_id": "ann", "score": 7},
                 token=host.token, expect=201)
        del api.client.http.headers["traceparent"]
        watcher.wait_for(lambda m: m["type"] == "leaderboard_update" and m["entries"])
        traced_journey(receiver, "POST /api/v1/scores", "push board_changed", ours)
    finally:
        watcher.close()

    hops = {"relay": ["relay_commit_to_produced_seconds_count"] if ours else [],
            "worker": ["worker_produced_to_applied_seconds_count"],
            "web": ["push_applied_to_pushed_seconds_count", "push_click_to_socket_seconds_count"]}
    for name, series in hops.items():
        samples = scrape(urls[name])
        for metric in series:
            for aggregate in ("quiz_session", "leaderboard"):
                assert total(samples, metric, aggregate=aggregate) >= 1, (name, metric, aggregate)
