"""Every error leaves as JSON: `{"error": {"code", "message"}}`, never an HTML page or a trace."""
from __future__ import annotations

import json
import logging

from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException

from app.core import errors as service_errors
from app.web.api.core import ApiError, error_body
from app.web.failures import INTERNAL_MESSAGE, STORE_UNAVAILABLE, UNAVAILABLE_MESSAGE

log = logging.getLogger(__name__)


_SERVICE_STATUS = {
    service_errors.Invalid: 400, service_errors.Unauthorized: 401, service_errors.Forbidden: 403,
    service_errors.NotFound: 404, service_errors.Conflict: 409, service_errors.Gone: 410,
    service_errors.TooLarge: 413, service_errors.UnsupportedMediaType: 415, service_errors.Unprocessable: 422,
    service_errors.TooManyRequests: 429,
    service_errors.Unavailable: 503, service_errors.OutcomeUnknown: 504,
}

_CODES = {
    400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
    409: "conflict", 413: "body_too_large", 415: "unsupported_media_type", 422: "unprocessable",
    429: "too_many_requests",
}


def write_server_error(sock, status_int: int, reason: str, _detail: str) -> None:
    """gunicorn's own refusals (a request line or header too long, a malformed request) in the API's
    JSON error shape instead of its HTML page; installed over gunicorn.util.write_error in each worker.
    The detail is left out: it echoes what the client sent."""
    from gunicorn import util

    code = _CODES.get(status_int,
                      {414: "uri_too_long", 431: "headers_too_large"}.get(status_int, "bad_request"))
    body = json.dumps(error_body(code, reason.lower())).encode()
    head = (f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode("latin1")
    util.write_nonblock(sock, head + body)


def register(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def api_error(exc: ApiError):
        return jsonify(exc.body()), exc.status

    @app.errorhandler(service_errors.ServiceError)
    def service_error(exc: service_errors.ServiceError):
        status = _SERVICE_STATUS.get(type(exc), 400)
        response = jsonify({"error": {"code": exc.code, "message": exc.message, **exc.extra}})
        if isinstance(exc, service_errors.TooManyRequests):
            response.headers["Retry-After"] = str(exc.retry_after_s)
        elif isinstance(exc, (service_errors.Unavailable, service_errors.OutcomeUnknown)):
            # Both are "send it again" (a failover's, a busy moment's): when, as for a store that is down.
            response.headers["Retry-After"] = "1"
        return response, status

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        status = exc.code or 500
        code = _CODES.get(status, "http_error")
        response = jsonify(error_body(code, exc.description or exc.name))
        for name, value in exc.get_headers():
            if name.lower() == "allow":
                response.headers[name] = value
        return response, status

    def unavailable(exc: Exception):
        log.warning("a store is unavailable: %s", type(exc).__name__)
        response = jsonify(error_body("unavailable", UNAVAILABLE_MESSAGE))
        response.headers["Retry-After"] = "1"
        return response, 503

    for store_error in STORE_UNAVAILABLE:
        app.register_error_handler(store_error, unavailable)

    @app.errorhandler(Exception)
    def unexpected_error(exc: Exception):
        log.exception("unhandled error")
        return jsonify(error_body("internal_error", INTERNAL_MESSAGE)), 500
