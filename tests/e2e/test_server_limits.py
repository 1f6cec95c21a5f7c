"""What the running web server (gunicorn, gevent workers) does under abuse: password hashing never
stalls the event loop, a flood of wrong logins from one address is refused past its share of the hash
queue while another address logs in, and the server's own refusals answer in the API's JSON error
shape."""
from __future__ import annotations

import json
import socket
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import requests

from scripts.stack.programs import kind_of
from tests.e2e.conftest import as_address, new_address
from tests.e2e.test_metrics import scrape, total
from tests.helpers import WAIT_S, Api, HttpClient, free_port, wait_until

LOGINS = 24  # wrong passwords at once in the first round, several seconds of scrypt across the web workers
ROUNDS = 4  # each round doubles them


def test_password_hashing_leaves_health_checks_and_answers_served(live_stack):
    """Hashes run off the event loop, so a health check and an answer sent after a wave of wrong logins
    are served before the wave's hashes are all done. With hashing on the loop they would queue behind
    them, whatever the machine's speed. A round on a machine so slow that a request took longer than
    the whole wave proves nothing either way: the next round sends twice the logins."""
    http = Api(HttpClient(live_stack.base_url))
    webs = [name for name in live_stack.envs if name.startswith("web")]

    def hashes_running() -> float:
        return sum(total(scrape(live_stack.metrics_url(web)), "password_hashes_running") for web in webs)

    def wrong_login(i: int) -> int:
        return requests.post(f"{live_stack.base_url}/api/v1/auth/login", timeout=300,
                             json={"username": f"nobody_{uuid.uuid4().hex[:8]}_{i}",
                                   "password": "guess"}).status_code

    logins = LOGINS
    for _ in range(ROUNDS):
        host = http.host()
        sid = http.live_session(host)["id"]
        player = http.join(sid, http.guest())
        qid = http.next_question(sid, host)["question_id"]
        with ThreadPoolExecutor(max_workers=logins) as pool:
            wave = [pool.submit(wrong_login, i) for i in range(logins)]
            # The state asserted: while hashes run, the loop still serves a health check and an answer.
            wait_until(lambda: hashes_running() > 0, "no hash ever ran")
            assert requests.get(f"{live_stack.base_url}/healthz", timeout=30).status_code == 200
            http.answer(sid, player, qid, 0, expect=201)
            still_hashing = sum(not login.done() for login in wave)
            statuses = [login.result() for login in wave]
            # Past the address's share of the hash queue a login is refused at once (429 logins_busy).
            assert set(statuses) <= {401, 429} and 401 in statuses, statuses
        if still_hashing:
            return
        logins *= 2
    raise AssertionError(f"in {ROUNDS} rounds of up to {logins // 2} wrong logins, the health check and the "
                         "answer were never served before the logins sent ahead of them had all ended")


def test_a_flood_of_wrong_logins_is_refused_past_its_share_while_another_address_logs_in(live_stack):
    """A web of its own, one worker, 4 places in its hash queue (so one address may hold 1 of them) and
    one trusted proxy, so each client names its address. Eight clients of one address send wrong logins
    without pause; once one of theirs is refused, a user of another address logs in: the turns go to the
    addresses in turn, so the user waits for at most one of the flood's hashes per slot, never behind
    the whole flood, and is never refused for it."""
    web = next(name for name in live_stack.envs if kind_of(name) == "web")
    env = {**live_stack.envs[web], "PASSWORD_HASHES_WAITING": "4", "WEB_TRUSTED_PROXIES": "1",
           "WEB_WORKERS": "1", "WEB_PORT": str(free_port()), "WEB_METRICS_PORT": str(free_port())}
    live_stack.stack.start("web-logins", env)
    try:
        url = f"http://127.0.0.1:{env['WEB_PORT']}/api/v1/auth"
        flood, user = as_address(new_address()), as_address(new_address())
        account = {"username": f"user_{uuid.uuid4().hex[:10]}", "password": "correct horse"}
        assert requests.post(f"{url}/register", json=account, headers=user, timeout=WAIT_S).status_code == 201
        stopping = threading.Event()
        statuses: list[int] = []
        refusals: list[requests.Response] = []

        def wrong_logins() -> None:
            with requests.Session() as session:
                while not stopping.is_set():
                    response = session.post(f"{url}/login", headers=flood, timeout=WAIT_S, json={
                        "username": f"nobody_{uuid.uuid4().hex[:10]}", "password": "guess"})
                    statuses.append(response.status_code)
                    if response.status_code == 429:
                        refusals.append(response)

        clients = [threading.Thread(target=wrong_logins, daemon=True) for _ in range(8)]
        for client in clients:
            client.start()
        try:
            wait_until(lambda: refusals, "no wrong login of the flood was refused")
            login = requests.post(f"{url}/login", json=account, headers=user, timeout=WAIT_S)
            assert login.status_code == 200, login.text
            assert login.json()["access_token"]
        finally:
            stopping.set()
            for client in clients:
                client.join(WAIT_S)
        refused = refusals[0]
        assert refused.json()["error"]["code"] == "logins_busy"
        assert int(refused.headers["Retry-After"]) >= 1
        assert set(statuses) <= {401, 429} and 401 in statuses
    finally:
        live_stack.stack.stop("web-logins")


def _raw_request(base_url: str, request: bytes) -> tuple[int, dict, bytes]:
    address = urlsplit(base_url)
    with socket.create_connection((address.hostname, address.port), timeout=30) as conn:
        conn.sendall(request)
        data = b""
        try:
            while chunk := conn.recv(65536):
                data += chunk
        except ConnectionResetError:  # the server closed with bytes of ours unread; its answer came first
            pass
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


def test_requests_gunicorn_refuses_itself_get_the_json_error_body(live_stack):
    # Sent to gunicorn itself: on the cluster, the balancer in front would refuse them first.
    long_line = b"GET /api/v1/" + b"x" * 4500 + b" HTTP/1.1\r\nHost: t\r\n\r\n"  # gunicorn allows 4094
    status, headers, body = _raw_request(live_stack.web_url, long_line)
    assert status == 414 and headers["content-type"] == "application/json"
    assert json.loads(body)["error"]["code"] == "uri_too_long"
    malformed = b"GET / HTTP/1.1\r\nHost: t\r\nBad Header Without Colon\r\n\r\n"
    status, headers, body = _raw_request(live_stack.web_url, malformed)
    assert status == 400 and json.loads(body)["error"]["code"] == "bad_request"


def test_a_room_socket_declines_compression(live_stack):
    """A browser offers permessage-deflate; the room declines it, so one serialised message is written
    to every socket as it is, with no zlib stream per socket."""
    from tests.e2e.room_client import ticket_for

    http = Api(HttpClient(live_stack.base_url))
    host = http.host()
    sid = http.live_session(host)["id"]
    ticket = ticket_for(live_stack.ws_url, sid, host.token)
    address = urlsplit(live_stack.base_url)
    with socket.create_connection((address.hostname, address.port), timeout=30) as raw:
        raw.sendall((f"GET /ws/sessions/{sid}?ticket={ticket} HTTP/1.1\r\nHost: {address.netloc}\r\n"
                     "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     "Sec-WebSocket-Version: 13\r\n"
                     "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = raw.recv(4096)
            assert chunk, head
            head += chunk
    status, *headers = head.split(b"\r\n\r\n")[0].decode("latin1").split("\r\n")
    assert " 101 " in status, status
    assert not [h for h in headers if h.lower().startswith("sec-websocket-extensions")], headers
