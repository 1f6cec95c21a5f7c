"""The floor the answer route is held to (benchmark 14): a bare Flask app whose one route records an
answer with the same SQL and the same group commit (`AnswerBatcher`), and nothing else: no token (the
bearer is the user's id), no rate limit, no schema, no request log, no headers. Served by gunicorn
with the web's worker class and worker count, on a port of its own:

    python -m gunicorn -c empty.conf.py -k gevent -w 2 -b 127.0.0.1:PORT \
        'tests.bench.bare_answer:create_bare_app()'
"""
from __future__ import annotations

import json
import uuid

from flask import Flask, request

from app.core.config import load_config
from app.core.db import get_engine
from app.core.errors import ServiceError
from app.quiz.service.answers import AnswerBatcher, AnswerRequest

PATH = "/bare/sessions/<session_id>/answers"


def create_bare_app() -> Flask:
    config = load_config()
    batcher = AnswerBatcher(get_engine(config.database_url, pool_size=config.web_db_pool),
                            max_batch=config.answer_batch_max)
    app = Flask(__name__)

    @app.post(PATH)
    def answer(session_id: str):
        body = json.loads(request.get_data())
        user_id = uuid.UUID(request.headers["Authorization"].partition(" ")[2])
        try:
            receipt = batcher.submit(AnswerRequest(user_id, uuid.UUID(session_id),
                                                   uuid.UUID(body["question_id"]), body["choice"]))
        except ServiceError as exc:
            return {"error": {"code": exc.code}}, 409  # any refusal: none is expected here
        return receipt.view(), 200 if receipt.replayed else 201

    return app
