"""A response in one `send`. gunicorn writes a response's head, then its body: two system calls, and a
keep-alive client woken twice, for each of the API's small JSON answers. Installed in each web worker
(gunicorn.conf.py `post_fork`), `install` makes a response whose whole body comes as one chunk of its
stated Content-Length (what Flask sends for a JSON body) go out with its head in one `send`; anything
else (no length, chunked, streamed, a file, a body-less response) is written as gunicorn writes it."""
from __future__ import annotations

from gunicorn import util
from gunicorn.http import wsgi


def install() -> None:
    """Replace gunicorn's `Response.write` (once). It reads gunicorn's Response as of the version in
    requirements.lock; tests/unit/test_one_send.py checks the bytes it writes against gunicorn's own."""
    write = wsgi.Response.write
    if getattr(write, "one_send", False):
        return

    def one_send_write(self, arg):
        if (self.headers_sent or self.chunked or self._omits_body or not isinstance(arg, bytes) or not arg
                or self.response_length != len(arg)):
            return write(self, arg)
        head = self.default_headers()
        head.extend([f"{k}: {v}\r\n" for k, v in self.headers])  # as send_headers writes them
        util.write(self.sock, util.to_bytestring("".join(head) + "\r\n", "latin-1") + arg)
        self.headers_sent = True
        self.sent += len(arg)
        return None

    one_send_write.one_send = True
    wsgi.Response.write = one_send_write
