"""How the text of an environment variable becomes a setting's value: the parsers that
app/core/config.py's settings name, each raising ValueError with what it expected."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import field
from typing import Any
from urllib.parse import urlsplit

OPS_PASSWORD_MIN_CHARS = 16  # the /ops dashboard's password: 16 random characters are beyond guessing


class ConfigError(ValueError):
    """A variable is missing or malformed; the message names it in one line."""


def _int(text: str) -> int:
    return int(text.strip())


def _positive_int(text: str) -> int:
    value = int(text.strip())
    if value < 1:
        raise ValueError("must be at least 1")
    return value


def _float(text: str) -> float:
    return float(text.strip())


def _positive_float(text: str) -> float:
    value = float(text.strip())
    if not value > 0:
        raise ValueError("must be more than 0")
    return value


def _fraction(text: str) -> float:
    value = float(text.strip())
    if not 0 <= value <= 1:
        raise ValueError("must be between 0 and 1")
    return value


def _str(text: str) -> str:
    if not text.strip():
        raise ValueError("empty")
    return text.strip()


def _bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("expected 1/0, true/false, yes/no or on/off")


def _rate(text: str) -> str:
    """A rate such as `10/minute` or `3000 per minute` (the `limits` library's notation)."""
    from limits import parse

    value = text.strip()
    try:
        parse(value)
    except ValueError:
        raise ValueError("expected a rate such as 10/minute") from None
    return value


def _nodes(text: str) -> str:
    """Comma-separated `host:port` seed nodes, or nothing (empty: not a cluster)."""
    nodes = [item.strip() for item in text.split(",") if item.strip()]
    for node in nodes:
        host, _, port = node.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"expected host:port, got {node!r}")
    return ",".join(nodes)


def parse_key_prefix(text: str) -> str:
    """A Redis key prefix: no brace (it would move a key's hash tag, so its slot), no glob character
    (the operator commands SCAN `<prefix>*`) and no blank."""
    value = text.strip()
    bad = sorted({c for c in value if c in "{}*?[]\\" or c.isspace()})
    if bad:
        raise ValueError(f"must not contain {' '.join(bad)}")
    return value


def _http_url(text: str) -> str:
    """An http(s) base address, e.g. `https://quiz.example.org` (no query, fragment or credentials), or
    nothing (empty: the setting's local default)."""
    value = text.strip().rstrip("/")
    if not value:
        return ""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment \
            or parts.username or parts.password:
        raise ValueError("expected http(s)://host[:port][/path], e.g. https://quiz.example.org")
    return value


def _ops_password(text: str) -> str:
    """Empty (the dashboard is off), or at least OPS_PASSWORD_MIN_CHARS characters: the password is the
    only thing between the internet and the dashboard, which HTTP Basic lets anyone try."""
    if text and len(text) < OPS_PASSWORD_MIN_CHARS:
        raise ValueError(f"expected at least {OPS_PASSWORD_MIN_CHARS} characters (or nothing: no dashboard)")
    return text


def _choice(*allowed: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        value = text.strip().lower()
        if value not in allowed:
            raise ValueError(f"expected one of {', '.join(allowed)}")
        return value

    return parse


def _jwt_algorithm(text: str) -> str:
    value = text.strip().upper()
    if value not in ("HS256", "ES256"):
        raise ValueError("expected HS256 or ES256")
    return value


def _setting(env: str, default: Any, parse: Callable[[str], Any] = _str, doc: str = "") -> Any:
    return field(default=default, metadata={"env": env, "parse": parse, "doc": doc})
