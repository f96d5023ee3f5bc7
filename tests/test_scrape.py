"""`scrape` against a real local HTTP server that answers like the Pexels and Pixabay video APIs.

No mocks: real sockets, real requests, real mp4 files written by OpenCV and read by PyAV (stacks.video). The
server paginates, answers one 429 with Retry-After, breaks one download halfway, and counts what it served.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import socket
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import cv2
import numpy as np
import pytest

from pipeline.prepare.sources import discover
from scrapers.providers import PROVIDERS, Pexels, Rendition, pick_rendition
from scrapers.scrape import COLUMNS, ORIGINALS, load_queries, select_labels
from scrapers.scrape_command import add_scrape
from scrapers.trim import cut, plan_pieces, probe
from stacks.video import VideoReader
from tests.fixtures import phone_clips

PEXELS_KEY = "pexels-test-key"
PIXABAY_KEY = "pixabay-test-key-123"
FPS = 10


def write_clip(path: Path, seconds: float, size: tuple[int, int] = (64, 48)) -> bytes:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, size)
    rng = np.random.default_rng(0)
    for i in range(round(seconds * FPS)):
        frame = np.full((size[1], size[0], 3), (i * 7) % 255, np.uint8)
        frame[rng.integers(0, size[1]), :] = 255
        writer.write(frame)
    writer.release()
    return path.read_bytes()


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    root = tmp_path_factory.mktemp("served")
    return {"short": write_clip(root / "short.mp4", 4.0), "long": write_clip(root / "long.mp4", 11.0)}


class State:
    """What the fake providers know, and what they saw."""

    def __init__(self, clips: dict[str, bytes]) -> None:
        self.clips = clips
        self.base = ""
        self.pexels: dict[str, list[dict]] = {}
        self.pixabay: dict[str, list[dict]] = {}
        self.files: dict[str, bytes] = {}
        self.file_hits: Counter[str] = Counter()
        self.file_requests: list[tuple[str, dict[str, str]]] = []
        self.api_log: list[tuple[float, str, dict]] = []
        self.break_once: set[str] = set()
        self.pixabay_429 = 0
        self.pixabay_headers_once: dict[str, str] = {}
        self.pixabay_echo_key = False
        self.lock = threading.Lock()

    def pexels_video(self, vid: int, seconds: int, kind: str = "short") -> dict:
        files = []
        for i, (w, h) in enumerate([(640, 360), (1280, 720), (1920, 1080)]):
            name = f"p{vid}_{h}.mp4"
            self.files[name] = self.clips[kind]
            files.append({"id": vid * 10 + i, "quality": "hd" if h >= 720 else "sd", "file_type": "video/mp4",
                          "width": w, "height": h, "fps": 25, "link": f"{self.base}/files/{name}"})
        files.append({"id": vid * 10 + 9, "quality": "hls", "file_type": "application/x-mpegURL", "width": None,
                      "height": None, "link": f"{self.base}/files/p{vid}.m3u8"})
        return {"id": vid, "width": 1920, "height": 1080, "url": f"https://www.pexels.com/video/clip-{vid}/",
                "image": "", "duration": seconds, "user": {"id": 7, "name": f"Author {vid}",
                                                           "url": f"https://www.pexels.com/@author{vid}"},
                "video_files": files, "video_pictures": []}

    def pixabay_video(self, vid: int, seconds: int) -> dict:
        videos = {}
        for size, (w, h) in {"large": (3840, 2160), "medium": (1920, 1080), "small": (1280, 720),
                             "tiny": (960, 540)}.items():
            name = f"x{vid}_{size}.mp4"
            self.files[name] = self.clips["short"]
            videos[size] = {"url": f"{self.base}/files/{name}", "width": w, "height": h, "size": 1234,
                            "thumbnail": ""}
        return {"id": vid, "pageURL": f"https://pixabay.com/videos/clip-{vid}/", "type": "film", "tags": "face",
                "duration": seconds, "views": 1, "downloads": 1, "likes": 1, "comments": 0, "user_id": 42,
                "user": f"user{vid}", "userImageURL": "", "videos": videos}


def make_handler(state: State) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # quiet
            pass

        def _send(self, status: int, body: bytes, ctype: str = "application/json", headers: dict | None = None):
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            url = urlsplit(self.path)
            q = {k: v[0] for k, v in parse_qs(url.query).items()}
            if url.path.startswith("/files/"):
                return self._file(url.path.rsplit("/", 1)[-1])
            with state.lock:
                state.api_log.append((time.monotonic(), url.path, q))
            if url.path == "/pexels/search":
                return self._pexels(q)
            if url.path.rstrip("/") == "/pixabay":
                return self._pixabay(q)
            self._send(404, b'{"error": "not found"}')

        def _pexels(self, q: dict) -> None:
            if self.headers.get("Authorization") != PEXELS_KEY:
                return self._send(401, b'{"error": "Unauthorized"}')
            hits = state.pexels.get(q["query"], [])
            page, per_page = int(q.get("page", 1)), int(q.get("per_page", 15))
            assert 1 <= per_page <= 80
            chunk = hits[(page - 1) * per_page: page * per_page]
            body = {"page": page, "per_page": per_page, "total_results": len(hits), "videos": chunk,
                    "url": "https://www.pexels.com/search/videos/x/"}
            if page * per_page < len(hits):
                body["next_page"] = f"{state.base}/pexels/search/?page={page + 1}&per_page={per_page}"
            reset = str(int(time.time()) + 3600)
            self._send(200, json.dumps(body).encode(), headers={
                "X-Ratelimit-Limit": "20000", "X-Ratelimit-Remaining": "19999", "X-Ratelimit-Reset": reset})

        def _pixabay(self, q: dict) -> None:
            if q.get("key") != PIXABAY_KEY:
                return self._send(400, b"[ERROR 400] Invalid or missing API key", "text/plain")
            with state.lock:
                if state.pixabay_429:
                    state.pixabay_429 -= 1
                    return self._send(429, b"Too many requests", "text/plain", {"Retry-After": "1"})
                extra, state.pixabay_headers_once = state.pixabay_headers_once, {}
            hits = state.pixabay.get(q.get("q", ""), [])
            page, per_page = int(q.get("page", 1)), int(q.get("per_page", 20))
            if not 3 <= per_page <= 200:
                return self._send(400, b"[ERROR 400] per_page is out of valid range.", "text/plain")
            if (page - 1) * per_page >= max(len(hits), 1):
                return self._send(400, b"[ERROR 400] page is out of valid range.", "text/plain")
            chunk = hits[(page - 1) * per_page: page * per_page]
            body = {"total": len(hits), "totalHits": len(hits), "hits": chunk}
            if state.pixabay_echo_key:  # an API that quotes the request back, key and all
                body["request"] = f"/api/?key={q['key']}&q={q.get('q', '')}"
            headers = {"X-RateLimit-Limit": "100", "X-RateLimit-Remaining": "99", "X-RateLimit-Reset": "60", **extra}
            self._send(200, json.dumps(body).encode(), headers=headers)

        def _file(self, name: str) -> None:
            with state.lock:
                state.file_hits[name] += 1
                state.file_requests.append((name, dict(self.headers)))
                broken = name in state.break_once
                state.break_once.discard(name)
            data = state.files.get(name)
            if data is None:
                return self._send(404, b"no such file", "text/plain")
            if broken:  # promise the whole file, send half, hang up
                self.send_response(200)
                self.send_header("Content-Type", "video/mp4")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data[: len(data) // 2])
                self.wfile.flush()
                self.close_connection = True
                return
            start = self.headers.get("Range", "").removeprefix("bytes=").removesuffix("-")
            if start.isdigit() and 0 < int(start) < len(data):
                return self._send(206, data[int(start):], "video/mp4",
                                  {"Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}"})
            self._send(200, data, "video/mp4")

    return Handler


@pytest.fixture
def server(clips: dict[str, bytes]):
    state = State(clips)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(state))
    state.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield state
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def env_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for cls in PROVIDERS.values():
        monkeypatch.delenv(cls.key_env, raising=False)
    path = tmp_path / "keys.env"
    path.write_text(f"PEXELS_API_KEY={PEXELS_KEY}\nPIXABAY_API_KEY={PIXABAY_KEY}\n")
    return path


def run_cli(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser(prog="cli.py")
    sub = parser.add_subparsers()
    add_scrape(sub)
    args = parser.parse_args(["scrape", *argv])
    rc = args.func(args)
    out = capsys.readouterr()
    return rc, out.out, out.err


def base_args(state: State, env_file: Path, out: Path, *extra: str) -> list[str]:
    return ["--base-url", f"pexels={state.base}/pexels", "--base-url", f"pixabay={state.base}/pixabay",
            "--env-file", str(env_file), "--out", str(out), "--no-progress", *extra]


def rows(out: Path) -> list[dict[str, str]]:
    with open(out / "sources.csv", newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def warnings(caplog: pytest.LogCaptureFixture) -> str:
    """The scraper's warnings (the terminal shows them on stderr: tests/test_cli.py)."""
    return "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("scrapers.")
                     and r.levelno == logging.WARNING)


