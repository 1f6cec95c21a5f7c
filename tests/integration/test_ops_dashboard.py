"""GET /ops, the operators' dashboard, as a client sees it without a browser: off without OPS_PASSWORD,
Basic credentials or a 401 (and a wrong password charged to the address's login budget), its files
from node_modules only, and a Prometheus that does not answer is a 503 of the panel, never a 500. The
dashboard on a real Prometheus, in Chromium: tests/e2e/test_prometheus.py."""
from __future__ import annotations

import base64
import re

from app import create_app
from tests.helpers import free_port

PASSWORD = "correct horse battery staple"


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


OPS = basic("ops", PASSWORD)


def test_without_ops_password_there_is_no_dashboard(client):
    for url in ("/ops", "/ops/api/panels/throughput", "/ops/api/targets", "/ops/assets/uplot.js"):
        refused = client.get(url, headers=OPS)
        assert refused.status_code == 404 and refused.get_json()["error"]["code"] == "not_found", url


def test_the_dashboard_asks_for_the_ops_password_and_charges_wrong_ones_to_the_address(config, database):
    app = create_app(config.replace(ops_password=PASSWORD, rate_login_per_address="3/minute"))
    client = app.test_client()
    address = {"environ_base": {"REMOTE_ADDR": "198.51.100.77"}}
    asked = client.get("/ops", **address)
    assert asked.status_code == 401 and asked.get_json()["error"]["code"] == "unauthorized"
    assert asked.headers["WWW-Authenticate"].startswith('Basic realm="LiveQuiz operations"')
    for wrong in (basic("ops", PASSWORD + "!"), basic("admin", PASSWORD),
                  {"Authorization": "Bearer " + PASSWORD}):
        refused = client.get("/ops/api/targets", headers=wrong, **address)
        assert refused.status_code == 401, wrong
    # The address's budget is spent: even the right password waits now, so guessing is as slow as sign-in.
    spent = client.get("/ops", headers=OPS, **address)
    assert spent.status_code == 429 and spent.get_json()["error"]["code"] == "too_many_requests"
    assert client.get("/ops", headers=OPS, environ_base={"REMOTE_ADDR": "198.51.100.78"}).status_code == 200


def test_the_page_loads_only_its_own_files(config, database):
    client = create_app(config.replace(ops_password=PASSWORD)).test_client()
    page = client.get("/ops", headers=OPS)
    assert page.status_code == 200 and page.mimetype == "text/html"
    assert page.headers["Cache-Control"] == "no-store"
    html = page.get_data(as_text=True)
    urls = re.findall(r'(?:src|href)="([^"]*)"', html)
    assert all(url.startswith(("/", "data:")) for url in urls), urls  # no CDN
    assert "<script>" not in html
    assets = sorted(url.split("?")[0] for url in urls if url.startswith("/ops/assets/"))
    assert assets == ["/ops/assets/uplot.css", "/ops/assets/uplot.js"]
    for asset in assets:
        served = client.get(asset, headers=OPS)
        assert served.status_code == 200 and len(served.data) > 1000, asset
    for other in ("package.json", "..%2Fpackage.json", "uPlot.esm.js"):
        assert client.get(f"/ops/assets/{other}", headers=OPS).status_code == 404
    assert 'data-panel="throughput"' in html and 'data-panel="consumer_lag"' in html
    assert 'data-panel="hops"' in html and 'data-panel="click_to_socket"' in html  # an event's journey


def test_bad_panel_requests_get_a_4xx_and_a_silent_prometheus_a_503(config, database):
    silent = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    client = create_app(config.replace(ops_password=PASSWORD, prometheus_url=silent)).test_client()
    unknown = client.get("/ops/api/panels/everything", headers=OPS)
    assert unknown.status_code == 404 and unknown.get_json()["error"]["code"] == "not_found"
    for minutes in ("0", "61", "-15", "15.5", "1" * 400, "abc"):
        bad = client.get(f"/ops/api/panels/throughput?minutes={minutes}", headers=OPS)
        assert bad.status_code == 400 and bad.get_json()["error"]["code"] == "invalid_request", minutes
    for url in ("/ops/api/panels/throughput?minutes=15", "/ops/api/targets"):
        down = client.get(url, headers=OPS)
        assert down.status_code == 503, url
        error = down.get_json()["error"]
        assert error["code"] == "unavailable" and "Prometheus" in error["message"]
    # The rest of the service does not notice.
    assert client.get("/healthz").status_code == 200
