"""Pictures of questions: uploaded by registered users (`POST /api/v1/images`), served to anyone
(`GET /images/<id>`, what a player's <img> loads); and the QR code of a live game's join link
(`GET /join/<code>.svg`), for the host's screen."""
from __future__ import annotations

import re

from flask import Blueprint, Response, current_app, jsonify, request

from app.core.errors import Gone, NotFound
from app.quiz.service import images, sessions
from app.web.api.core import (
    ApiError,
    current_principal,
    endpoint,
    hit_public_read_budgets,
    parse_uuid,
    read_raw_body,
    require_registered,
)
from app.web.extensions import get_db, rate_limits
from app.web.ratelimits import limit

bp = Blueprint("images", __name__)

# A picture's id names its bytes for good: caches keep it for a year without asking again.
IMMUTABLE = "public, max-age=31536000, immutable"
# Whether a game is live changes: a QR code is kept a minute, by the host's browser only.
QR_CACHE = "private, max-age=60"
_JOIN_CODE = re.compile(r"[0-9]{6}")


@endpoint(bp, "/api/v1/images", methods=["POST"], summary="Upload a picture for a question",
          raw_body=images.MEDIA_TYPES, limits=("image_uploads_per_user",),
          responses={201: "the picture: id, url (what a question's image_url shows), content_type (read from "
                          "its bytes), size",
                     400: "empty_body: no bytes were sent",
                     403: "registered_users_only: guests cannot upload pictures",
                     413: "body_too_large: over IMAGE_MAX_BYTES; image_quota_exceeded: the account's "
                          "pictures would take more than IMAGE_QUOTA_BYTES (quota_bytes, used_bytes)",
                     429: "too_many_requests: over RATE_IMAGE_UPLOADS_PER_USER (see Retry-After)",
                     415: "unsupported_image: the bytes are no PNG, JPEG, GIF or WebP picture (whatever the "
                          "Content-Type says)"})
def upload_image():
    require_registered("upload pictures")
    config = current_app.config["LIVEQUIZ"]
    data = read_raw_body(config.image_max_bytes)
    return jsonify(images.store(get_db(), current_principal().user_id, data, config.image_quota_bytes)), 201


@bp.get("/images/<image_id>")
def get_image(image_id: str):
    """A picture's bytes, for anyone who has its address (a player's browser)."""
    hit_public_read_budgets()
    image = images.load(get_db(), parse_uuid(image_id, "image"))
    if image is None:
        raise ApiError(404, "not_found", "no such image")
    response = Response(image.data, content_type=image.content_type)
    response.headers["Cache-Control"] = IMMUTABLE
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.set_etag(image.sha256)
    return response.make_conditional(request)


@bp.get("/join/<join_code>.svg")
def join_qr(join_code: str):
    """The QR code of the player page with the PIN filled in, while a game with that PIN is live.
    A miss counts like a join-code lookup that finds nothing: the codes cannot be guessed here either."""
    hit_public_read_budgets()
    budgets, misses = rate_limits(), limit("join_misses_per_address")
    budgets.check(misses)
    try:
        if not _JOIN_CODE.fullmatch(join_code):
            raise NotFound("not_found", "no live session has that join code")
        sessions.find_by_join_code(get_db(), join_code)
    except (NotFound, Gone):  # an ended game has no QR code either
        budgets.hit(misses)
        raise ApiError(404, "not_found", "no live session has that join code") from None
    # The configured address, never the request's Host header: a forged Host would make a QR code of
    # another site.
    public_url = current_app.config["LIVEQUIZ"].public_base_url()
    svg = images.join_qr_svg(f"{public_url}/?code={join_code}", join_code)
    response = Response(svg, content_type="image/svg+xml")
    response.headers["Cache-Control"] = QR_CACHE
    return response
