"""Accounts and access tokens."""
from __future__ import annotations

from flask import Blueprint, current_app, jsonify

from app.api.core import endpoint, parse_body
from app.api.schemas import GuestBody, LoginBody, RegisterBody
from app.extensions import get_db
from app.services import accounts
from app.tokens import issue_token

bp = Blueprint("auth", __name__, url_prefix="/api/v1/auth")


def token_response(user_id, is_guest: bool) -> dict:
    config = current_app.config["LIVEQUIZ"]
    return {"access_token": issue_token(config.secret_key, user_id, is_guest), "token_type": "Bearer",
            "expires_in": config.token_ttl_s}


@endpoint(bp, "/register", methods=["POST"], summary="Register a host or player account", body=RegisterBody,
          auth=False, responses={201: "the new user", 409: "username_taken"})
def register():
    body = parse_body(RegisterBody)
    user = accounts.register(get_db(), body.username, body.password)
    return jsonify(user_id=str(user.id), username=user.username), 201


@endpoint(bp, "/login", methods=["POST"], summary="Exchange a username and password for a token",
          body=LoginBody, auth=False, responses={200: "an access token", 401: "invalid_credentials"})
def login():
    body = parse_body(LoginBody)
    user = accounts.authenticate(get_db(), body.username, body.password)
    return jsonify(token_response(user.id, is_guest=False))


@endpoint(bp, "/guest", methods=["POST"], summary="Play with a nickname only", body=GuestBody, auth=False,
          responses={201: "an access token for a new guest"})
def guest():
    body = parse_body(GuestBody)
    user = accounts.create_guest(get_db(), body.nickname)
    return jsonify(**token_response(user.id, is_guest=True), user_id=str(user.id)), 201
