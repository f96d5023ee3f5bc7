"""The journal server's options: defined once here; the CLI is generated from these fields."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")


def _opt(default, help: str, **extra):  # noqa: A002 - the argparse word
    return field(default=default, metadata={"help": help, **extra})


@dataclass(frozen=True)
class JournalSettings:
    host: str = _opt("127.0.0.1", "address to listen on; anything but loopback requires an access token")
    port: int = _opt(8000, "port to listen on (0: any free port, printed at start)")
    data_dir: Path = _opt(Path("journal"), "folder for the entries database and the clips (created if missing)")
    model: Path | None = _opt(None, "run folder, .pt checkpoint or .onnx export (default: the shipped model)")
    max_upload_mb: float = _opt(50.0, "larger uploads are refused with 413 while they stream")
    token: str | None = _opt(None, "access token every request must carry; generated and printed when the "
                                   "host is not loopback and none is given")
    workers: int = _opt(0, "clips classified at once (0: one per CPU core)")
    queue: int = _opt(16, "clips that may wait for a worker; beyond that a request gets 503 and Retry-After")
    min_seconds: float = _opt(2.0, "shorter clips are refused (the page records 4 s)")
    shutdown_seconds: float = _opt(60.0, "on Ctrl-C, how long to wait for clips still being received or classified "
                                         "before they are answered 503 and dropped")
    max_seconds: float = _opt(30.0, "longer clips are refused once decoding reaches this point, so a long "
                                    "video costs no more than this much of it")

    def __post_init__(self) -> None:
        problems = []
        if not 0 <= self.port <= 65535:
            problems.append(f"--port must be between 0 and 65535 (got {self.port})")
        if not self.max_upload_mb > 0:
            problems.append(f"--max-upload-mb must be > 0 (got {self.max_upload_mb})")
        if self.workers < 0:
            problems.append(f"--workers must be >= 0 (got {self.workers})")
        if self.queue < 0:
            problems.append(f"--queue must be >= 0 (got {self.queue})")
        if self.min_seconds <= 0:
            problems.append(f"--min-seconds must be > 0 (got {self.min_seconds})")
        if self.shutdown_seconds < 0:
            problems.append(f"--shutdown-seconds must be >= 0 (got {self.shutdown_seconds:g})")
        if self.max_seconds < self.min_seconds:
            problems.append(f"--max-seconds must be at least --min-seconds ({self.min_seconds:g}; got "
                            f"{self.max_seconds:g})")
        if self.token is not None and len(self.token) < 16:
            problems.append("--token must be at least 16 characters (or leave it out to get a generated one)")
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def loopback(self) -> bool:
        """True when only this machine can reach the server."""
        if self.host in LOOPBACK_NAMES:
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)
