"""The journal's API against a real server (uvicorn on 127.0.0.1, over HTTP), the real model and real clips."""

from __future__ import annotations

import csv
import http.client
import io
import json
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta
from pathlib import Path

import cv2
import pytest

from models.served import SERVED_MODEL
from tests.conftest import REPO, SMALL, make_corrupt_file, make_face_clip, make_faceless_clip
from tests.fixtures.journal_server import JournalServer, multipart

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory, head) -> dict[str, bytes]:
    root = tmp_path_factory.mktemp("journal_clips")
    made = {
        "happy": make_face_clip(head, root / "happy.mp4", seconds=3.0, size=SMALL, seed=1).path,
        "short": make_face_clip(head, root / "short.mp4", seconds=0.6, size=SMALL, seed=2).path,
        "faceless": make_faceless_clip(root / "faceless.mp4", seconds=3.0, size=SMALL),
        "corrupt": make_corrupt_file(root / "corrupt.mp4"),
    }
    return {name: Path(path).read_bytes() for name, path in made.items()}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    with JournalServer(tmp_path_factory.mktemp("journal"), args=["--max-upload-mb", "2"]) as running:
        yield running


def files_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def test_create_list_get_patch_export_delete(server: JournalServer, clips: dict[str, bytes]) -> None:
    status, health = server.json("GET", "api/health")
    assert status == 200 and "happy" in health["classes"] and health["model"] == SERVED_MODEL.name

    status, entry = server.upload("api/entries", clips["happy"], note="first light")
    assert status == 201, entry
    assert set(entry) >= {"id", "created_at", "label", "probabilities", "face_ratio", "seconds", "windows", "note"}
    assert entry["label"] == "happy" and entry["note"] == "first light"
    assert entry["face_ratio"] > 0.9 and 2.9 <= entry["seconds"] <= 3.1 and entry["windows"]
    assert abs(sum(entry["probabilities"].values()) - 1) < 1e-3

    status, listed = server.json("GET", "api/entries")
    assert status == 200 and entry["id"] in [e["id"] for e in listed["entries"]]
    assert server.json("GET", f"api/entries/{entry['id']}") == (200, entry)

    status, _, clip = server.request("GET", f"api/entries/{entry['id']}/clip")
    assert status == 200 and clip == clips["happy"]

    status, edited = server.json("PATCH", f"api/entries/{entry['id']}", {"note": "=1+1 and a comma, too"})
    assert status == 200 and edited["note"] == "=1+1 and a comma, too"
    assert server.json("GET", f"api/entries/{entry['id']}")[1]["note"] == "=1+1 and a comma, too"
    status, body = server.json("PATCH", f"api/entries/{entry['id']}", {"note": "half a pair \ud800"})
    assert status == 400 and "UTF-8" in body["error"], body  # it was a 500 (UnicodeEncodeError in SQLite)
    assert server.json("GET", f"api/entries/{entry['id']}")[1]["note"] == "=1+1 and a comma, too"

    status, headers, raw = server.request("GET", "api/export.csv")
    assert status == 200 and headers["content-type"].startswith("text/csv")
    assert raw.startswith(b"\xef\xbb\xbf")  # the BOM, or Excel garbles accents and emoji in the notes
    rows = {r["id"]: r for r in csv.DictReader(io.StringIO(raw.decode("utf-8-sig")))}
    assert rows[entry["id"]]["label"] == "happy"
    assert rows[entry["id"]]["note"] == "'=1+1 and a comma, too"  # not run as a formula by a spreadsheet
    assert float(rows[entry["id"]]["p_happy"]) == pytest.approx(entry["probabilities"]["happy"], abs=1e-5)
    status, _, raw = server.request("GET", "api/export.json")
    assert status == 200 and entry["id"] in [e["id"] for e in json.loads(raw)["entries"]]

    assert server.json("DELETE", f"api/entries/{entry['id']}") == (200, {"deleted": entry["id"]})
    assert server.json("GET", f"api/entries/{entry['id']}")[0] == 404
    assert server.request("GET", f"api/entries/{entry['id']}/clip")[0] == 404
    assert entry["id"] not in "".join(files_in(server.data_dir / "clips"))