def visible_files(out: Path) -> set[str]:
    return {p.name for p in out.iterdir() if p.is_file()}


def test_scrape_two_providers_resume_and_attribution(server: State, env_file: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    s = server
    s.pexels["happy face close up"] = [s.pexels_video(101, 4), s.pexels_video(102, 4), s.pexels_video(103, 5),
                                       s.pexels_video(104, 120), s.pexels_video(105, 2)]
    s.pexels["sad face close up"] = [s.pexels_video(201, 4), s.pexels_video(101, 4)]  # 101 again: skipped
    happy_px = [s.pixabay_video(301, 4), s.pixabay_video(302, 6), s.pixabay_video(303, 4)]
    s.pixabay["happy face close up"] = [*happy_px, happy_px[0]]  # 301 again on page 2: skipped
    s.pixabay["sad face close up"] = [s.pixabay_video(401, 4)]
    out = tmp_path / "scraped"
    out.mkdir()
    (out / "Happy_0003.mp4").write_bytes(s.clips["short"])  # a seed file: numbering goes on after it
    s.break_once.add("p102_720.mp4")
    args = base_args(s, env_file, out, "--labels", "happy,Sad", "--limit", "10", "--per-page", "2")

    rc, stdout, stderr = run_cli(capsys, *args, "--retries", "0")
    assert rc == 1 and "1 download(s) failed; rerun" in stderr and "Traceback" not in stderr
    assert "pexels 102 not downloaded: connection broken" in warnings(caplog)
    expected = {"Happy_0003.mp4", "Happy_0004.mp4", "Happy_0005.mp4", "Happy_0006.mp4", "Happy_0007.mp4",
                "Happy_0008.mp4", "Sad_0001.mp4", "Sad_0002.mp4", "sources.csv"}
    assert {n for n in visible_files(out) if not n.startswith(".")} == expected  # under no final name
    kept = sorted(p for p in out.glob(".*") if p.is_file())  # only its hidden partial (and what resumes it)
    assert [p.name.split(".")[1] for p in kept] == ["pexels_102", "pexels_102"]
    assert [p.suffix for p in kept] == [".part", ".json"]
    half = kept[0].stat().st_size
    assert 0 < half <= len(s.clips["short"]) // 2
    assert all(h.get("Accept-Encoding") == "identity" for _, h in s.file_requests)
    table = rows(out)
    assert list(table[0]) == COLUMNS
    got = {(r["provider"], r["id"]): r for r in table}
    assert set(got) == {("pexels", "101"), ("pexels", "103"), ("pixabay", "301"), ("pixabay", "302"),
                        ("pixabay", "303"), ("pexels", "201"), ("pixabay", "401")}
    assert got[("pexels", "101")]["file"] == "Happy_0004.mp4" and got[("pexels", "201")]["label"] == "Sad"
    for r in table:  # the attribution both sites ask for, and where the file came from
        assert r["author"] and r["page_url"].startswith("https://") and r["licence"] and r["licence_url"]
        assert r["query"] in ("happy face close up", "sad face close up")
        assert (r["width"], r["height"]) == ("64", "48") and float(r["duration"]) == pytest.approx(4.0, abs=0.2)
        assert int(r["bytes"]) == len(s.clips["short"]) and (out / r["file"]).stat().st_size == int(r["bytes"])
    assert got[("pexels", "101")]["author"] == "Author 101"
    assert got[("pexels", "101")]["author_url"] == "https://www.pexels.com/@author101"
    assert got[("pixabay", "301")]["author_url"] == "https://pixabay.com/users/user301-42/"
    assert got[("pixabay", "301")]["licence"] == "Pixabay Content License"
    # the rendition whose short side is closest to 720: Pexels' 1280x720, Pixabay's "small"
    assert got[("pexels", "101")]["rendition"] == "hd 1280x720" and s.file_hits["p101_720.mp4"] == 1
    assert got[("pixabay", "302")]["rendition"] == "small 1280x720" and s.file_hits["x302_small.mp4"] == 1
    assert not any(k.startswith("p104") or k.startswith("p105") for k in s.file_hits)  # out of 3-30 s
    assert s.file_hits["p101_720.mp4"] == 1  # asked by two queries, downloaded once
    pexels_pages = [q["page"] for _, path, q in s.api_log if path == "/pexels/search"
                    and q["query"] == "happy face close up"]
    assert pexels_pages == ["1", "2", "3"]
    pixabay_pages = [q for _, path, q in s.api_log if path.startswith("/pixabay") and q["q"] == "happy face close up"]
    assert [q["page"] for q in pixabay_pages] == ["1", "2"] and pixabay_pages[0]["per_page"] == "3"
    # `prepare` reads the folder as it is: labels from the names, sources.csv and hidden files ignored
    sources, rejected = discover(out)
    assert len(sources) == 8 and not rejected and {x.label for x in sources} == {"happy", "sad"}

    # rerun: only the broken one is fetched, numbered after the others
    before = sum(s.file_hits.values())
    rc, stdout, stderr = run_cli(capsys, *args)
    assert rc == 0, stderr
    assert sum(s.file_hits.values()) == before + 1 and s.file_hits["p102_720.mp4"] == 2
    assert s.file_requests[-1][0] == "p102_720.mp4" and s.file_requests[-1][1].get("Range") == f"bytes={half}-"
    assert {r["file"] for r in rows(out) if r["id"] == "102"} == {"Happy_0009.mp4"}
    assert (out / "Happy_0009.mp4").read_bytes() == s.clips["short"]  # resumed, byte for byte
    assert probe(out / "Happy_0009.mp4").frames == 40  # complete
    assert not [p for p in out.glob(".*") if p.is_file()]
    assert "Happy: 5 already there, downloaded 1; 6 of 10: no more results" in stdout  # the seed file is not counted

    # and again, asking the APIs afresh: nothing is downloaded
    before = sum(s.file_hits.values())
    rc, stdout, stderr = run_cli(capsys, *args, "--no-cache")
    assert rc == 0 and sum(s.file_hits.values()) == before and len(rows(out)) == 8


def test_429_retry_after_and_ratelimit_reset_are_honoured(server: State, env_file: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    s = server
    s.pixabay["happy face close up"] = [s.pixabay_video(vid, 4) for vid in (1, 2, 3, 4)]
    s.pixabay_429 = 1
    s.pixabay_headers_once = {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "1"}  # seconds, as Pixabay
    out = tmp_path / "out"
    rc, stdout, stderr = run_cli(capsys, *base_args(s, env_file, out, "--providers", "pixabay", "--labels", "Happy",
                                                    "--limit", "4", "--per-page", "3"))
    assert rc == 0, stderr
    times = [t for t, path, _ in s.api_log if path.startswith("/pixabay")]
    assert len(times) == 3  # 429, page 1 (quota 0, resets in 1 s), page 2
    assert times[1] - times[0] >= 0.95, "Retry-After: 1 not honoured"
    assert times[2] - times[1] >= 0.95, "X-RateLimit-Remaining 0 / Reset 1 not honoured"
    assert "429 Too Many Requests, retrying in 1 s" in warnings(caplog)
    assert "rate limit nearly used up, waiting" in warnings(caplog)
    assert sorted(p.name for p in out.glob("*.mp4")) == [f"Happy_{i:04d}.mp4" for i in (1, 2, 3, 4)]


def test_trim_cuts_long_videos_into_3_to_5_s_pieces(server: State, env_file: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture) -> None:
    s = server
    s.pexels["angry face close up"] = [s.pexels_video(501, 11, kind="long"), s.pexels_video(502, 4)]
    out = tmp_path / "out"
    args = base_args(s, env_file, out, "--providers", "pexels", "--labels", "Anger", "--trim", "--limit", "2")
    rc, stdout, stderr = run_cli(capsys, *args)
    assert rc == 0, stderr
    table = rows(out)
    pieces = [r for r in table if r["id"] == "501"]
    assert [r["file"] for r in pieces] == ["Anger_0001.mp4", "Anger_0002.mp4", "Anger_0003.mp4"]
    assert (out / ORIGINALS / "pexels_501.mp4").is_file()
    end = 0.0
    for r in pieces:
        info = probe(out / r["file"])
        assert 3.0 <= info.duration <= 5.0 and float(r["duration"]) == pytest.approx(info.duration, abs=0.01)
        assert r["parent"] == f"{ORIGINALS}/pexels_501.mp4" and float(r["start"]) == pytest.approx(end)
        end = float(r["end"])
        assert float(r["end"]) - float(r["start"]) == pytest.approx(info.duration, abs=0.01)
        assert r["author"] == "Author 501" and r["page_url"] == "https://www.pexels.com/video/clip-501/"
    assert end == pytest.approx(11.0)
    whole = [r for r in table if r["id"] == "502"]
    assert [(r["file"], r["parent"], r["start"]) for r in whole] == [("Anger_0004.mp4", "", "")]
    assert "downloaded 2 (4 files)" in stdout
    sources, rejected = discover(out)  # the uncut original is hidden from `prepare`
    assert sorted(x.rel for x in sources) == [f"Anger_{i:04d}.mp4" for i in (1, 2, 3, 4)] and not rejected

    hits = sum(s.file_hits.values())
    rc, stdout, _ = run_cli(capsys, *args)
    assert rc == 0 and sum(s.file_hits.values()) == hits and len(rows(out)) == 4


def test_dry_run_lists_and_writes_nothing(server: State, env_file: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture) -> None:
    s = server
    s.pexels["happy face close up"] = [s.pexels_video(101, 4), s.pexels_video(102, 12)]
    out = tmp_path / "out"
    rc, stdout, stderr = run_cli(capsys, *base_args(s, env_file, out, "--providers", "pexels", "--labels",
                                                    "Happy", "--dry-run", "--trim"))
    assert rc == 0, stderr
    assert "Happy_0001.mp4  pexels 101  4 s  1280x720" in stdout
    assert "Happy_0002.mp4  pexels 102  12 s  1280x720 (cut into pieces)" in stdout
    assert "dry run: nothing written" in stdout
    assert not out.exists() and not s.file_hits


@pytest.mark.parametrize("keys,extra,message", [
    ("", [], "no stock-footage API key is set: put PEXELS_API_KEY (https://www.pexels.com/api/) or "
             "PIXABAY_API_KEY (https://pixabay.com/api/docs/) in .env"),
    (f"PIXABAY_API_KEY={PIXABAY_KEY}\n", ["--providers", "pexels"],
     "PEXELS_API_KEY is not set: get a free Pexels API key at https://www.pexels.com/api/ and put"),
    ("PEXELS_API_KEY=wrong\n", ["--providers", "pexels"],
     "Pexels refused the API key (HTTP 401): check PEXELS_API_KEY"),
    ("PIXABAY_API_KEY=wrong-secret\n", ["--providers", "pixabay"], "Pixabay refused the API key (HTTP 400)"),
])
def test_key_problems_are_one_line_errors(server: State, env_file: Path, tmp_path: Path, capsys, keys: str,
                                          extra: list[str], message: str) -> None:
    env_file.write_text(keys)
    rc, stdout, stderr = run_cli(capsys, *base_args(server, env_file, tmp_path / "out", *extra))
    assert rc == 1 and stderr.startswith("error: ") and message in stderr
    assert stderr.count("\n") == 1 and "Traceback" not in stderr and "wrong-secret" not in stderr


def test_unreachable_and_no_results(server: State, env_file: Path, tmp_path: Path, capsys) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    rc, _, stderr = run_cli(capsys, "--base-url", f"pixabay=http://127.0.0.1:{port}/api", "--env-file",
                            str(env_file), "--out", str(tmp_path / "a"), "--providers", "pixabay", "--retries", "0",
                            "--no-progress")
    assert rc == 1 and stderr.startswith(f"error: cannot reach Pixabay at 127.0.0.1:{port}: connection refused")
    assert PIXABAY_KEY not in stderr and stderr.count("\n") == 1

    queries = tmp_path / "q.json"
    queries.write_text(json.dumps({"Happy": ["nothing matches this"]}))
    rc, _, stderr = run_cli(capsys, *base_args(server, env_file, tmp_path / "b", "--queries", str(queries)))
    assert rc == 1 and stderr.startswith("error: no results from Pexels, Pixabay between 3 and 30 s")
    rc, _, stderr = run_cli(capsys, *base_args(server, env_file, tmp_path / "b", "--labels", "Fear"))
    assert rc == 1 and "no queries for label 'Fear'" in stderr
    rc, _, stderr = run_cli(capsys, *base_args(server, env_file, tmp_path / "b", "--limit", "0"))
    assert rc == 2 and "--limit must be at least 1" in stderr


def test_queries_files_and_labels(tmp_path: Path) -> None:
    assert load_queries(None)["Shock"] == ["surprised face close up"]
    toml = tmp_path / "q.toml"
    toml.write_text('[queries]\nHappy = ["happy face", "smiling portrait"]\nSad = "sad face"\n')
    queries = load_queries(toml)
    assert queries == {"Happy": ["happy face", "smiling portrait"], "Sad": ["sad face"]}
    assert select_labels(queries, "sad, HAPPY") == ["Sad", "Happy"] and select_labels(queries, "") == ["Happy", "Sad"]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"very_happy": "x"}))
    with pytest.raises(Exception, match="letters and '-' only"):
        load_queries(bad)


