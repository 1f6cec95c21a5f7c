"""Liveness and readiness."""
from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify
from sqlalchemy import text

from app.concurrency import off_the_event_loop
from app.extensions import runtime
from app.metrics import OutboxCollector, render_latest
from app.services.outbox import outbox_lag

bp = Blueprint("health", __name__)


def _postgres_ok() -> bool:
    with runtime().engine.connect() as connection:
        return connection.execute(text("SELECT 1")).scalar() == 1


def _redis_ok() -> bool:
    return bool(runtime().redis.ping())


def _kafka_ok() -> bool:
    admin = runtime().kafka_admin
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


@bp.get("/metrics")
def metrics():
    engine, mode = runtime().engine, current_app.config["LIVEQUIZ"].relay_mode
    body, content_type = render_latest(OutboxCollector(lambda: outbox_lag(engine, mode)))
    return Response(body, content_type=content_type)