def test_date_filter(server: JournalServer, clips: dict[str, bytes]) -> None:
    status, entry = server.upload("api/entries", clips["happy"])
    assert status == 201
    today = date.fromisoformat(entry["day"])
    ids = lambda query: [e["id"] for e in server.json("GET", f"api/entries?{query}")[1]["entries"]]  # noqa: E731
    assert entry["id"] in ids(f"from={today}&to={today}")
    assert entry["id"] not in ids(f"to={today - timedelta(days=1)}")
    assert entry["id"] not in ids(f"from={today + timedelta(days=1)}")
    status, body = server.json("GET", "api/entries?from=yesterday")
    assert status == 400 and "2026-12-01" in body["error"]


def test_predict_classifies_without_storing(server: JournalServer, clips: dict[str, bytes]) -> None:
    before = server.json("GET", "api/entries")[1]["count"]
    status, result = server.upload("api/predict", clips["happy"])
    assert status == 200 and result["label"] == "happy" and "id" not in result
    assert server.json("GET", "api/entries")[1]["count"] == before
    assert files_in(server.data_dir / "incoming") == []


@pytest.mark.parametrize(("name", "message"), [
    ("faceless", "sampled frames: keep your face in the frame and in good light, then record again"),
    ("short", "at least 2 s"),
    ("corrupt", "corrupt"),
    ("text", "the file cannot be read as a video (a corrupt file, or not a video): record a clip, or pick"),
    ("empty", "empty"),
    ("photo", "this is a photo (PNG), not a video"),  # it was "the clip is 0.04 s long"
])
def test_bad_clips_are_refused_and_nothing_is_stored(server: JournalServer, clips: dict[str, bytes], name: str,
                                                     message: str, head) -> None:
    photo = cv2.imencode(".png", cv2.cvtColor(head, cv2.COLOR_RGB2BGR))[1].tobytes()
    data = {**clips, "text": b"Dear diary, this is not a video.\n" * 50, "empty": b"", "photo": photo}[name]
    before = files_in(server.data_dir / "clips")
    count = server.json("GET", "api/entries")[1]["count"]
    status, body = server.upload("api/entries", data, filename=f"{name}.mp4")
    assert 400 <= status < 500 and message in body["error"], body
    # the page locks Save for these (the same clip would be refused again): the codes are part of the API
    assert status == {"photo": 415, "empty": 400}.get(name, 422), (status, body)
    assert str(server.data_dir) not in body["error"]  # no server paths in answers
    assert "FFmpeg" not in body["error"]  # words for someone recording a clip
    assert server.json("GET", "api/entries")[1]["count"] == count
    assert files_in(server.data_dir / "clips") == before
    assert files_in(server.data_dir / "incoming") == []


def test_malformed_requests_get_json_errors(server: JournalServer, clips: dict[str, bytes]) -> None:
    body, content_type = multipart({"video": ("clip.mp4", clips["happy"])}, {})
    status, _, raw = server.request("POST", "api/entries", body, {"Content-Type": content_type})
    assert status == 400 and "'clip'" in json.loads(raw)["error"]
    status, _, raw = server.request("POST", "api/entries", b"{}", {"Content-Type": "application/json"})
    assert status == 415 and "multipart" in json.loads(raw)["error"]
    status, _, raw = server.request("GET", "api/nothing-here")
    assert status == 404 and "error" in json.loads(raw)
    assert server.json("PATCH", f"api/entries/{'0' * 32}", {"note": "x"})[0] == 404
    status, entry = server.upload("api/entries", clips["happy"])
    assert server.json("PATCH", f"api/entries/{entry['id']}", {"label": "sad"})[0] == 400
    assert server.json("PATCH", f"api/entries/{entry['id']}", {"note": "x" * 10_001})[0] == 400


