"""The two web pages: the player's (`/`) and the host's (`/host`). They call the API from the browser."""
from __future__ import annotations

from flask import Blueprint, render_template

bp = Blueprint("pages", __name__)


@bp.get("/")
def player():
    return render_template("player.html")


@bp.get("/host")
def host():
    return render_template("host.html")
