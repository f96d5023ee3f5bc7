"""`cli.py fetch` against a real HTTP server on 127.0.0.1: download, resume, checks, safe extraction."""

from __future__ import annotations

import argparse
import hashlib
import io
import logging
import os
import re
import socket
import stat
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from scrapers.archive import ArchiveError, Limits, extract_zip, safe_relative
from scrapers.fetch import ConfigError, resolve_source
from scrapers.fetch_command import add_fetch, parse_size

# ---------------------------------------------------------------------------------------------- server


class Route:
    def __init__(self, body: bytes = b"", status: int = 200, break_after: int | None = None, ranges: bool = True):
        self.body, self.status, self.break_after, self.ranges = body, status, break_after, ranges
        self.requests: list[dict[str, str]] = []


class Server:
    """A ThreadingHTTPServer in a thread; routes are added by the tests, every request is recorded."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                route = server.routes.get(self.path)
                if route is None:
                    self.send_error(404)
                    return
                first = not route.requests
                route.requests.append(dict(self.headers))
                if route.status != 200:
                    self.send_error(route.status)
                    return
                body = route.body
                m = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))
                try:
                    if m and route.ranges:
                        start = int(m.group(1))
                        self.send_response(206)
                        self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                        self.send_header("Content-Length", str(len(body) - start))
                        self.send_header("ETag", '"v1"')
                        self.end_headers()
                        self.wfile.write(body[start:])
                        return
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body)))
                    self.send_header("ETag", '"v1"')
                    self.send_header("Content-Type", "application/zip")
                    self.end_headers()
                    if first and route.break_after is not None:
                        # The connection drops halfway through the first download.
                        self.wfile.write(body[: route.break_after])
                        self.wfile.flush()
                        self.connection.shutdown(socket.SHUT_RDWR)
                        self.close_connection = True
                        return
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):  # gdown hung up on purpose (resume)
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def add(self, name: str, route: Route) -> str:
        self.routes[f"/{name}"] = route
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{name}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def server():
    s = Server()
    yield s
    s.close()


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No .env of the repo, no DATASET_DOWNLOAD_ID of the developer, no proxy between us and 127.0.0.1."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DATASET_DOWNLOAD_ID", raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


# ---------------------------------------------------------------------------------------------- archives


def tiny_mp4(path: Path, seed: int) -> bytes:
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (32, 32))
    rng = np.random.default_rng(seed)
    for _ in range(5):
        writer.write(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8))
    writer.release()
    return path.read_bytes()


def make_zip(entries: list[tuple[str | zipfile.ZipInfo, bytes]], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as zf:
        for name, data in entries:
            zf.writestr(name, data)
    return buf.getvalue()


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    tmp = tmp_path_factory.mktemp("mp4")
    return {"Happy/Happy_0001.mp4": tiny_mp4(tmp / "a.mp4", 1), "Sad/Sad_0002.mp4": tiny_mp4(tmp / "b.mp4", 2)}


@pytest.fixture(scope="module")
def clips_zip(clips: dict[str, bytes]) -> bytes:
    directory = zipfile.ZipInfo("Happy/")
    return make_zip([(directory, b""), *clips.items(), ("__MACOSX/Happy/._Happy_0001.mp4", b"apple double")])


def big_zip(size: int = 1_500_000) -> bytes:
    return make_zip([("Happy/long.mp4", np.random.default_rng(7).bytes(size))], zipfile.ZIP_STORED)


def run_fetch(*argv: str) -> int:
    """The CLI path: cli.py does not register fetch yet, so build the parser the way it will."""
    parser = argparse.ArgumentParser(prog="cli.py")
    sub = parser.add_subparsers()
    add_fetch(sub)
    args = parser.parse_args(["fetch", *argv])
    return args.func(args)


def files_under(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() or p.is_symlink()}


def error_line(capsys: pytest.CaptureFixture) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# ---------------------------------------------------------------------------------------------- tests


def test_fetch_extracts_and_rerun_does_nothing(server, clips, clips_zip, tmp_path, capsys, caplog):
    caplog.set_level(logging.INFO, logger="scrapers")
    url = server.add("clips.zip", route := Route(clips_zip))
    digest = hashlib.sha256(clips_zip).hexdigest()
    assert run_fetch("--url", url, "--out", "raw", "--sha256", digest) == 0
    out = capsys.readouterr().out
    raw = tmp_path / "raw"
    assert (raw / "clips.zip").read_bytes() == clips_zip
    assert files_under(raw / "clips") == set(clips)  # macOS junk left out, nothing else
    for name, data in clips.items():
        assert (raw / "clips" / name).read_bytes() == data
    assert "extracted 2 files" in out and "left out 1" in out and "prepare --source raw/clips" in out
    umask = os.umask(0o022)
    os.umask(umask)
    assert stat.S_IMODE((raw / "clips").stat().st_mode) == 0o777 & ~umask  # not mkdtemp's owner-only mode
    assert stat.S_IMODE((raw / "clips.zip").stat().st_mode) == 0o666 & ~umask
    # Nothing temporary is left: no partial download, no staging name, no extraction folder.
    assert sorted(p.name for p in raw.iterdir() if not p.name.startswith(".fetch-")) == ["clips", "clips.zip"]

    requests_before = len(route.requests)
    assert run_fetch("--url", url, "--out", "raw") == 0
    assert "nothing to do" in capsys.readouterr().out
    assert len(route.requests) == requests_before  # not even a request

    # Without the record (deleted by hand) nothing says whose archive that is: --sha256 vouches for it,
    # and then the archive and its extraction are recognised, still without a request.
    next(raw.glob(".fetch-*.json")).unlink()
    assert run_fetch("--url", url, "--out", "raw", "--quiet") == 1
    assert "no record says it came from this source" in (line := error_line(capsys)) and digest in line
    assert run_fetch("--url", url, "--out", "raw", "--quiet", "--sha256", digest) == 0
    assert len(route.requests) == requests_before
    assert "clips already holds the files of clips.zip: not extracting again" in caplog.text
    assert files_under(raw / "clips") == set(clips)

    # The archive deleted to save space: the recorded extraction still counts.
    (raw / "clips.zip").unlink()
    assert run_fetch("--url", url, "--out", "raw") == 0
    assert "since deleted" in capsys.readouterr().out


def test_interrupted_download_resumes_with_range(server, tmp_path, capsys):
    body = big_zip()
    url = server.add("flaky.zip", route := Route(body, break_after=600_000))
    assert run_fetch("--url", url, "--out", "raw", "--retries", "0", "--quiet") == 1
    line = error_line(capsys)
    assert "incomplete" in line and "run the same command again to resume" in line
    raw = tmp_path / "raw"
    assert not (raw / "flaky.zip").exists()  # never a partial download under the final name
    parts = list(raw.glob("*.part"))
    assert len(parts) == 1
    kept = parts[0].stat().st_size  # what gdown had written: whole 512 KiB chunks of the 600 kB received
    assert 0 < kept <= 600_000

    assert run_fetch("--url", url, "--out", "raw", "--retries", "0", "--quiet") == 0
    assert route.requests[-1].get("Range") == f"bytes={kept}-"
    assert (raw / "flaky.zip").read_bytes() == body
    assert not list(raw.glob("*.part"))
    assert (raw / "flaky" / "Happy" / "long.mp4").stat().st_size == 1_500_000


def test_dropped_connection_resumes_within_one_run(server, tmp_path):
    body = big_zip()
    url = server.add("flaky2.zip", route := Route(body, break_after=600_000))
    assert run_fetch("--url", url, "--out", "raw", "--retries", "1", "--quiet", "--no-extract") == 0
    assert len(route.requests) == 2 and route.requests[0].get("Range") is None
    resumed = re.fullmatch(r"bytes=(\d+)-", route.requests[1].get("Range", ""))
    assert resumed and 0 < int(resumed.group(1)) <= 600_000  # from what had arrived, whatever gdown's chunk size
    assert (tmp_path / "raw" / "flaky2.zip").read_bytes() == body
    assert not (tmp_path / "raw" / "flaky2").exists()


def test_server_without_range_support_starts_over(server, tmp_path, capsys, caplog):
    caplog.set_level(logging.INFO, logger="scrapers")
    body = big_zip()
    url = server.add("norange.zip", Route(body, break_after=600_000, ranges=False))
    assert run_fetch("--url", url, "--out", "raw", "--retries", "0", "--quiet") == 1
    caplog.clear()
    assert run_fetch("--url", url, "--out", "raw", "--retries", "0", "--quiet") == 0
    assert "127.0.0.1 cannot resume a download (or the file changed): starting over" in caplog.text
    assert (tmp_path / "raw" / "norange.zip").read_bytes() == body
    assert not list((tmp_path / "raw").glob("*.part"))


def _outside_marker(tmp_path: Path) -> Path:
    return tmp_path / "outside" / "evil.txt"


def _slip_zip(tmp_path: Path) -> bytes:
    return make_zip([("Happy/ok.txt", b"fine"), ("../outside/evil.txt", b"pwned")])


def _absolute_zip(tmp_path: Path) -> bytes:
    return make_zip([("Happy/ok.txt", b"fine"), (str(_outside_marker(tmp_path)), b"pwned")])


def _symlink_zip(tmp_path: Path) -> bytes:
    link = zipfile.ZipInfo("Happy/link")
    link.create_system = 3
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    # The classic attack: a link to a folder outside, then a file written "through" it.
    return make_zip([("Happy/ok.txt", b"fine"), (link, str(tmp_path / "outside").encode()),
                     ("Happy/link/evil.txt", b"pwned")])


@pytest.mark.parametrize(("name", "build", "reason"), [
    ("slip", _slip_zip, "'..' in its path"),
    ("absolute", _absolute_zip, "absolute path"),
    ("symlink", _symlink_zip, "symbolic link"),
])
def test_unsafe_entries_are_refused_and_nothing_is_written(server, tmp_path, capsys, name, build, reason):
    (tmp_path / "outside").mkdir()
    url = server.add(f"{name}.zip", Route(build(tmp_path)))
    raw = tmp_path / "raw" / "nested"  # so that '../outside' from the target is inside tmp_path
    assert run_fetch("--url", url, "--out", str(raw), "--quiet") == 1
    line = error_line(capsys)
    assert f"refused to extract {name}.zip" in line and reason in line
    assert files_under(tmp_path / "outside") == set()
    assert not (raw / name).exists()  # not even the safe entry: all or nothing
    assert sorted(p.name for p in raw.iterdir() if not p.name.startswith(".fetch-")) == [f"{name}.zip"]
    assert not any(p.is_symlink() for p in tmp_path.rglob("*"))


def test_zip_bomb_by_ratio_is_refused(server, tmp_path, capsys):
    bomb = make_zip([("Happy/zeros.mp4", bytes(8 * 1024**2))])  # 8 MiB of zeros in ~8 KiB
    url = server.add("bomb.zip", Route(bomb))
    assert run_fetch("--url", url, "--out", "raw", "--quiet") == 1
    line = error_line(capsys)
    assert "compression ratio" in line and "zip bomb" in line
    assert not (tmp_path / "raw" / "bomb").exists()
    assert not list((tmp_path / "raw").glob(".bomb.extracting-*"))


def test_total_size_limit(server, tmp_path, capsys):
    rng = np.random.default_rng(3)
    archive = make_zip([(f"Happy/{i}.mp4", rng.bytes(300_000)) for i in range(2)], zipfile.ZIP_STORED)
    url = server.add("big.zip", Route(archive))
    assert run_fetch("--url", url, "--out", "raw", "--quiet", "--max-size", "500K") == 1
    assert "more than the limit of 500.0 KiB" in error_line(capsys)
    assert not (tmp_path / "raw" / "big").exists()
    assert run_fetch("--url", url, "--out", "raw", "--quiet", "--max-size", "1M") == 0  # archive kept: no download
    assert len(files_under(tmp_path / "raw" / "big")) == 2


def test_lying_headers_are_caught_while_extracting(tmp_path):
    """Declared sizes under the limit, real data over it: the real bytes decide, nothing stays behind."""
    data = np.random.default_rng(5).bytes(2_000_000)
    archive = bytearray(make_zip([("Happy/a.mp4", data)], zipfile.ZIP_STORED))
    small = (1000).to_bytes(4, "little")
    local, central = archive.find(b"PK\x03\x04"), archive.find(b"PK\x01\x02")
    archive[local + 22: local + 26] = small  # uncompressed size in the local header
    archive[central + 24: central + 28] = small  # and in the central directory
    path = tmp_path / "lying.zip"
    path.write_bytes(archive)
    with pytest.raises(ArchiveError):
        extract_zip(path, tmp_path / "out", Limits(max_bytes=100_000))
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["lying.zip"]


def test_not_a_zip(server, tmp_path, capsys):
    url = server.add("page.zip", Route(b"<!DOCTYPE html><html><body>Quota exceeded</body></html>"))
    assert run_fetch("--url", url, "--out", "raw", "--quiet") == 1
    line = error_line(capsys)
    assert "not a zip archive" in line and "HTML page" in line
    assert not (tmp_path / "raw" / "page.zip").exists()
    assert (tmp_path / "raw" / "page.zip.rejected").exists()


def test_checksum_mismatch(server, clips_zip, tmp_path, capsys):
    url = server.add("sum.zip", Route(clips_zip))
    assert run_fetch("--url", url, "--out", "raw", "--quiet", "--sha256", "0" * 64) == 1
    line = error_line(capsys)
    assert "checksum mismatch" in line and hashlib.sha256(clips_zip).hexdigest() in line
    assert not (tmp_path / "raw" / "sum.zip").exists() and not (tmp_path / "raw" / "sum").exists()
    assert run_fetch("--url", url, "--out", "raw", "--quiet", "--sha256", "abc") == 2
    assert "64 hex digits" in error_line(capsys)


@pytest.mark.parametrize(("status", "expected"), [(404, "not found: HTTP 404"), (403, "download refused: HTTP 403")])
def test_http_errors(server, tmp_path, capsys, status, expected):
    url = server.add(f"status{status}.zip", Route(status=status))
    assert run_fetch("--url", url, "--out", "raw", "--quiet") == 1
    line = error_line(capsys)
    assert expected in line and url in line
    assert not list((tmp_path / "raw").glob("status*"))


def test_connection_refused(tmp_path, capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    assert run_fetch("--url", f"http://127.0.0.1:{port}/x.zip", "--out", "raw", "--quiet", "--retries", "0") == 1
    assert "cannot reach 127.0.0.1" in error_line(capsys)


def test_source_from_dotenv(server, clips_zip, tmp_path, capsys):
    url = server.add("fromenv.zip", Route(clips_zip))
    (tmp_path / ".env").write_text(f"# dataset\nDATASET_DOWNLOAD_ID={url}\nPEXELS_API_KEY=\n")
    assert run_fetch("--out", "raw", "--quiet") == 0
    assert (tmp_path / "raw" / "fromenv" / "Sad" / "Sad_0002.mp4").is_file()
    (tmp_path / "other.env").write_text(f"DATASET_DOWNLOAD_ID='{url}'\n")
    (tmp_path / ".env").unlink()
    assert run_fetch("--env-file", "other.env", "--out", "raw", "--quiet") == 0
    assert "nothing to do" in capsys.readouterr().out


def test_no_source_configured(tmp_path, capsys):
    assert run_fetch("--out", "raw") == 2
    line = error_line(capsys)
    assert "no .env file" in line and "DATASET_DOWNLOAD_ID" in line and "--id" in line and "--url" in line
    (tmp_path / ".env").write_text("DATASET_DOWNLOAD_ID=\n")  # as copied from .env.example
    assert run_fetch("--out", "raw") == 2
    assert ".env has no DATASET_DOWNLOAD_ID" in error_line(capsys)
    assert not (tmp_path / "raw").exists()


def test_resolve_source(tmp_path, monkeypatch):
    drive_id = "1a2B3c4D5e6F7g8H9i0JkLmNoPqRsTuVw"
    (tmp_path / ".env").write_text(f"DATASET_DOWNLOAD_ID={drive_id}\n")
    source = resolve_source(env_file=tmp_path / ".env")
    assert (source.kind, source.value, source.url) == ("id", drive_id, f"https://drive.google.com/uc?id={drive_id}")
    assert source.is_drive and "in " in source.origin
    monkeypatch.setenv("DATASET_DOWNLOAD_ID", "https://example.org/data.zip")
    assert resolve_source(env_file=tmp_path / ".env").kind == "url"  # the environment wins, as with load_dotenv
    share = f"https://drive.google.com/file/d/{drive_id}/view?usp=sharing"
    assert resolve_source(url=share).is_drive
    assert resolve_source(file_id=drive_id).origin == "--id"
    for bad in ["http://example.org/data.zip", "ftp://example.org/x.zip",
                "https://drive.google.com/drive/folders/1a2B3c4D5e6F7g8H9i0JkLmNoPqRsTuVw"]:
        with pytest.raises(ConfigError):
            resolve_source(url=bad)
    with pytest.raises(ConfigError):
        resolve_source(file_id="not an id!")
    with pytest.raises(ConfigError, match="10 or more letters"):  # "abc123" fit the rule the message gave
        resolve_source(file_id="abc123")


def test_existing_folder_is_not_overwritten_without_force(server, clips, clips_zip, tmp_path, capsys):
    url = server.add("mine.zip", Route(clips_zip))
    (tmp_path / "raw" / "mine").mkdir(parents=True)
    (tmp_path / "raw" / "mine" / "notes.txt").write_text("my own work")
    assert run_fetch("--url", url, "--out", "raw", "--quiet") == 1
    assert "already exists and does not match" in error_line(capsys)
    assert (tmp_path / "raw" / "mine" / "notes.txt").read_text() == "my own work"
    # --force replaces only a folder this command extracted: this one is the user's.
    assert run_fetch("--url", url, "--out", "raw", "--quiet", "--force") == 1
    assert "no record says this command extracted mine.zip there" in error_line(capsys)
    assert (tmp_path / "raw" / "mine" / "notes.txt").read_text() == "my own work"
    (tmp_path / "raw" / "mine" / "notes.txt").unlink()
    (tmp_path / "raw" / "mine").rmdir()
    assert run_fetch("--url", url, "--out", "raw", "--quiet") == 0
    (tmp_path / "raw" / "mine" / "Happy" / "Happy_0001.mp4").write_bytes(b"damaged")
    assert run_fetch("--url", url, "--out", "raw", "--quiet", "--force") == 0  # recorded as ours: replaced
    assert files_under(tmp_path / "raw" / "mine") == set(clips)
    assert (tmp_path / "raw" / "mine" / "Happy" / "Happy_0001.mp4").read_bytes() == clips["Happy/Happy_0001.mp4"]
    assert not [p for p in (tmp_path / "raw").iterdir() if ".old-" in p.name or ".extracting-" in p.name]


@pytest.mark.parametrize("target", ["raw", ".", "raw/d.zip"])
def test_extract_to_out_or_its_parent_is_refused(server, clips_zip, tmp_path, capsys, target):
    url = server.add("d.zip", Route(clips_zip))
    (tmp_path / "raw" / "scraped").mkdir(parents=True)
    (tmp_path / "raw" / "scraped" / "keep.txt").write_text("a sibling")
    assert run_fetch("--url", url, "--out", "raw", "--quiet", "--no-extract") == 0
    assert run_fetch("--url", url, "--out", "raw", "--quiet", "--extract-to", target, "--force") == 2
    line = error_line(capsys)
    assert f"cannot extract to {target}" in line and ("--out" in line or "the archive" in line)
    assert (tmp_path / "raw" / "d.zip").read_bytes() == clips_zip
    assert (tmp_path / "raw" / "scraped" / "keep.txt").read_text() == "a sibling"
    # archive.extract_zip refuses it too, whoever calls it
    with pytest.raises(ArchiveError, match="contains the archive"):
        extract_zip(tmp_path / "raw" / "d.zip", tmp_path / "raw", replace=True)
    assert (tmp_path / "raw" / "scraped" / "keep.txt").is_file() and (tmp_path / "raw" / "d.zip").is_file()


def test_same_file_name_from_another_source_is_not_reused(server, clips_zip, tmp_path, capsys):
    v1 = big_zip(1_200_000)
    url1 = server.add("v1/clips.zip", route1 := Route(v1, break_after=600_000))
    url2 = server.add("v2/clips.zip", route2 := Route(clips_zip))
    raw = tmp_path / "raw"
    # v1 breaks off halfway: its partial must not be resumed for v2, which has the same name.
    assert run_fetch("--url", url1, "--out", "raw", "--quiet", "--retries", "0") == 1
    capsys.readouterr()
    parts = list(raw.glob("*.part"))
    assert len(parts) == 1
    assert run_fetch("--url", url2, "--out", "raw", "--quiet", "--retries", "0") == 0
    assert [r.get("Range") for r in route2.requests] == [None]
    assert (raw / "clips.zip").read_bytes() == clips_zip and parts[0].exists()  # v1's partial left alone
    # Back to v1: clips.zip is v2's, so v1 stops, even with --force, and nothing is overwritten.
    for extra in ([], ["--force"]):
        before = len(route1.requests)
        assert run_fetch("--url", url1, "--out", "raw", "--quiet", *extra) == 1
        line = error_line(capsys)
        assert "downloaded from another source" in line and "/v2/clips.zip" in line and "another --out" in line
        assert len(route1.requests) == before
        assert (raw / "clips.zip").read_bytes() == clips_zip and (raw / "clips" / "Sad" / "Sad_0002.mp4").is_file()
    # In another folder v1 resumes nothing of v2's and gets its own bytes.
    assert run_fetch("--url", url1, "--out", "raw1", "--quiet", "--no-extract") == 0
    assert (tmp_path / "raw1" / "clips.zip").read_bytes() == v1


def test_corrupt_archive_is_rejected_and_downloaded_again(server, clips_zip, tmp_path, capsys):
    data = np.random.default_rng(9).bytes(200_000) + bytes(200_000)  # compressible: a real deflate stream
    good = make_zip([("Happy/a.mp4", data)])
    bad = bytearray(good)
    start = good.find(b"Happy/a.mp4") + len("Happy/a.mp4")
    for i in range(start + 1000, start + 1100):
        bad[i] ^= 0xFF  # flip bytes inside the compressed data; the central directory stays intact
    assert zipfile.is_zipfile(io.BytesIO(bytes(bad)))
    url = server.add("corrupt.zip", route := Route(bytes(bad)))
    assert run_fetch("--url", url, "--out", "raw", "--quiet") == 1
    line = error_line(capsys)
    assert "corrupt" in line and "downloads it again" in line and "corrupt.zip.rejected" in line
    raw = tmp_path / "raw"
    assert not (raw / "corrupt.zip").exists() and (raw / "corrupt.zip.rejected").is_file()
    assert not (raw / "corrupt").exists() and not list(raw.glob(".corrupt.extracting-*"))
    route.body = good
    assert run_fetch("--url", url, "--out", "raw", "--quiet") == 0
    assert len(route.requests) == 2 and (raw / "corrupt" / "Happy" / "a.mp4").read_bytes() == data


def test_secrets_of_the_url_stay_out_of_messages_and_records(server, clips_zip, tmp_path, capsys):
    url = server.add("tok.zip?token=SECRET123", Route(clips_zip))
    secret_url = url.replace("http://", "http://someone:PASSWORD9@")
    assert run_fetch("--url", secret_url, "--out", "raw", "--no-extract") == 0
    captured = capsys.readouterr()
    shown = captured.out + captured.err
    assert "From: " + url.split("?")[0] in shown
    records = "".join(p.read_text() for p in (tmp_path / "raw").glob(".fetch-*.json"))
    for secret in ("SECRET123", "PASSWORD9", "someone"):
        assert secret not in shown and secret not in records
    missing = server.add("gone.zip?token=SECRET123", Route(status=404))
    assert run_fetch("--url", missing.replace("http://", "http://someone:PASSWORD9@"), "--out", "raw",
                     "--quiet") == 1
    line = error_line(capsys)
    assert "not found: HTTP 404" in line and "gone.zip?..." in line
    assert "SECRET123" not in line and "PASSWORD9" not in line
    with pytest.raises(ConfigError) as info:
        resolve_source(url="http://someone:PASSWORD9@example.org/x.zip?token=SECRET123")
    assert "SECRET123" not in str(info.value) and "PASSWORD9" not in str(info.value)


def test_safe_relative_and_sizes():
    assert str(safe_relative("./Happy//a.mp4")) == "Happy/a.mp4"
    assert str(safe_relative("Happy\\a.mp4")) == "Happy/a.mp4"
    assert safe_relative("./") is None
    for bad in ["..\\evil.txt", "C:/evil.txt", "\\\\server\\share\\x", "a/../../b", "/etc/passwd"]:
        with pytest.raises(ArchiveError):
            safe_relative(bad)
    assert parse_size("20G") == 20 * 1024**3 and parse_size("1.5M") == 1_572_864 and parse_size("512") == 512
    with pytest.raises(argparse.ArgumentTypeError):
        parse_size("lots")


def test_progress_bar_unless_quiet(server, clips_zip, capsys):
    url = server.add("loud.zip", Route(clips_zip))
    assert run_fetch("--url", url, "--out", "raw", "--no-extract") == 0
    err = capsys.readouterr().err
    assert "From: " + url in err and "B/s" in err  # gdown's messages and tqdm bar
    assert os.path.isfile("raw/loud.zip")