def test_upload_over_the_limit_is_cut_off_with_413(server: JournalServer, clips: dict[str, bytes]) -> None:
    big = bytes(3 * 2**20)  # the server runs with --max-upload-mb 2
    status, body = server.upload("api/entries", big)
    assert status == 413 and "--max-upload-mb" in body["error"] and "record a shorter clip" in body["error"]
    entry = server.upload("api/entries", clips["happy"])[1]  # a note that large was told to record a shorter clip
    status, body = server.json("PATCH", f"api/entries/{entry['id']}", {"note": "x" * 3 * 2**20})
    assert status == 413 and body["error"].endswith("send a shorter note")
    # Without a Content-Length (chunked), the limit holds while the body streams.
    payload, content_type = multipart({"clip": ("big.mp4", big)}, {})
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    conn.putrequest("POST", "/api/entries")
    conn.putheader("Content-Type", content_type)
    conn.putheader("Transfer-Encoding", "chunked")
    conn.endheaders()
    for start in range(0, len(payload), 256 * 1024):
        chunk = payload[start:start + 256 * 1024]
        conn.send(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
    conn.send(b"0\r\n\r\n")
    response = conn.getresponse()
    assert response.status == 413 and "--max-upload-mb" in json.loads(response.read())["error"]
    conn.close()
    assert files_in(server.data_dir / "incoming") == []


def test_a_path_in_the_file_name_is_never_used(server: JournalServer, clips: dict[str, bytes]) -> None:
    status, entry = server.upload("api/entries", clips["happy"], filename="../../../escaped.mp4")
    assert status == 201
    assert not (server.data_dir.parent / "escaped.mp4").exists()
    assert all(re.fullmatch(r"[0-9a-f]{32}\.mp4", name) for name in files_in(server.data_dir / "clips"))
    for probe in ["api/entries/..%2Fjournal.db/clip", "api/entries/..%2F..%2Fetc%2Fpasswd",
                  "static/..%2F..%2Fjournal%2Fstore.py", "api/entries/%2e%2e/clip"]:
        status, _, raw = server.request("GET", probe)
        assert status in (400, 404), (probe, status)
        assert b"sqlite" not in raw.lower() and b"import" not in raw


def test_security_headers_and_cross_origin_refusal(server: JournalServer, clips: dict[str, bytes]) -> None:
    status, entry = server.upload("api/entries", clips["happy"])
    status, headers, _ = server.request("GET", f"api/entries/{entry['id']}/clip")
    assert status == 200 and headers["cache-control"] == "no-store"
    assert headers["x-content-type-options"] == "nosniff"
    assert "script-src 'self'" in headers["content-security-policy"]
    assert "unsafe-inline" not in headers["content-security-policy"]

    status, body = server.upload("api/entries", clips["happy"], headers={"Origin": "http://evil.example"})
    assert status == 403 and "own page" in body["error"]
    status, _, _ = server.request("DELETE", f"api/entries/{entry['id']}", headers={"Sec-Fetch-Site": "cross-site"})
    assert status == 403
    assert server.json("GET", f"api/entries/{entry['id']}")[0] == 200  # still there
    # Same origin is fine, and a page reaching the server by another name (DNS rebinding) is not.
    status, _ = server.json("PATCH", f"api/entries/{entry['id']}", {"note": "ok"})
    assert status == 200
    status, _, _ = server.request("GET", "api/entries", headers={"Host": f"evil.example:{server.port}"})
    assert status == 400


def test_eight_concurrent_uploads_are_all_stored(server: JournalServer, clips: dict[str, bytes]) -> None:
    before = server.json("GET", "api/entries")[1]["count"]
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda i: server.upload("api/entries", clips["happy"], note=f"n{i}"), range(8)))
    assert [status for status, _ in results] == [201] * 8, results
    stored = server.json("GET", "api/entries")[1]
    assert stored["count"] == before + 8
    assert {f"n{i}" for i in range(8)} <= {e["note"] for e in stored["entries"]}


