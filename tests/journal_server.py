"""A real journal server for tests: `python cli.py journal` in a subprocess on 127.0.0.1, any free port."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
START_TIMEOUT = 90.0  # model load and MediaPipe import on a busy 2-core machine


class JournalServer:
    """``start`` spawns the server and waits until it answers /api/health; ``url`` ends with a slash."""

    def __init__(self, data_dir: Path, port: int | None = None, args: list[str] | tuple[str, ...] = ()) -> None:
        self.data_dir = Path(data_dir)
        self.port = port or 0
        self.args = list(args)
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""
        self.token: str | None = None
        self.output: list[str] = []

    def command(self) -> list[str]:
        return [sys.executable, str(REPO / "cli.py"), "journal", "--data-dir", str(self.data_dir),
                "--port", str(self.port), *self.args]

    def start(self) -> JournalServer:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(self.command(), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, env=env)
        found = threading.Event()

        def read() -> None:
            assert self.proc is not None and self.proc.stdout is not None
            for line in self.proc.stdout:
                self.output.append(line.rstrip("\n"))
                if line.startswith("journal: http") and not found.is_set():
                    address = line.split()[1]
                    base, _, query = address.partition("?token=")
                    self.url, self.token = base, (query or None)
                    self.port = int(base.rstrip("/").rsplit(":", 1)[1])
                    found.set()

        threading.Thread(target=read, daemon=True).start()
        deadline = time.monotonic() + START_TIMEOUT
        while not found.wait(0.1):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("journal server did not start:\n" + "\n".join(self.output))
        while time.monotonic() < deadline:
            try:
                self.request("GET", "api/health")
                return self
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("journal server never answered /api/health:\n" + "\n".join(self.output))

    def stop(self) -> int | None:
        """SIGTERM (a graceful stop, as Ctrl-C); returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL: the server gets no chance to clean up."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> JournalServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- a small HTTP client (urllib: nothing between the test and the server) ----------------------------
    def request(self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None,
                timeout: float = 120.0) -> tuple[int, dict[str, str], bytes]:
        """(status, headers with lower-case names, body) of one request; 4xx/5xx are answers, not errors."""
        headers = dict(headers or {})
        if self.token and "Authorization" not in headers:
            headers["Authorization"] = f"Bearer {self.token}"
        req = urllib.request.Request(self.url + path.lstrip("/"), data=body, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()
        except urllib.error.HTTPError as err:
            return err.code, {k.lower(): v for k, v in err.headers.items()}, err.read()

    def json(self, method: str, path: str, body: object | None = None, **kw) -> tuple[int, dict]:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if data is not None else {}
        status, _, raw = self.request(method, path, data, headers, **kw)
        return status, json.loads(raw)

    def upload(self, path: str, clip: bytes, filename: str = "clip.mp4", note: str | None = None,
               headers: dict[str, str] | None = None) -> tuple[int, dict]:
        body, content_type = multipart({"clip": (filename, clip)}, {"note": note} if note is not None else {})
        status, _, raw = self.request("POST", path, body, {"Content-Type": content_type, **(headers or {})})
        return status, json.loads(raw)


def multipart(files: dict[str, tuple[str, bytes]], fields: dict[str, str]) -> tuple[bytes, str]:
    """A multipart/form-data body, as a browser's FormData sends it."""
    boundary = uuid.uuid4().hex
    parts = []
    for name, value in fields.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    for name, (filename, data) in files.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                     "Content-Type: application/octet-stream\r\n\r\n".encode() + data + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"
