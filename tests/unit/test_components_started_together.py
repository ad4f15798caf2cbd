"""Components started together (the demo's seven processes) are waited for together: the
wait ends when the last is ready, and at once, naming it, when one of them exits."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from gun_tools.processes import ChildExited, ProcessGroup, free_port, wait_all_ready


class Ready(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/readyz" else 503)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def ready_server() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Ready)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()
    thread.join()


def test_the_wait_ends_when_every_component_answers(ready_server: int) -> None:
    wait_all_ready({"hub": f"http://127.0.0.1:{ready_server}/readyz"}, timeout_s=10, group=None)


def test_a_component_not_ready_in_time_is_named(ready_server: int) -> None:
    with pytest.raises(TimeoutError, match=r"not ready within 1s: adapter-dga$"):
        wait_all_ready(
            {
                "hub": f"http://127.0.0.1:{ready_server}/readyz",
                "adapter-dga": f"http://127.0.0.1:{ready_server}/never",
            },
            timeout_s=1,
        )


def test_a_component_that_exits_ends_the_wait_at_once_with_its_log(tmp_path: Path) -> None:
    with ProcessGroup(tmp_path / "logs", stop_together=True) as group:
        group.start("adapter-nowhere", ["adapter", "nowhere"])
        with pytest.raises(ChildExited, match=r"adapter-nowhere exited with code [1-9]") as err:
            # Long enough that only the exit can end it within the test's own timeout.
            wait_all_ready(
                {"adapter-nowhere": f"http://127.0.0.1:{free_port()}/readyz"},
                timeout_s=600,
                group=group,
            )
    assert "nowhere" in str(err.value).split(":", 1)[1]  # the end of its log follows
