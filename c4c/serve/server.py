"""Binding the socket and running uvicorn for `c4c serve`."""

from __future__ import annotations

import ipaddress
import socket

from c4c.errors import C4CError

LOOPBACK_NAMES = ("localhost",)


def is_loopback(host: str) -> bool:
    """Whether ``host`` only listens on this machine (127.0.0.0/8, ::1, localhost)."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: a free one); C4CError when it cannot be had."""
    if not 0 <= port <= 65535:
        raise C4CError(f"--port must be between 0 and 65535, got {port}")
    try:
        infos = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise C4CError(f"cannot listen on {host!r}: {exc.strerror}", hint="pass --host 127.0.0.1 or an address "
                                                                         "of this machine") from None
    family, _, _, _, address = infos[0]
    try:
        sock = socket.create_server(address, family=family, backlog=128)
    except OSError as exc:
        hint = "pass another --port (0 picks a free one)" if exc.errno in (98, 48, 10048) else None
        raise C4CError(f"cannot listen on {host}:{port}: {exc.strerror or exc}", hint=hint) from None
    return sock


def url_of(sock: socket.socket) -> str:
    """The page's address for a bound socket."""
    host, port = sock.getsockname()[:2]
    if ":" in host:
        host = f"[{host}]"
    if host in ("0.0.0.0", "[::]"):
        host = "127.0.0.1" if host == "0.0.0.0" else "[::1]"
    return f"http://{host}:{port}/"


def make_server(app, *, quiet: bool = False):
    """A uvicorn server for ``app`` (run it with ``.run(sockets=[sock])``; stop it with ``should_exit``)."""
    import uvicorn

    config = uvicorn.Config(app, log_level="warning" if quiet else "info", access_log=not quiet,
                            server_header=False, timeout_graceful_shutdown=5)
    return uvicorn.Server(config)
