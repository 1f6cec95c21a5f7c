"""The Grafana dashboard of Compose's `monitoring` profile: the /ops panels (app/web/ops_dashboard.py
PANELS, their queries and legends), as Grafana's JSON model, over the provisioned Prometheus datasource.

    .venv/bin/python -m scripts.grafana.dashboard > scripts/grafana/dashboards/livequiz.json

(tests/unit/test_compose.py fails while the file is stale.)
"""
from __future__ import annotations

import json
import re
import sys

from app.web.ops_dashboard import PANELS

DATASOURCE = {"type": "prometheus", "uid": "prometheus"}  # scripts/grafana/provisioning/datasources
UNITS = {"s": "s", "per s": "ops", "messages": "short", "sockets": "short"}
COLUMNS, WIDTH, HEIGHT = 2, 12, 8


def legend(text: str) -> str:
    """/ops's `{label}` is Grafana's `{{label}}`."""
    return re.sub(r"\{(\w+)\}", r"{{\1}}", text)


def dashboard() -> dict:
    panels = []
    for index, (name, panel) in enumerate(PANELS.items()):
        panels.append({
            "id": index + 1, "type": "timeseries", "title": panel.title, "datasource": DATASOURCE,
            "gridPos": {"x": (index % COLUMNS) * WIDTH, "y": (index // COLUMNS) * HEIGHT,
                        "w": WIDTH, "h": HEIGHT},
            "fieldConfig": {"defaults": {"unit": UNITS.get(panel.unit, "short")}, "overrides": []},
            "options": {"legend": {"displayMode": "list", "placement": "bottom"}},
            "targets": [{"refId": chr(ord("A") + i), "datasource": DATASOURCE,
                         "expr": query.promql.replace("{w}", "$__rate_interval"),
                         "legendFormat": legend(query.legend)} for i, query in enumerate(panel.queries)],
            "description": f"/ops panel `{name}`",
        })
    return {"uid": "livequiz-ops", "title": "Live quiz: operations", "schemaVersion": 39, "version": 1,
            "editable": True, "refresh": "15s", "time": {"from": "now-15m", "to": "now"},
            "tags": ["livequiz"], "panels": panels}


def render() -> str:
    return json.dumps(dashboard(), indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
