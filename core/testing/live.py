"""A real HTTP server for tests: the application served by uvicorn on a free loopback port, in a thread.

Tests that must prove what a partner sees (signatures, idempotency under concurrency, rate limits,
webhooks) drive this server through the partner SDK, over real sockets, rather than calling the
ASGI app in process.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import uvicorn

STARTUP_TIMEOUT_SECONDS = 15.0


class LiveServer:
    """``LiveServer(asgi_app)`` starts at once; ``url`` is its base URL; ``stop()`` ends it."""

    def __init__(self, asgi_app: Any, *, host: str = "127.0.0.1") -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((host, 0))
        self.host = host
        self.port: int = self._socket.getsockname()[1]
        self.url = f"http://{host}:{self.port}"
        config = uvicorn.Config(asgi_app, log_config=None, access_log=False, lifespan="on", ws="none",
                                timeout_graceful_shutdown=5)
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self._socket]},
                                        name=f"uvicorn-{self.port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"uvicorn did not start on {self.url}")
            time.sleep(0.01)

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(timeout=10)
        self._socket.close()

    def __enter__(self) -> LiveServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]