def test_restart_keeps_every_entry_and_a_second_server_is_refused(server: JournalServer,
                                                                  clips: dict[str, bytes]) -> None:
    status, entry = server.upload("api/entries", clips["happy"], note="kept")
    before = server.json("GET", "api/entries")[1]
    second = subprocess.run([sys.executable, str(REPO / "cli.py"), "journal", "--data-dir", str(server.data_dir),
                             "--port", "0"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert second.returncode == 1
    assert second.stderr.strip().count("\n") == 0 and "already using" in second.stderr, second.stderr

    assert server.stop() == 0
    server.start()
    after = server.json("GET", "api/entries")[1]
    assert after == before
    status, _, clip = server.request("GET", f"api/entries/{entry['id']}/clip")
    assert status == 200 and clip == clips["happy"]
    db = sqlite3.connect(server.data_dir / "journal.db")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA user_version").fetchone()[0] == 1
    db.close()


def _state(data_dir: Path) -> tuple[int, list[str], list[str]]:
    db = sqlite3.connect(data_dir / "journal.db")
    rows = db.execute("SELECT COUNT(*) FROM entries").fetchone()[0]
    db.close()
    return rows, files_in(data_dir / "clips"), files_in(data_dir / "incoming")


def test_a_server_killed_mid_upload_or_mid_classification_leaves_nothing_half_stored(
        tmp_path: Path, clips: dict[str, bytes], head) -> None:
    data_dir = tmp_path / "journal"
    long_clip = make_face_clip(head, tmp_path / "long.mp4", seconds=8.0, size=(480, 360), seed=5).path.read_bytes()
    server = JournalServer(data_dir, args=["--workers", "1"]).start()
    try:
        status, kept = server.upload("api/entries", clips["happy"], note="before the crash")
        assert status == 201

        # 1. Killed while the body is still arriving.
        payload, content_type = multipart({"clip": ("clip.mp4", long_clip)}, {"note": "lost"})
        sock = socket.create_connection(("127.0.0.1", server.port))
        sock.sendall(f"POST /api/entries HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nContent-Type: {content_type}"
                     f"\r\nContent-Length: {len(payload)}\r\n\r\n".encode() + payload[: len(payload) // 2])
        time.sleep(0.5)
        server.kill()
        sock.close()
        server.start()
        assert _state(data_dir) == (1, [f"{kept['id']}.mp4"], [])

        # 2. Killed while the clip is being classified: its file is in incoming/.
        def upload_until_killed() -> None:
            try:
                server.upload("api/entries", long_clip)
            except (ConnectionError, OSError):  # the server dies under it: that is the point
                pass

        threading.Thread(target=upload_until_killed, daemon=True).start()
        deadline = time.monotonic() + 60
        while not files_in(data_dir / "incoming") and time.monotonic() < deadline:
            time.sleep(0.01)
        assert files_in(data_dir / "incoming"), "the upload never reached incoming/"
        server.kill()
        # 3. A clip that an earlier crash left between its move into clips/ and its row.
        (data_dir / "clips" / f"{'f' * 32}.mp4").write_bytes(clips["happy"])
        server.start()
        assert any("cleaned" in line for line in server.output)
        assert _state(data_dir) == (1, [f"{kept['id']}.mp4"], [])
        assert server.json("GET", f"api/entries/{kept['id']}")[1]["note"] == "before the crash"
    finally:
        server.stop()


def test_a_full_queue_answers_503_with_retry_after_and_stores_nothing(tmp_path: Path,
                                                                     clips: dict[str, bytes]) -> None:
    with JournalServer(tmp_path / "journal", args=["--workers", "1", "--queue", "0"]) as server:
        body, content_type = multipart({"clip": ("clip.mp4", clips["happy"])}, {})

        def post(_: int) -> tuple[int, dict[str, str], bytes]:
            return server.request("POST", "api/entries", body, {"Content-Type": content_type})

        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(post, range(4)))
        statuses = [status for status, _, _ in answers]
        assert 503 in statuses and 201 in statuses, statuses
        for status, headers, raw in answers:
            if status == 503:
                assert int(headers["retry-after"]) >= 1 and "busy" in json.loads(raw)["error"]
        assert server.json("GET", "api/entries")[1]["count"] == statuses.count(201)
        assert len(files_in(server.data_dir / "clips")) == statuses.count(201)


def test_beyond_loopback_every_request_needs_the_token(tmp_path: Path) -> None:
    server = JournalServer(tmp_path / "journal", args=["--host", "0.0.0.0"])
    with server:
        assert any("warning" in line and "token" in line for line in server.output), server.output
        assert server.token and len(server.token) >= 16
        token, server.token = server.token, None
        for path in ["api/health", "api/entries", "", "api/export.csv"]:
            status, _, raw = server.request("GET", path)
            assert status == 401 and "token" in json.loads(raw)["error"], path
        assert server.request("GET", "api/health", headers={"Authorization": "Bearer wrong-token-wrong"})[0] == 401
        assert server.request("GET", "api/health", headers={"Authorization": f"Bearer {token}"})[0] == 200
        # The printed address carries the token once; the page then lives on a cookie.
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        conn.request("GET", f"/?token={token}")
        response = conn.getresponse()
        response.read()
        assert response.status == 303
        cookie = response.getheader("set-cookie")
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
        assert server.request("GET", "api/health", headers={"Cookie": cookie.split(";")[0]})[0] == 200


def test_a_stop_finishes_the_upload_in_flight_or_answers_503_without_a_traceback(
        tmp_path: Path, clips: dict[str, bytes]) -> None:
    """The upload is held half-sent while the server is told to stop (SIGTERM, as Ctrl-C), so the request is
    in flight whatever the machine's speed. It was a plain-text 500 and a traceback on the console."""
    data_dir = tmp_path / "journal"
    payload, content_type = multipart({"clip": ("clip.mp4", clips["happy"])}, {"note": "in flight"})

    def stop_mid_upload(server: JournalServer, finish: bool) -> tuple[int, dict]:
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=60)
        try:
            sock.sendall(f"POST /api/entries HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nContent-Type: "
                         f"{content_type}\r\nContent-Length: {len(payload)}\r\n\r\n".encode()
                         + payload[: len(payload) // 2])
            time.sleep(0.5)  # the route is waiting for the rest of the body
            assert server.proc is not None
            server.proc.send_signal(signal.SIGTERM)
            time.sleep(1.0)  # the server is stopping now
            if finish:
                sock.sendall(payload[len(payload) // 2:])
            response = http.client.HTTPResponse(sock)
            response.begin()
            return response.status, json.loads(response.read())
        finally:
            sock.close()
            assert server.proc is not None and server.proc.wait(60) == 0

    # The default: the stop waits while the rest of the clip arrives and is classified; it is stored.
    status, entry = stop_mid_upload(JournalServer(data_dir, args=["--workers", "1"]).start(), finish=True)
    assert status == 201 and entry["note"] == "in flight", entry
    assert _state(data_dir) == (1, [f"{entry['id']}.mp4"], [])
    # With no time to wait, the upload is answered 503 in JSON and nothing of it is kept.
    server = JournalServer(data_dir, args=["--workers", "1", "--shutdown-seconds", "0"]).start()
    status, answer = stop_mid_upload(server, finish=False)
    assert status == 503 and "the journal is stopping, so this clip was not saved" in answer["error"], answer
    assert not any("Traceback" in line for line in server.output), "\n".join(server.output)
    assert _state(data_dir) == (1, [f"{entry['id']}.mp4"], [])


def test_the_journal_keeps_its_files_to_their_owner(tmp_path: Path, server: JournalServer,
                                                    clips: dict[str, bytes]) -> None:
    from pipeline.journal.store import EntryStore

    def mode(path: Path) -> int:
        return path.stat().st_mode & 0o777

    status, entry = server.upload("api/entries", clips["happy"])
    assert status == 201
    root = server.data_dir
    assert [mode(p) for p in (root, root / "clips", root / "incoming")] == [0o700] * 3  # was 0o755: anyone's
    assert mode(root / "journal.db") == 0o600 and mode(root / "clips" / f"{entry['id']}.mp4") == 0o600

    # A folder an older version left readable by all is tightened; a folder shared with other files keeps
    # its own mode, but the journal's files in it do not.
    for shared in (False, True):
        folder = tmp_path / f"old_{shared}"
        (folder / "clips").mkdir(parents=True)
        (folder / "clips" / "a.mp4").write_bytes(b"x")
        if shared:
            (folder / "notes.txt").write_text("mine")
        else:
            (folder / "journal.db").touch()
        for path in (folder, folder / "clips", folder / "clips" / "a.mp4", folder / "journal.db"):
            if path.exists():
                path.chmod(0o755 if path.is_dir() else 0o644)
        EntryStore(folder).close()
        EntryStore(folder).close()  # a second start too: the first one's journal.db made it chmod the folder
        assert mode(folder) == (0o755 if shared else 0o700)
        assert mode(folder / "clips") == 0o700 and mode(folder / "clips" / "a.mp4") == 0o600
        assert mode(folder / "journal.db") == 0o600


@pytest.mark.parametrize("host", ["0.0.0.0.1", "192.0.2.1"])  # not an address; TEST-NET-1, no machine's own
def test_a_host_this_machine_does_not_have_is_blamed_not_the_port(host: str) -> None:
    from pipeline.journal.server import JournalError, listen

    with pytest.raises(JournalError, match=f"^--host {re.escape(host)} is not an address of this machine"):
        listen(host, 0)  # it said "{host}:0 cannot be used (...); pass another --port"


def test_a_model_that_cannot_load_leaves_no_data_folder(tmp_path: Path) -> None:
    # The one-line error came after journal.db, clips/, incoming/ and server.lock had been made.
    done = subprocess.run([sys.executable, str(REPO / "cli.py"), "journal", "--data-dir", str(tmp_path / "j"),
                           "--port", "0", "--model", str(tmp_path / "nope.pt")], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 1 and done.stderr.strip().count("\n") == 0 and "nope.pt" in done.stderr, done.stderr
    assert not (tmp_path / "j").exists()
