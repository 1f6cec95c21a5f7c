"""Pictures of questions and the QR code of a game's join link, through the real app and PostgreSQL:
upload (registered users, typed by content, its own body limit), serving (cached for good,
revalidated by ETag), questions that show them, and the QR code of a live game's PIN."""
from __future__ import annotations

import hashlib
import io
import re
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import text

from app import create_app
from app.quiz.service.images import join_qr_svg
from app.web.api.openapi import build_document
from app.web.headers import CONTENT_SECURITY_POLICY
from tests.helpers import Api, Player, error_code, sample_questions, tiny_png


def upload(api: Api, who: Player | None, data: bytes, content_type: str = "image/png",
           expect: int | None = 201):
    headers = {"Authorization": f"Bearer {who.token}"} if who else {}
    response = api.client.post("/api/v1/images", data=data, content_type=content_type, headers=headers)
    if expect is not None:
        assert response.status_code == expect, (response.status_code, response.get_json())
    return response


def stored_images(engine, owner_id: str) -> int:
    with engine.connect() as connection:
        return connection.execute(text("SELECT count(*) FROM question_images WHERE owner_id = :o"),
                                  {"o": owner_id}).scalar()


# --- upload and serving --------------------------------------------------------------------------

def test_an_uploaded_png_is_served_back_byte_for_byte_and_cached_for_good(api: Api, client, engine):
    host = api.host()
    png = tiny_png()
    body = upload(api, host, png).get_json()
    assert set(body) == {"id", "url", "content_type", "size"}
    assert body["url"] == f"/images/{body['id']}" and body["content_type"] == "image/png"
    assert body["size"] == len(png)
    with engine.connect() as connection:
        row = connection.execute(text("SELECT owner_id, data, size, sha256, content_type "
                                      "FROM question_images WHERE id = :id"), {"id": body["id"]}).one()
    assert (str(row.owner_id), bytes(row.data), row.size, row.content_type) == (host.user_id, png, len(png),
                                                                                 "image/png")
    assert row.sha256 == hashlib.sha256(png).hexdigest()

    served = client.get(body["url"])  # no token: a player's <img> loads it
    assert served.status_code == 200 and served.data == png
    assert served.headers["Content-Type"] == "image/png"
    assert served.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert served.headers["X-Content-Type-Options"] == "nosniff"
    etag = served.headers["ETag"]
    assert etag and etag.strip('"')

    again = client.get(body["url"], headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.data == b""
    assert again.headers["ETag"] == etag
    assert client.get(body["url"], headers={"If-None-Match": '"something-else"'}).status_code == 200


@pytest.mark.parametrize("data, declared, detected", [
    (tiny_png(), "application/octet-stream", "image/png"),
    (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * 32, "image/png", "image/jpeg"),
    (b"GIF89a\x01\x00\x01\x00\x00\x00\x00;", "image/gif", "image/gif"),
    (b"RIFF\x1a\x00\x00\x00WEBPVP8L\x0d\x00\x00\x00/\x00\x00\x00\x00", "image/webp", "image/webp"),
])
def test_the_type_is_read_from_the_bytes_not_from_what_the_upload_says(api: Api, client, data, declared,
                                                                       detected):
    body = upload(api, api.host(), data, declared).get_json()
    assert body["content_type"] == detected
    assert client.get(body["url"]).headers["Content-Type"] == detected


@pytest.mark.parametrize("data", [
    b"just some notes, not a picture\n",  # a text file renamed picture.png
    b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',  # SVG carries scripts
    b"%PDF-1.7\n",
    b"\x89PNG",  # a signature cut short
    b"RIFF\x00\x00\x00\x00WAVEfmt ",  # RIFF, but no WebP
])
def test_anything_but_png_jpeg_gif_or_webp_is_refused_with_415(api: Api, engine, data):
    host = api.host()
    assert error_code(upload(api, host, data, "image/png", expect=415)) == "unsupported_image"
    assert stored_images(engine, host.user_id) == 0


def test_an_empty_upload_is_a_400(api: Api):
    assert error_code(upload(api, api.host(), b"", expect=400)) == "empty_body"


def test_only_registered_users_upload(api: Api, engine):
    guest = api.guest()
    assert error_code(upload(api, guest, tiny_png(), expect=403)) == "registered_users_only"
    assert stored_images(engine, guest.user_id) == 0
    assert error_code(upload(api, None, tiny_png(), expect=401)) == "unauthorized"


def test_an_unknown_or_malformed_image_id_is_a_json_404(client):
    for path in (f"/images/{uuid.uuid4()}", "/images/not-an-id", "/images/12345"):
        response = client.get(path)
        assert response.status_code == 404 and error_code(response) == "not_found", path


# --- body limits ---------------------------------------------------------------------------------

class CountingStream(io.BytesIO):
    """A request body that counts what the server reads of it."""

    def __init__(self, data: bytes):
        super().__init__(data)
        self.served = 0

    def read(self, size: int | None = -1) -> bytes:
        chunk = super().read(size)
        self.served += len(chunk)
        return chunk

    def readinto(self, buffer) -> int:
        count = super().readinto(buffer)
        self.served += count
        return count


def test_a_picture_over_image_max_bytes_is_a_413_and_nothing_is_stored(api: Api, client, config, engine):
    host = api.host()
    limit = config.image_max_bytes
    assert limit == 2 * 1024 * 1024
    over = tiny_png(extra=b"x" * limit)
    assert len(over) > limit
    body = CountingStream(over)
    response = client.post("/api/v1/images", input_stream=body, content_type="image/png",
                           headers=host.headers)
    assert response.status_code == 413 and error_code(response) == "body_too_large"
    assert body.served == 0, "its Content-Length said it was too big: nothing of it is read"
    assert stored_images(engine, host.user_id) == 0

    exact = tiny_png(extra=b"x" * (limit - len(tiny_png(extra=b"x")) + 1))
    assert len(exact) == limit
    upload(api, host, exact)
    assert stored_images(engine, host.user_id) == 1


def test_a_body_without_a_length_is_read_no_further_than_the_limit(config, database):
    app = create_app(config.replace(image_max_bytes=4096))
    api = Api(app.test_client())
    host = api.host()

    def chunked(data: bytes):
        body = CountingStream(data)
        response = api.client.post("/api/v1/images", input_stream=body, content_type="image/png",
                                   headers={**host.headers, "Transfer-Encoding": "chunked"},
                                   environ_overrides={"wsgi.input_terminated": True})
        return response, body

    response, body = chunked(tiny_png(extra=b"x" * 100_000))
    assert response.status_code == 413 and error_code(response) == "body_too_large"
    assert body.served <= 4096 + 1
    response, _ = chunked(tiny_png(extra=b"x" * 1000))
    assert response.status_code == 201, response.get_json()


def test_the_upload_has_its_own_limit_and_every_other_route_keeps_the_global_one(api: Api, client, config):
    host = api.host()
    between = tiny_png(extra=b"x" * (config.max_body_bytes + 1000))
    assert config.max_body_bytes < len(between) < config.image_max_bytes
    assert upload(api, host, between).get_json()["size"] == len(between)

    # A JSON route refuses the same size: the picture's limit is that one route's.
    big_quiz = b'{"title": "' + b"a" * (config.max_body_bytes + 1000) + b'", "questions": []}'
    for path, headers in (("/api/v1/quizzes", host.headers), ("/api/v1/auth/register", {})):
        response = client.post(path, data=big_quiz, content_type="application/json", headers=headers)
        assert response.status_code == 413 and error_code(response) == "body_too_large", path
    response = client.post("/api/v1/quizzes", data=big_quiz, content_type="application/json",
                           headers={**host.headers, "Transfer-Encoding": "chunked"},
                           environ_overrides={"wsgi.input_terminated": True})
    assert response.status_code in (400, 413), "a body without a length is cut at the global limit"


# --- an account's quota and upload rate -----------------------------------------------------------

def stored_bytes(engine, owner_id: str) -> int:
    with engine.connect() as connection:
        return connection.execute(text("SELECT coalesce(sum(size), 0) FROM question_images "
                                       "WHERE owner_id = :o"), {"o": owner_id}).scalar()


def test_an_accounts_pictures_stay_within_its_quota(config, database, engine):
    api = Api(create_app(config.replace(image_quota_bytes=10_000)).test_client())
    host, other = api.host(), api.host()
    first = upload(api, host, tiny_png(extra=b"x" * 6_000)).get_json()
    refused = upload(api, host, tiny_png(extra=b"y" * 6_000), expect=413)
    assert error_code(refused) == "image_quota_exceeded"
    assert refused.get_json()["error"]["quota_bytes"] == 10_000
    assert refused.get_json()["error"]["used_bytes"] == first["size"]
    assert stored_bytes(engine, host.user_id) == first["size"]
    # What is left still fits, and the quota is each account's own.
    upload(api, host, tiny_png(extra=b"z" * (10_000 - first["size"] - len(tiny_png(extra=b"z")) + 1)))
    assert stored_bytes(engine, host.user_id) == 10_000
    upload(api, other, tiny_png(extra=b"x" * 6_000))


def test_concurrent_uploads_of_one_account_never_pass_its_quota_together(config, database, engine):
    """Eight uploads at once, each fitting alone, only one fitting at all: exactly one is kept."""
    app = create_app(config.replace(image_quota_bytes=10_000))
    host = Api(app.test_client()).host()
    picture = tiny_png(extra=b"x" * 6_000)
    start = threading.Barrier(8)

    def send(_: int) -> int:
        client = app.test_client()
        start.wait()
        return client.post("/api/v1/images", data=picture, content_type="image/png",
                           headers=host.headers).status_code

    with ThreadPoolExecutor(8) as pool:
        statuses = sorted(pool.map(send, range(8)))
    assert statuses == [201] + [413] * 7
    assert stored_bytes(engine, host.user_id) == len(picture)


def test_uploads_past_the_accounts_rate_get_429(config, database, engine):
    api = Api(create_app(config.replace(rate_image_uploads_per_user="3/minute")).test_client())
    host = api.host()
    for _ in range(3):
        upload(api, host, tiny_png())
    refused = upload(api, host, tiny_png(), expect=429)
    assert error_code(refused) == "too_many_requests" and int(refused.headers["Retry-After"]) >= 1
    assert stored_images(engine, host.user_id) == 3
    upload(api, api.host(), tiny_png())  # another account's budget is its own


# --- questions that show a picture ---------------------------------------------------------------

def test_a_question_shows_its_picture_and_only_its_owners_pictures(api: Api, client):
    host, other = api.host(), api.host()
    mine = upload(api, host, tiny_png()).get_json()
    theirs = upload(api, other, tiny_png(2, 2)).get_json()

    questions = sample_questions(2)
    questions[0]["image_id"] = mine["id"]
    session = api.live_session(host, questions)
    quiz = session["quiz"]
    assert [q["image_url"] for q in quiz["questions"]] == [mine["url"], None]
    assert quiz["questions"][0]["image_id"] == mine["id"]
    read = api.get(f"/api/v1/quizzes/{quiz['id']}", token=host.token, expect=200).get_json()
    assert read["questions"][0]["image_url"] == mine["url"]
    opened = api.next_question(session["id"], host)
    assert opened["image_url"] == mine["url"]
    assert client.get(opened["image_url"]).data == tiny_png()

    questions[0]["image_id"] = theirs["id"]
    refused = api.post("/api/v1/quizzes", {"title": "Borrowed", "questions": questions}, token=host.token,
                       expect=422)
    assert error_code(refused) == "invalid_image"
    questions[0]["image_id"] = str(uuid.uuid4())
    assert error_code(api.post("/api/v1/quizzes", {"title": "Missing", "questions": questions},
                               token=host.token, expect=422)) == "invalid_image"


def test_a_picture_says_what_it_shows_to_a_screen_reader(api: Api):
    host = api.host()
    picture = upload(api, host, tiny_png()).get_json()
    questions = sample_questions(2)
    questions[0].update(image_id=picture["id"], image_alt="  A map of Europe with Paris circled ")
    questions[1]["image_alt"] = "no picture: nothing to describe"
    session = api.live_session(host, questions)
    described = [q["image_alt"] for q in session["quiz"]["questions"]]
    assert described == ["A map of Europe with Paris circled", None]
    player = api.join(session["id"], api.guest())
    assert api.next_question(session["id"], host)["image_alt"] == "A map of Europe with Paris circled"
    current = api.get(f"/api/v1/sessions/{session['id']}", token=player.token, expect=200).get_json()
    assert current["current_question"]["image_alt"] == "A map of Europe with Paris circled"
    questions[0]["image_alt"] = "x" * 251
    api.post("/api/v1/quizzes", {"title": "Long", "questions": questions}, token=host.token, expect=400)


def test_pages_may_show_the_apps_own_pictures():
    directives = dict(part.strip().split(" ", 1) for part in CONTENT_SECURITY_POLICY.split(";"))
    assert "'self'" in directives["img-src"].split()


def test_the_openapi_document_describes_the_upload_as_raw_bytes():
    operation = build_document()["paths"]["/api/v1/images"]["post"]
    content = operation["requestBody"]["content"]
    assert set(content) == {"image/png", "image/jpeg", "image/gif", "image/webp"}
    assert all(media["schema"] == {"type": "string", "format": "binary"} for media in content.values())
    assert {"201", "400", "401", "403", "413", "415", "429"} <= set(operation["responses"])
    assert "image_quota_exceeded" in operation["responses"]["413"]["description"]


# --- the QR code of a join link ------------------------------------------------------------------

def test_a_live_games_pin_has_a_qr_code_of_the_player_page_with_the_pin_filled_in(api: Api, client):
    host = api.host()
    session = api.live_session(host)
    code = session["join_code"]
    response = client.get(f"/join/{code}.svg")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "image/svg+xml"
    assert response.headers["Cache-Control"] == "private, max-age=60"
    svg = response.data
    assert svg.lstrip().startswith(b"<svg") and b"<script" not in svg.lower()
    assert f"<title>QR code: join the game with PIN {code}</title>".encode() in svg
    width = int(re.search(rb'width="(\d+)"', svg).group(1))
    assert 200 <= width <= 300
    # What segno draws for the link a phone should open: the player page (`/`) with ?code=, at the
    # configured public address (by default the one the web server binds).
    assert svg == join_qr_svg(
        f"http://127.0.0.1:{client.application.config['LIVEQUIZ'].web_port}/?code={code}", code)

    # Another game's code draws another code; a game that runs still has one; an ended one has none.
    other = api.live_session(api.host())["join_code"]
    assert client.get(f"/join/{other}.svg").data != svg
    api.join(session["id"], api.guest())
    api.next_question(session["id"], host)
    assert client.get(f"/join/{code}.svg").status_code == 200
    api.post(f"/api/v1/sessions/{session['id']}/end", token=host.token, expect=200)
    ended = client.get(f"/join/{code}.svg")
    assert ended.status_code == 404 and error_code(ended) == "not_found"


def test_the_qr_code_draws_the_configured_public_address_whatever_host_the_request_names(config, database):
    app = create_app(config.replace(public_url="https://quiz.example.org/"))
    api = Api(app.test_client())
    code = api.live_session(api.host())["join_code"]
    wanted = join_qr_svg(f"https://quiz.example.org/?code={code}", code)
    for headers in ({}, {"Host": "evil.example"},
                    {"X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "http"}):
        svg = api.client.get(f"/join/{code}.svg", headers=headers).data
        assert svg == wanted, headers
    # The host's screen writes the same address beside the code.
    page = api.client.get("/host", headers={"Host": "evil.example"}).get_data(as_text=True)
    assert 'data-public-url="https://quiz.example.org"' in page and "evil.example" not in page


def test_a_code_no_live_game_has_gets_no_qr_code(api: Api, client, engine):
    with engine.connect() as connection:
        taken = set(connection.execute(
            text("SELECT join_code FROM quiz_sessions WHERE status <> 'ended'")).scalars())
    unknown = next(f"{n:06d}" for n in range(1_000_000) if f"{n:06d}" not in taken)
    for path in (f"/join/{unknown}.svg", "/join/12345.svg", "/join/abcdef.svg", "/join/1234567.svg"):
        response = client.get(path)
        assert response.status_code == 404 and error_code(response) == "not_found", path
