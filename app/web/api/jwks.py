"""`GET /.well-known/jwks.json`: the public key of the access tokens (ES256) as a JWK Set (RFC 7517),
so a gateway verifies tokens offline; an empty set with HS256, whose key is a shared secret."""
from __future__ import annotations

from flask import Blueprint, current_app, jsonify

from app.accounts.tokens import token_keys
from app.web.api.core import hit_public_read_budgets

bp = Blueprint("jwks", __name__)


@bp.get("/.well-known/jwks.json")
def jwks():
    hit_public_read_budgets()
    response = jsonify(token_keys(current_app.config["LIVEQUIZ"]).jwks())
    # Gateways fetch it again now and then; a new key is published before it signs (docs/gateways.md).
    response.headers["Cache-Control"] = "public, max-age=300"
    return response
