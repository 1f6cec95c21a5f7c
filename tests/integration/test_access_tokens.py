"""Access tokens are JWTs (app/accounts/tokens.py): what they carry, who may verify them, and every
forgery the service refuses with the same 401 the edge gives (tests/cluster/test_edge.py), with HS256
and ES256."""
from __future__ import annotations

import time
import uuid

import jwt
import pytest
from itsdangerous import TimestampSigner, URLSafeTimedSerializer
from joserfc import jwt as jose_jwt
from joserfc.jwk import KeySet, OctKey

from app import create_app
from app.accounts.tokens import shared_secret, token_keys
from tests.helpers import Api
from tests.token_attacks import NO_TOKEN, attacks

ALGORITHMS = ["HS256", "ES256"]


@pytest.fixture(scope="module", params=ALGORITHMS)
def signed_as(request, database, config):
    """The app with each algorithm: (its config, a test client)."""
    own = config.replace(jwt_algorithm=request.param)
    return own, create_app(own).test_client()


def _refusal(message: str) -> dict:
    return {"error": {"code": "unauthorized", "message": message}}


def test_a_token_is_a_jwt_with_the_users_claims(signed_as):
    config, client = signed_as
    api = Api(client)
    host, guest = api.host(), api.guest()
    keys = token_keys(config)
    for player, kind in ((host, "user"), (guest, "guest")):
        header = jwt.get_unverified_header(player.token)
        claims = jwt.decode(player.token, keys.verifying, algorithms=[config.jwt_algorithm],
                            audience=config.jwt_audience)
        assert header["alg"] == config.jwt_algorithm
        assert (claims["sub"], claims["kind"], claims["iss"]) == (player.user_id, kind, config.jwt_issuer)
        assert claims["exp"] - claims["iat"] == config.token_ttl_s
        assert uuid.UUID(claims["jti"]).version == 7
        assert api.get("/api/v1/auth/me", token=player.token, expect=200).get_json() == {
            "user_id": player.user_id, "kind": kind}


@pytest.mark.parametrize("route", ["/api/v1/auth/me", "/graphql"])
def test_every_forged_broken_or_expired_token_is_refused_with_its_401(signed_as, route):
    config, client = signed_as
    host = Api(client).host()
    refused = {}
    for name, (token, message) in attacks(config, host.user_id).items():
        headers = {"Authorization": f"Bearer {token}"}
        if route == "/graphql":
            response = client.post(route, json={"query": "query { leaderboard { score user_id user_name } }"},
                                   headers=headers)
            expected = {"errors": [{"message": message, "extensions": {"code": "unauthorized"}}]}
        else:
            response = client.get(route, headers=headers)
            expected = _refusal(message)
        refused[name] = (response.status_code, response.get_json())
        assert refused[name] == (401, expected), name
    assert "alg_none" in refused and ("alg_confusion" in refused or "raw_secret_key" in refused)
    assert client.get("/api/v1/auth/me").get_json() == _refusal(NO_TOKEN)


def test_a_logout_refuses_the_tokens_issued_before_it_and_not_one_issued_after(signed_as):
    _, client = signed_as
    api = Api(client)
    host = api.host()
    api.post("/api/v1/auth/logout", token=host.token, expect=204)
    assert api.get("/api/v1/auth/me", token=host.token, expect=401).get_json() == _refusal(
        "token revoked (signed out)")
    # Within the same second as the logout: the jti tells the millisecond.
    again = api.post("/api/v1/auth/login", {"username": host.nickname, "password": "correct horse"},
                     expect=200).get_json()["access_token"]
    assert api.get("/api/v1/auth/me", token=again, expect=200).get_json()["user_id"] == host.user_id


def test_another_jwt_library_verifies_a_token_with_the_jwks_or_the_shared_secret(signed_as):
    config, client = signed_as
    host = Api(client).host()
    published = client.get("/.well-known/jwks.json")
    assert published.status_code == 200 and "max-age" in published.headers["Cache-Control"]
    if config.jwt_algorithm == "ES256":
        (jwk,) = published.get_json()["keys"]
        assert (jwk["kty"], jwk["crv"], jwk["alg"], jwk["use"]) == ("EC", "P-256", "ES256", "sig")
        assert "d" not in jwk  # the public half only
        key = KeySet.import_key_set(published.get_json())
        assert jwt.get_unverified_header(host.token)["kid"] == jwk["kid"]
    else:
        assert published.get_json() == {"keys": []}  # a shared secret is never published
        key = OctKey.import_key(shared_secret(config.secret_key))
    token = jose_jwt.decode(host.token, key, algorithms=[config.jwt_algorithm])
    assert token.claims["sub"] == host.user_id
    assert token.claims["aud"] == config.jwt_audience and token.claims["exp"] > time.time()


def test_a_token_of_the_format_before_jwts_is_accepted_until_it_expires(api: Api, client, config):
    host = api.host()
    before = URLSafeTimedSerializer(config.secret_key, salt="livequiz.access-token").dumps(
        {"u": host.user_id, "g": False, "i": time.time_ns() // 1_000_000})
    assert api.get("/api/v1/auth/me", token=before, expect=200).get_json() == {
        "user_id": host.user_id, "kind": "user"}

    class PastSigner(TimestampSigner):
        def get_timestamp(self) -> int:
            return super().get_timestamp() - config.token_ttl_s - 60

    expired = URLSafeTimedSerializer(config.secret_key, salt="livequiz.access-token",
                                     signer=PastSigner).dumps(
        {"u": host.user_id, "g": False, "i": 0})
    assert api.get("/api/v1/auth/me", token=expired, expect=401).get_json() == _refusal("token expired")
    # And a logout revokes it like any other.
    api.post("/api/v1/auth/logout", token=host.token, expect=204)
    assert api.get("/api/v1/auth/me", token=before, expect=401).status_code == 401


def test_an_api_key_is_not_a_users_token_for_auth_me(api: Api):
    host = api.host()
    key = api.post("/api/v1/api-keys", {"name": "game server"}, token=host.token,
                   expect=201).get_json()["key"]
    assert key.startswith("lbk_")  # the prefix the edge passes through (scripts/haproxy.cfg)
    # A key is a valid credential of a kind that may not do this (the same answer as every other route).
    assert api.get("/api/v1/auth/me", token=key,
                   expect=403).get_json()["error"]["code"] == "credential_not_allowed"