def test_pieces_and_renditions() -> None:
    for fps in (10, 24, 29.97, 30):
        for frames in range(1, 400):
            pieces = plan_pieces(frames, fps)
            seconds = frames / fps
            assert pieces and pieces[0][0] == 0
            assert all(a[1] == b[0] for a, b in zip(pieces, pieces[1:]))
            if seconds <= 5:
                assert pieces == [(0, frames)]
                continue
            assert all(3 <= (e - s) / fps <= 5 + 1e-9 for s, e in pieces), (frames, fps, pieces)
            if seconds >= 6:
                assert pieces[-1][1] == frames  # nothing left out
    renditions = (Rendition("a", 640, 360), Rendition("b", 1280, 720), Rendition("c", 1080, 1920),
                  Rendition("", 720, 720))
    assert pick_rendition(renditions, 720).url == "b"
    assert pick_rendition(renditions, 1000).url == "c"  # portrait: the short side counts
    assert pick_rendition(renditions, 100).url == "a" and pick_rendition((), 720) is None
    assert Pexels("k", "http://x/videos/").base_url == "http://x/videos"


def test_trim_cuts_what_prepare_decodes(tmp_path: Path) -> None:
    """A portrait phone clip is cut upright and a live webm (no frame count in its header) is cut whole:
    trim reads clips with prepare's decoder (OpenCV's took the webm for one frame)."""
    pytest.importorskip("imageio_ffmpeg")
    grey = [40 + i * 37 % 120 for i in range(8 * FPS)]  # 8 s: two 4 s pieces; each frame its own grey
    drawn = []
    for value in grey:
        frame = np.full((48, 64, 3), value, np.uint8)
        frame[:12, :16] = 255  # a white mark top left: the right way up
        drawn.append(frame)
    src = tmp_path / "src.mp4"
    writer = cv2.VideoWriter(str(src), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (64, 48))
    for frame in drawn:
        writer.write(frame)
    writer.release()
    clips = {"phone turned 90": phone_clips.rotated(src, tmp_path / "turned.mp4", 90),
             "live webm": phone_clips.browser_webm(src, tmp_path / "live.webm")}
    for name, clip in clips.items():
        info = probe(clip)
        assert info is not None and (info.frames, info.fps, info.width, info.height) == (8 * FPS, FPS, 64, 48), name
        plan = plan_pieces(info.frames, info.fps)
        dests = [tmp_path / f"{clip.stem}_{k}.mp4" for k in range(len(plan))]
        assert cut(clip, plan, dests) == plan == [(0, 40), (40, 80)], name
        for (start, end), dest in zip(plan, dests):
            with VideoReader(dest) as reader:
                piece = np.stack([frame for _, frame in reader.frames()]).astype(float)
            assert piece.shape == (end - start, 48, 64, 3), name  # upright, every frame
            assert (piece[:, :12, :16].mean(axis=(1, 2, 3)) > 230).all(), name  # the mark stays top left
            assert (piece[:, -12:, -16:].mean(axis=(1, 2, 3)) < 180).all(), name
            background = piece[:, 24:, :].mean(axis=(1, 2, 3))  # the frames in order, none skipped
            assert np.abs(background - np.array(grey[start:end])).max() < 12, name


