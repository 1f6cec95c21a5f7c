"""What a gateway in front of the webs needs to refuse bad access tokens itself (docs/gateways.md).

`python -m app.web.edge DIR` writes, from the environment's configuration and the app's own routes:
- `DIR/public-routes.txt`: one regex a line matching `METHOD /path` of every API route that needs no
  token (the reads open to anyone, sign-up and sign-in, the OpenAPI document). Every other request under
  /api/ must carry a valid access token at the edge: a route added later is guarded until it is listed.
- `DIR/jwt-public.pem` (ES256): the public key that verifies access tokens.
- `DIR/haproxy.env` (mode 0600): the variables scripts/haproxy.cfg reads, one `NAME=value` a line. With
  HS256 it holds the shared secret itself: HAProxy 2.6's `jwt_verify` takes an HMAC key only inline.
"""
from __future__ import annotations

import os
import re
import sys
from pathlib import Path

from flask import Flask

from app.accounts.api_keys import PREFIX as API_KEY_PREFIX
from app.accounts.tokens import MAX_TOKEN_BYTES, shared_secret, token_keys
from app.core.config import Config, load_config_or_exit

_CONVERTER = re.compile(r"<(?:([^:>]+):)?[^>]+>")


def _path_regex(rule: str) -> str:
    """A Flask rule as a regex of the raw path: a variable matches one segment (`path:` more)."""
    parts, end = [], 0
    for match in _CONVERTER.finditer(rule):
        parts.append(re.escape(rule[end:match.start()]))
        parts.append(".+" if match.group(1) == "path" else "[^/]+")
        end = match.end()
    parts.append(re.escape(rule[end:]))
    return "".join(parts)


def public_routes(app: Flask) -> list[str]:
    """`^(METHODS) /path$` of each API route that needs no token: every method of every rule under
    /api/ except those an `endpoint(auth=True)` guards (HEAD with its GET)."""
    from app.web.api.core import ROUTE_DOCS

    guarded: dict[str, set[str]] = {}
    for doc in ROUTE_DOCS:
        if doc.auth:
            guarded.setdefault(doc.rule, set()).update(doc.methods)
    lines = ["^OPTIONS /api/"]  # what a route allows is no secret (Flask answers it, never the view)
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        if not rule.rule.startswith("/api/"):
            continue
        closed = guarded.get(rule.rule, set()) | {"OPTIONS"}
        if "GET" in closed:
            closed |= {"HEAD"}
        methods = sorted((rule.methods or set()) - closed)
        line = f"^({'|'.join(methods)}) {_path_regex(rule.rule)}$"
        if methods and line not in lines:
            lines.append(line)
    return lines


def write_edge_files(config: Config, app: Flask, directory: Path) -> dict[str, str]:
    """Write the edge's files into `directory`; the environment scripts/haproxy.cfg reads."""
    directory.mkdir(parents=True, exist_ok=True)
    routes = directory / "public-routes.txt"
    routes.write_text("# Written by `python -m app.web.edge` from the app's routes: "
                      "the API routes open to anyone.\n"
                      + "".join(line + "\n" for line in public_routes(app)))
    keys = token_keys(config)
    if keys.algorithm == "ES256":
        key = directory / "jwt-public.pem"
        key.write_bytes(keys.public_pem())
        key_value = str(key.resolve())
    else:
        key_value = shared_secret(config.secret_key)
    env = {"LB_JWT_ALG": keys.algorithm, "LB_JWT_KEY": key_value, "LB_JWT_ISSUER": keys.issuer,
           "LB_JWT_AUDIENCE": keys.audience, "LB_JWT_MAX_BYTES": str(MAX_TOKEN_BYTES),
           "LB_API_KEY_PREFIX": API_KEY_PREFIX, "LB_PUBLIC_ROUTES": str(routes.resolve())}
    env_file = directory / "haproxy.env"
    fd = os.open(env_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write("".join(f"{name}={value}\n" for name, value in env.items()))
    return env


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m app.web.edge DIR", file=sys.stderr)
        return 2
    from app.web import create_app

    config = load_config_or_exit()
    write_edge_files(config, create_app(config), Path(argv[0]))
    print(f"edge: {argv[0]}/haproxy.env, public-routes.txt ({config.jwt_algorithm})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
