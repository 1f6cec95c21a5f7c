"""What every request of the web app shares, whatever its route."""
from __future__ import annotations

import flask
from flask.sessions import NullSession

from app import create_app


def test_a_request_opens_no_cookie_session():
    app = create_app()
    with app.test_request_context("/healthz", headers={"Cookie": "session=eyJ4IjoxfQ.abc.def"}):
        assert isinstance(flask.session, NullSession)
    response = app.test_client().get("/healthz", headers={"Cookie": "session=eyJ4IjoxfQ.abc.def"})
    assert response.status_code == 200
    assert "Set-Cookie" not in response.headers
