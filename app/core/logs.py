"""Logging for every process: JSON lines for machines, or plain text for a terminal.

Fields that tie a line to the domain (`session_id`, `event_id`, `request_id`) are passed with
`extra={...}` and appear as keys of the JSON object. Nothing here ever logs a header, a query string
or a body, so tokens and passwords stay out of the logs.
"""
from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

from app.core.config import Config

CONTEXT_FIELDS = ("request_id", "session_id", "event_id", "method", "route", "status", "duration_ms",
                  "count", "reason", "partition", "offset")


class JsonFormatter(logging.Formatter):
    def __init__(self, process_name: str):
        super().__init__()
        self.process_name = process_name

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": (time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
                   + f".{int(record.msecs):03d}Z"),
            "level": record.levelname.lower(),
            "process": self.process_name,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                line[name] = str(value) if not isinstance(value, (int, float, bool)) else value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def __init__(self, process_name: str):
        super().__init__(f"%(asctime)s {process_name} %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        context = " ".join(f"{name}={getattr(record, name)}" for name in CONTEXT_FIELDS
                           if getattr(record, name, None) is not None)
        return f"{text} [{context}]" if context else text


def configure_logging(config: Config, process_name: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    formatter = JsonFormatter(process_name) if config.log_format == "json" else TextFormatter(process_name)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(config.log_level.upper())
    for noisy in ("urllib3", "kafka", "werkzeug"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


class RateLimitedLog:
    """Log a recurring failure once per interval instead of once per occurrence, and its end once."""

    def __init__(self, logger: logging.Logger, interval_s: float = 10.0):
        self.logger = logger
        self.interval_s = interval_s
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def warning(self, key: str, message: str, *args: Any, **kwargs: Any) -> None:
        now = time.monotonic()
        if now - self._last.get(key, -self.interval_s) >= self.interval_s:
            suppressed = self._suppressed.pop(key, 0)
            suffix = f" ({suppressed} more since last report)" if suppressed else ""
            self.logger.warning(message + suffix, *args, **kwargs)
            self._last[key] = now
        else:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1

    def recovered(self, key: str, message: str, *args: Any) -> None:
        """Log `message` once when a failure reported under `key` has ended (nothing if none was)."""
        if self._last.pop(key, None) is not None:
            self._suppressed.pop(key, None)
            self.logger.info(message, *args)