def test_sources_csv_cells_are_not_formulas_and_keys_stay_on_no_disk(server: State, env_file: Path,
                                                                       tmp_path: Path, capsys) -> None:
    s = server
    evil = s.pixabay_video(601, 4)
    evil["user"] = '=HYPERLINK("http://evil.example/","click")'
    plus = s.pixabay_video(602, 4)
    plus["user"] = "+1-555-cmd"
    sneaky = s.pixabay_video(603, 4)
    sneaky["id"] = "../../escape"  # not usable in a file name: skipped
    s.pixabay["happy face close up"] = [evil, plus, sneaky]
    s.pixabay_echo_key = True
    out = tmp_path / "out"
    rc, _, stderr = run_cli(capsys, *base_args(s, env_file, out, "--providers", "pixabay", "--labels", "Happy",
                                               "--limit", "3"))
    assert rc == 0, stderr
    table = {r["id"]: r for r in rows(out)}
    assert set(table) == {"601", "602"} and not (tmp_path / "escape").exists()
    assert table["601"]["author"] == "'" + evil["user"] and table["602"]["author"] == "'+1-555-cmd"
    assert table["601"]["width"] == "64" and table["601"]["bytes"] == str(len(s.clips["short"]))  # numbers as they are
    for path in out.rglob("*"):  # sources.csv, the search cache, anything else
        if path.is_file():
            assert PIXABAY_KEY.encode() not in path.read_bytes(), path

    # host[:port] in messages, never user:password@
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    rc, _, stderr = run_cli(capsys, "--base-url", f"pixabay=http://me:hunter2@127.0.0.1:{port}/api", "--env-file",
                            str(env_file), "--out", str(tmp_path / "b"), "--providers", "pixabay", "--retries", "0",
                            "--no-progress")
    assert rc == 1 and f"at 127.0.0.1:{port}:" in stderr and "hunter2" not in stderr and "me:" not in stderr
