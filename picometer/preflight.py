"""What must hold before the daemon starts, each failure said in a line or two that name the cause and the
fix: the listener's port is free, and the directories it writes are writable by whoever runs it."""

from __future__ import annotations

import errno
import os
import pwd
import socket
import tempfile
from pathlib import Path

from picometer.config import Config


class CannotStart(Exception):
    """A failure a person can fix: the message says what and how."""


def bind_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP: asyncio sets TCP_NODELAY only on such sockets; without it replies stall ~40 ms.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(1024)
    sock.setblocking(False)
    return sock


def take_port(config: Config) -> socket.socket:
    """The listening socket, or CannotStart when the address is taken or not ours to use."""
    host, port = config.server.host, config.server.port
    try:
        return bind_socket(host, port)
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            raise CannotStart(
                f"picometer cannot listen on {host}:{port}: something already does (another picometer? "
                "`picometer status` tells). Stop it, or set [server].listen to a free port."
            ) from None
        if e.errno == errno.EACCES:
            raise CannotStart(
                f"picometer cannot listen on {host}:{port}: ports below 1024 need root. "
                "Set [server].listen to a port from 1024 up (the default is 8787)."
            ) from None
        raise CannotStart(f"picometer cannot listen on {host}:{port}: {e.strerror}. Check [server].listen.") from None


def directories(config: Config) -> list[tuple[str, Path]]:
    s = config.storage
    return [
        ("[storage].data_dir", Path(s.data_dir)),
        ("[storage].log_dir", Path(s.log_dir)),
        ("[export].dir", Path(config.export.dir)),
    ]


def writable(config: Config) -> list[str]:
    """A line for each directory picometer cannot create or write; none when all are fine."""
    return [problem for key, path in directories(config) if (problem := _problem(key, path)) is not None]


def _problem(key: str, path: Path) -> str | None:
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            return None
    except OSError as e:
        owner = _owner(path)
        whom = f" (it belongs to {owner})" if owner else ""
        return (
            f"picometer cannot write {path}{whom}: {e.strerror}. Run picometer as that user, or set {key} to a "
            f"directory {_me()} can write."
        )


def _owner(path: Path) -> str | None:
    """Who owns the path, or the nearest parent that exists."""
    for candidate in (path, *path.parents):
        try:
            return pwd.getpwuid(candidate.stat().st_uid).pw_name
        except (OSError, KeyError):
            continue
    return None


def _me() -> str:
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return f"uid {os.geteuid()}"


def check_start(config: Config) -> socket.socket:
    """Everything `picometer run` needs before it builds anything: the port, then the directories."""
    sock = take_port(config)
    problems = writable(config)
    if problems:
        sock.close()
        raise CannotStart("\n".join(problems))
    return sock
