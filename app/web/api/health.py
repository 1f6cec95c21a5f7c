"""Liveness and readiness. (Metrics are not served here: see app/core/metrics.py.)"""
from __future__ import annotations

from flask import Blueprint, jsonify
from sqlalchemy import text

from app.core.concurrency import off_the_event_loop
from app.web.extensions import engine, kafka_admin, redis_client

bp = Blueprint("health", __name__)


def _postgres_ok() -> bool:
    with engine().connect() as connection:
        return connection.execute(text("SELECT 1")).scalar() == 1


def _redis_ok() -> bool:
    return bool(redis_client().ping())


def _kafka_ok() -> bool:
    admin = kafka_admin()
    metadata = off_the_event_loop(lambda: admin.list_topics(timeout=2))
    return bool(metadata.brokers)


CHECKS = {"postgres": _postgres_ok, "redis": _redis_ok, "kafka": _kafka_ok}


@bp.get("/healthz")
@bp.get("/health")  # seed 001's name
def healthz():
    return jsonify(status="ok")


@bp.get("/readyz")
@bp.get("/ready")  # seed 001's name
def readyz():
    components = {}
    for name, check in CHECKS.items():
        try:
            components[name] = "up" if check() else "down"
        except Exception:  # any failure to answer means the component is down
            components[name] = "down"
    down = [name for name, state in components.items() if state != "up"]
    if down:
        return jsonify(status="unavailable", components=components,
                       error={"code": "not_ready", "message": f"down: {', '.join(down)}"}), 503
    return jsonify(status="ready", components=components)
