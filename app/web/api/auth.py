"""Accounts, access tokens, logout and the one-use tickets that open room sockets."""
from __future__ import annotations

from flask import Blueprint, current_app, jsonify

from app.accounts import users
from app.accounts.hashing import LOGINS_BUSY
from app.accounts.tokens import issue_token
from app.quiz.service.rooms import room_member
from app.web import tickets
from app.web.api.core import current_principal, endpoint, parse_body, parse_uuid
from app.web.api.schemas import GuestBody, LoginBody, RegisterBody, TicketBody
from app.web.extensions import engine, get_db, password_hashing, rate_limits, redis_client
from app.web.ratelimits import Limit, client_address

bp = Blueprint("auth", __name__, url_prefix="/api/v1")
_BUSY = (f"too_many_requests (a rate limit) or {LOGINS_BUSY} (too many logins from the address wait for "
         "their password check), with Retry-After")


def token_response(user_id, is_guest: bool) -> dict:
    config = current_app.config["LIVEQUIZ"]
    return {"access_token": issue_token(config, user_id, is_guest), "token_type": "Bearer",
            "expires_in": config.token_ttl_s}


@endpoint(bp, "/auth/register", methods=["POST"], summary="Register a host or player account",
          body=RegisterBody, auth=False, limits=("signup_per_address",),
          responses={201: "the new user", 409: "username_taken", 429: _BUSY})
def register():
    body = parse_body(RegisterBody)
    user = users.register(get_db(), password_hashing(), client_address(), body.username, body.password)
    return jsonify(user_id=str(user.id), username=user.username), 201


@endpoint(bp, "/auth/login", methods=["POST"], summary="Exchange a username and password for a token",
          body=LoginBody, auth=False, limits=("login_per_address",),
          responses={200: "an access token", 401: "invalid_credentials", 429: _BUSY})
def login():
    body = parse_body(LoginBody)
    rate_limits().hit(Limit("login_per_username", body.username.lower()))
    user = users.authenticate(get_db(), password_hashing(), client_address(), body.username, body.password)
    return jsonify(token_response(user.id, is_guest=False))


@endpoint(bp, "/auth/guest", methods=["POST"], summary="Play with a nickname only", body=GuestBody,
          auth=False, limits=("signup_per_address",), responses={201: "an access token for a new guest"})
def guest():
    body = parse_body(GuestBody)
    user = users.create_guest(get_db(), body.nickname)
    return jsonify(**token_response(user.id, is_guest=True), user_id=str(user.id)), 201


@endpoint(bp, "/auth/logout", methods=["POST"],
          summary="Sign out everywhere: revoke every access token you hold",
          responses={204: "every access token issued until now is refused from now on",
                     503: "recorded but not yet in force everywhere: send it again"})
def logout():
    users.revoke_tokens(engine(), redis_client(), current_principal().user_id)
    return "", 204


@endpoint(bp, "/auth/me", methods=["GET"], summary="Who the bearer is: a gateway's check of an access token",
          responses={200: "{user_id, kind}: the bearer's account, kind `user` or `guest`"})
def me():
    # Only what the token proves, and the logout check every request makes: no query of its own.
    principal = current_principal()
    return jsonify(user_id=str(principal.user_id), kind=principal.kind)


@endpoint(bp, "/ws-tickets", methods=["POST"], summary="A one-use ticket that opens a room socket",
          body=TicketBody, limits=("sockets_per_user",),
          responses={201: "the ticket, usable once within expires_in seconds: /ws/sessions/{id}?ticket=",
                     403: "not_in_session", 404: "no such session"})
def create_ticket():
    body = parse_body(TicketBody)
    session_id = parse_uuid(body.session_id, "session")
    principal = current_principal()
    room_member(engine(), session_id, principal.user_id)
    ticket = tickets.issue(redis_client(), principal, session_id)
    return jsonify(ticket=ticket, expires_in=tickets.TICKET_TTL_S), 201
