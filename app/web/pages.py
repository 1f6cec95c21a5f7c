"""The web pages: the player's (`/`), the host's (`/host`) and a live board's (`/boards/<id>`). They call the
API from the browser."""
from __future__ import annotations

from flask import Blueprint, current_app, render_template, request

bp = Blueprint("pages", __name__)


@bp.get("/")
def player():
    return render_template("player.html")


@bp.get("/host")
def host():
    """The join link the room shows is the configured public address, the one its QR code draws."""
    return render_template("host.html", public_url=current_app.config["LIVEQUIZ"].public_base_url())


@bp.get("/boards/<board_id>")
def board(board_id: str):
    """A leaderboard, live: the page reads the board itself (an unknown one says so)."""
    top = request.args.get("top", "25")
    return render_template("board.html", board_id=board_id,
                           top=top if top.isdigit() and 3 <= int(top) <= 100 else "25")
