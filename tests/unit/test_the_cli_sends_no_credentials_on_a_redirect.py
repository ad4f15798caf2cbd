"""The command-line clients (``gun-hub status``, ``stats``, ``dlq``...) send an officer's
password or a trader's token to the hub's URL only. urllib followed a redirect with the
``Authorization`` header copied, to another host or from https down to http: a front
proxy's redirect (or one an attacker placed) got the credentials (found by review, stop
46). A redirect is now answered as such, not followed."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from gun_hub.cli.hub_client import ask_hub


def serving(handler: type[BaseHTTPRequestHandler]) -> Iterator[HTTPServer]:
    server = HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def elsewhere() -> Iterator[tuple[HTTPServer, list[str | None]]]:
    """Another host: what it was sent as Authorization, per request."""
    seen: list[str | None] = []

    class Record(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.headers.get("Authorization"))
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *_: object) -> None:
            pass

    for server in serving(Record):
        yield server, seen


def test_a_redirect_is_answered_not_followed_with_the_credentials(
    elsewhere: tuple[HTTPServer, list[str | None]],
) -> None:
    target, seen = elsewhere
    location = f"http://127.0.0.1:{target.server_port}/stolen"

    class Redirect(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(302)
            self.send_header("Location", location)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_: object) -> None:
            pass

    for hub in serving(Redirect):
        code, body = ask_hub(f"http://127.0.0.1:{hub.server_port}/stats", "Basic c2VjcmV0")
    assert seen == [], "the credentials went to the redirect's host"
    assert code == 302
    assert location in body["error"]
    assert "not followed" in body["error"]
