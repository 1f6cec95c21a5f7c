"""API keys of the leaderboard service: a board owner's game servers write scores with them."""
from __future__ import annotations

from flask import Blueprint, jsonify

from app.accounts import api_keys
from app.web.api.core import current_principal, endpoint, parse_body, parse_uuid, require_registered
from app.web.api.schemas import ApiKeyBody
from app.web.extensions import engine, redis_client

bp = Blueprint("api_keys", __name__, url_prefix="/api/v1/api-keys")


@endpoint(bp, "", methods=["POST"], summary="Create an API key for your boards (shown once)", body=ApiKeyBody,
          responses={201: "the key: keep it, it is never shown again", 403: "registered_users_only"})
def create_key():
    require_registered("create API keys")
    body = parse_body(ApiKeyBody)
    return jsonify(api_keys.create_key(engine(), current_principal().user_id, body.name)), 201


@endpoint(bp, "", methods=["GET"], summary="Your API keys (never their secrets)",
          responses={200: "keys: id, name, created_at", 403: "registered_users_only"})
def list_keys():
    require_registered("have API keys")
    return jsonify(keys=api_keys.list_keys(engine(), current_principal().user_id))


@endpoint(bp, "/<key_id>", methods=["DELETE"], summary="Revoke one of your API keys",
          responses={204: "revoked: refused by every web process from now on", 403: "registered_users_only",
                     404: "no such API key", 503: "recorded but not yet in force everywhere: send it again"})
def revoke_key(key_id: str):
    require_registered("have API keys")
    api_keys.revoke_key(engine(), redis_client(), current_principal().user_id, parse_uuid(key_id, "API key"))
    return "", 204
