"""Start the journal: claim the data folder, clean what an interrupted run left, load the model once, serve.

One server per data folder: an advisory lock (``flock``) on ``<data_dir>/server.lock`` is held for the
server's life and released by the kernel when the process dies, however it dies.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import secrets
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from pipeline.journal.settings import JournalSettings
from pipeline.journal.store import LOCK_NAME, EntryStore, Recovery, StoreError

log = logging.getLogger(__name__)
REPO = Path(__file__).resolve().parents[2]


class JournalError(Exception):
    """The journal cannot start; the message is one line saying what to do."""


def project_version() -> str:
    from pipeline.config_files import ConfigFileError, read_table

    try:
        return str(read_table(REPO / "pyproject.toml")["project"]["version"])
    except (ConfigFileError, KeyError, TypeError):
        return "unknown"


def claim(data_dir: Path) -> IO[str]:
    """Hold the data folder's lock (kept open for the server's life), or say who holds it."""
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        fh = open(data_dir / LOCK_NAME, "a+")
    except OSError as exc:
        raise JournalError(f"cannot use {data_dir} as the data folder ({exc.strerror}); "
                           "pass another --data-dir") from exc
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.seek(0)
        holder = fh.read().strip() or "another process"
        fh.close()
        raise JournalError(f"another journal server (pid {holder}) is already using {data_dir}; stop it first, or "
                           "pass another --data-dir") from None
    fh.seek(0)
    fh.truncate()
    fh.write(str(os.getpid()))
    fh.flush()
    return fh


def listen(host: str, port: int) -> socket.socket:
    """Bind here, not in uvicorn, so that a busy port is one clear line and port 0 reports the port it got."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if isinstance(exc, socket.gaierror) or exc.errno == errno.EADDRNOTAVAIL:
            raise JournalError(f"--host {host} is not an address of this machine ({exc.strerror}); pass 127.0.0.1, "
                               "or an address this machine has (`ip addr` lists them)") from None
        reason = "is already in use" if exc.errno == errno.EADDRINUSE else f"cannot be used ({exc.strerror})"
        raise JournalError(f"{host}:{port} {reason}; pass another --port (or --port 0 for any free one)") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


@dataclass
class Started:
    url: str
    token: str | None
    recovery: Recovery


def serve(settings: JournalSettings, announce: Callable[[Started], None]) -> None:
    """Run until interrupted; ``announce`` is called once the server listens (the CLI prints it)."""
    import uvicorn

    from models.served import ModelLoadError, load_serving_model
    from pipeline.journal.app import create_app
    from pipeline.journal.classify import ClipClassifier

    token = settings.token
    if token is None and not settings.loopback:
        token = secrets.token_urlsafe(24)
    sock = listen(settings.host, settings.port)  # first: a busy port leaves no data folder behind
    try:  # then the model: a bad --model left a data folder (journal.db, clips/, a lock) behind
        model = load_serving_model(settings.model)
    except ModelLoadError as exc:
        sock.close()
        raise JournalError(str(exc)) from None
    # Everything the server writes (clips, database, lock) is its owner's alone (store.make_private).
    umask = os.umask(0o077)
    try:
        lock = claim(settings.data_dir)
        try:
            try:
                store = EntryStore(settings.data_dir)
            except StoreError as exc:
                raise JournalError(str(exc)) from None
            recovery = store.recover()
            classifier = ClipClassifier(model, settings.workers, settings.queue, settings.min_seconds,
                                        settings.max_seconds)
            app = create_app(settings, store, classifier, project_version(), token)
            config = uvicorn.Config(app, log_level="warning", access_log=False, server_header=False,
                                    timeout_graceful_shutdown=settings.shutdown_seconds)
            server = uvicorn.Server(config)
            host, port = sock.getsockname()[:2]
            shown = f"[{host}]" if ":" in host else host
            announce(Started(f"http://{shown}:{port}/", token, recovery))
            try:
                server.run(sockets=[sock])
            finally:
                classifier.close()
                store.close()
        finally:
            lock.close()
    finally:
        sock.close()
        os.umask(umask)
