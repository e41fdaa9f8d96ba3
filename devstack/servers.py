"""Loopback WSGI servers on daemon threads that bind loudly and stop promptly."""

from __future__ import annotations

import socket
import threading
from typing import Any

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

# How often a serving loop looks for a shutdown request; it bounds stop()'s latency.
POLL_INTERVAL = 0.05


class QuietRequestHandler(WSGIRequestHandler):
    """One access-log line per request drowns the stack's own output."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


class ServerThread:
    """A threaded werkzeug server on host:port (0 picks a free port), served from a thread."""

    def __init__(
        self,
        app: Any,
        *,
        name: str,
        host: str = "127.0.0.1",
        port: int = 0,
        request_handler: type[WSGIRequestHandler] = QuietRequestHandler,
    ) -> None:
        # Bind here, in the caller's thread: a taken port must fail the start with an
        # OSError, not kill a background thread (werkzeug's make_server would sys.exit, and
        # moto's ThreadedMotoServer then waits forever for a server that never came up).
        with socket.create_server((host, port)) as listener:
            self.port: int = listener.getsockname()[1]
            self._server: BaseWSGIServer = make_server(
                host,
                self.port,
                app,
                threaded=True,
                request_handler=request_handler,
                fd=listener.fileno(),
            )
        self.name = name
        self.host = host
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": POLL_INTERVAL},
            name=f"{name}-{self.port}",
            daemon=True,
        )
        self._thread.start()

    @property
    def app(self) -> Any:
        return self._server.app

    @app.setter
    def app(self, app: Any) -> None:
        """Swap the application: later requests go to it (the socket stays bound)."""
        self._server.app = app

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving and close the socket; safe to call twice."""
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout)
