"""Run the API under uvicorn and say "serving" only once the port accepts connections.

Printing the URL before uvicorn has bound the socket sends people (and scripts waiting for the
line) to a port that refuses them; a port already in use must be an error with a hint, not a log line.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Callable

from ciyuan.errors import CiyuanError


def check_port_free(host: str, port: int) -> None:
    """Refuse early, with what to do, when another process holds the port."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise CiyuanError(f"port {port} on {host} is already in use",
                                  hint=f"stop the other server, or pass another port: --port {port + 1}") from None
            raise CiyuanError(f"cannot listen on {host}:{port}: {exc.strerror}",
                              hint="pass another --host or --port") from None


def run(app: object, host: str, port: int, *, on_ready: Callable[[], None] | None = None,
        log_level: str = "warning") -> None:
    """Serve ``app`` until Ctrl-C; ``on_ready`` runs once uvicorn has bound the socket."""
    import uvicorn

    check_port_free(host, port)

    class _Server(uvicorn.Server):
        async def startup(self, sockets: list | None = None) -> None:
            await super().startup(sockets=sockets)
            if self.started and on_ready is not None:
                on_ready()

    config = uvicorn.Config(app, host=host, port=port, log_level=log_level)
    _Server(config).run()
