"""Whether `graftcv serve` can listen on its host and port, checked before the model loads and before any output."""

from __future__ import annotations

import errno
import socket

from graftcv.errors import GraftcvError


def url(host: str, port: int) -> str:
    """The service's address as a browser takes it (an IPv6 literal in brackets)."""
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def check_can_listen(host: str, port: int) -> None:
    """Bind every address `host` resolves to, as uvicorn will (SO_REUSEADDR, IPv6 sockets v6-only), and close
    them again; a busy port, an unknown host or an address of another machine is a GraftcvError."""
    if not 0 <= port <= 65535:
        raise GraftcvError(f"--port {port} is not a TCP port number (0 to 65535).")
    try:
        infos = set(socket.getaddrinfo(host, port, socket.AF_UNSPEC, socket.SOCK_STREAM, flags=socket.AI_PASSIVE))
    except (socket.gaierror, UnicodeError):
        raise GraftcvError(f"--host {host!r} is neither an IP address nor a name this machine can resolve.") from None
    for family, kind, proto, _, address in sorted(infos, key=str):
        try:
            sock = socket.socket(family, kind, proto)
        except OSError:  # a family this machine does not support: asyncio skips it too
            continue
        with sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                sock.bind(address)
            except OSError as error:
                raise GraftcvError(_why(error, host, port)) from None


def _why(error: OSError, host: str, port: int) -> str:
    if error.errno == errno.EADDRINUSE:
        return f"Port {port} on {host} is already in use: choose another with --port."
    if error.errno == errno.EACCES:
        return f"Port {port} on {host} needs more privileges than this user has: choose one above 1023 with --port."
    if error.errno == errno.EADDRNOTAVAIL:
        return f"{host} is not an address of this machine: choose one of its own with --host (127.0.0.1 by default)."
    reason = (error.strerror or str(error)).lower()
    return f"Cannot listen on port {port} of {host} ({reason}): check --host and --port."
