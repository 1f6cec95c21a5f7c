"""Security headers on every response: the pages load only the project's own files, never in a frame."""
from __future__ import annotations

from flask import Flask

# Every script, style and image is served by this app; 'self' covers its own ws:// and wss:// too.
_POLICY = {
    "default-src": "'self'", "script-src": "'self'", "style-src": "'self'", "img-src": "'self' data:",
    "font-src": "'self'", "connect-src": "'self'", "object-src": "'none'", "base-uri": "'none'",
    "form-action": "'self'", "frame-ancestors": "'none'",
}


def content_security_policy(**more_sources: str) -> str:
    """The project's policy, with `more_sources` added to directives (font_src="data:" for font-src)."""
    policy = dict(_POLICY)
    for directive, sources in more_sources.items():
        name = directive.replace("_", "-")
        policy[name] = f"{policy[name]} {sources}"
    return "; ".join(f"{name} {sources}" for name, sources in policy.items())


CONTENT_SECURITY_POLICY = content_security_policy()
# The GraphQL playground's page (playground.py): GraphiQL's stylesheet carries its fonts as data: URLs. A
# font runs no code; scripts and styles stay the app's own files, as on every page.
PLAYGROUND_CSP = content_security_policy(font_src="data:")
HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
}


# (lower-case name, name, value): a response's own header of a name (a page's CSP) is kept.
_BY_NAME = [(name.lower(), name, value) for name, value in HEADERS.items()]


def register(app: Flask) -> None:
    @app.after_request
    def add_security_headers(response):
        # One pass over the response's headers, not werkzeug's setdefault per header (a scan and a
        # KeyError raised and caught for each absent one, on every response).
        headers = response.headers
        present = set(headers.keys(lower=True))
        for lower, name, value in _BY_NAME:
            if lower not in present:
                headers.add(name, value)
        return response
