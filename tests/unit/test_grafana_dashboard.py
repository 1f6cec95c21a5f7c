"""Compose's Grafana dashboard (scripts/grafana/dashboards/livequiz.json) is the /ops dashboard's panels:
the file is what scripts/grafana/dashboard.py writes from app/web/ops_dashboard.py PANELS, and each panel
queries what its /ops twin queries, over the provisioned Prometheus datasource."""
from __future__ import annotations

import json
from pathlib import Path

import yaml

from app.web.ops_dashboard import PANELS
from scripts.grafana import dashboard

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "scripts" / "grafana"


def test_the_dashboard_file_is_written_from_the_ops_panels():
    assert (GRAFANA / "dashboards" / "livequiz.json").read_text() == dashboard.render(), \
        "stale: .venv/bin/python -m scripts.grafana.dashboard > scripts/grafana/dashboards/livequiz.json"


def test_every_ops_panel_is_a_grafana_panel_with_the_same_queries():
    panels = json.loads((GRAFANA / "dashboards" / "livequiz.json").read_text())["panels"]
    assert [p["title"] for p in panels] == [panel.title for panel in PANELS.values()]
    assert "An event's hops, p99 per aggregate" in [p["title"] for p in panels]
    for grafana, ours in zip(panels, PANELS.values()):
        assert [t["expr"] for t in grafana["targets"]] == [
            q.promql.replace("{w}", "$__rate_interval") for q in ours.queries]
        assert all("{w}" not in t["expr"] and t["datasource"]["uid"] == "prometheus"
                   for t in grafana["targets"])
    assert dashboard.legend("p99 {aggregate}") == "p99 {{aggregate}}"


def test_the_provisioned_datasource_is_the_one_the_panels_name():
    datasources = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())
    assert [d["uid"] for d in datasources["datasources"]] == [dashboard.DATASOURCE["uid"]]
    providers = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "livequiz.yml").read_text())
    assert providers["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
