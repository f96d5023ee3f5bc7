"""The journal page in a real Chromium (Debian's package) driven by Playwright, against a real server.

Chromium's fake camera plays a real face clip made here (the smiling astronaut, as .y4m), so the page
records through getUserMedia + MediaRecorder exactly as for a person, and the real model classifies it.
The page runs under the server's Content-Security-Policy: any violation or script error fails the test.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import struct
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO, SMALL, make_corrupt_file, make_face_clip
from tests.fixtures.journal_server import JournalServer

CHROMIUM = Path("/usr/bin/chromium")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(),
                       reason=f"Chromium not found at {CHROMIUM} (Debian: apt-get install -y chromium)"),
]
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (requirements-dev.txt)")
expect = sync_api.expect

HAPPY = re.compile(r"^\s*happy\s*$", re.IGNORECASE)
TOKEN = "browser-test-token-4f1c9a"
ONE_SLOT = ["--workers", "1", "--queue", "0"]  # one clip at a time: a held upload makes the server busy
SCREENSHOT_ENV = "JOURNAL_SCREENSHOT"  # also copy the history screenshot there (docs/journal.png is made so)


@pytest.fixture(scope="module")
def camera_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The smiling astronaut, 4 s at 640x480, as the raw .y4m Chromium's fake camera reads."""
    from tests.fixtures.clips import astronaut_head

    root = tmp_path_factory.mktemp("camera")
    mp4 = make_face_clip(astronaut_head(), root / "face.mp4", seconds=4, size=(640, 480)).path
    y4m = root / "face.y4m"
    ffmpeg("-i", str(mp4), "-pix_fmt", "yuv420p", str(y4m))
    return y4m


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JournalServer]:
    # With an access token, as when bound beyond loopback: the page must work through the token cookie alone.
    journal = JournalServer(tmp_path_factory.mktemp("journal") / "data", args=["--token", TOKEN, *ONE_SLOT]).start()
    try:
        yield journal
    finally:
        journal.stop()


@pytest.fixture(scope="module")
def browser(camera_clip: Path) -> Iterator[object]:
    playwright = sync_api.sync_playwright().start()
    try:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=[
            "--no-sandbox", "--disable-gpu",
            "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
            f"--use-file-for-fake-video-capture={camera_clip}",
            "--disable-background-networking", "--disable-component-update", "--no-first-run", "--disable-sync",
        ])
        yield browser
        browser.close()
    finally:
        playwright.stop()


@pytest.fixture
def page(browser) -> Iterator[object]:
    """A fresh page; script errors and console errors (CSP violations among them) fail the test."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-GB")
    page = context.new_page()
    page.set_default_timeout(30_000)
    problems: list[str] = []
    page.on("pageerror", lambda err: problems.append(f"script error: {err}"))

    def console(msg) -> None:
        # An API error answer is logged by Chromium as a failed resource; the tests that cause one allow it.
        if msg.type == "error" and not msg.text.startswith("Failed to load resource"):
            problems.append(f"console: {msg.text}")

    page.on("console", console)
    yield page
    context.close()
    assert not problems, "\n".join(problems)


def open_journal(page, server: JournalServer) -> None:
    """The address the server prints (with ?token=); the server answers with the cookie and a plain /."""
    page.goto(f"{server.url}?token={server.token}" if server.token else server.url)
    assert "token" not in page.url
    expect(page.locator("body")).to_have_attribute("data-ready", "true")


def wait_until_video_loads(video, ready_state: int, timeout_ms: int = 20_000) -> None:
    """Waits on the video's own events inside the page.

    ``page.wait_for_function`` runs its predicate through ``eval``, which the server's CSP (script-src
    'self') refuses in current Chromium; a function given to ``evaluate`` is not eval'd.
    """
    video.evaluate(
        "(v, [state, ms]) => new Promise((ok, fail) => {"
        " const check = () => { if (v.readyState >= state) ok(); };"
        " v.addEventListener('loadedmetadata', check); v.addEventListener('loadeddata', check);"
        " v.addEventListener('error', () => fail(new Error('clip failed to load')));"
        " setTimeout(() => fail(new Error(`readyState ${v.readyState} after ${ms} ms`)), ms); check(); })",
        [ready_state, timeout_ms],
    )


def entries(server: JournalServer) -> list[dict]:
    status, body = server.json("GET", "api/entries")
    assert status == 200, body
    return body["entries"]


def ffmpeg(*args: str) -> None:
    import imageio_ffmpeg

    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", *args], check=True, timeout=120)


def h264(clip: Path) -> Path:
    """The clip as H.264 in MP4, as a phone writes it (OpenCV's mp4v is not something a browser plays)."""
    out = clip.with_name(clip.stem + "_h264.mp4")
    ffmpeg("-i", str(clip), "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p",
           "-movflags", "+faststart", str(out))
    return out


def _head() -> np.ndarray:
    from tests.fixtures.clips import astronaut_head

    return astronaut_head()


def png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", head[16:24])


def contrast(css_a: str, css_b: str) -> float:
    """WCAG contrast ratio of two computed CSS colours (``rgb(r, g, b)``)."""
    def luminance(css: str) -> float:
        channels = [int(v) / 255 for v in re.findall(r"\d+", css)[:3]]
        lin = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
        return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]
    high, low = sorted((luminance(css_a), luminance(css_b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def test_record_save_reload_restart_edit_delete(server: JournalServer, page) -> None:
    before = len(entries(server))
    open_journal(page, server)
    classes = [c.lower() for c in server.json("GET", "api/health")[1]["classes"]]
    expect(page.locator("#legend .legend-item")).to_have_count(len(classes))

    # record: camera, a visible 3-2-1 countdown, 4 s of MediaRecorder, the clip played back before saving
    page.click("#record")
    expect(page.locator("#countdown")).to_be_visible()
    expect(page.locator("#countdown")).to_have_text(re.compile("^[123]$"))
    expect(page.locator("#playback")).to_be_visible(timeout=20_000)
    assert page.eval_on_selector("#playback", "v => v.src.startsWith('blob:')")
    expect(page.locator("#retake")).to_be_visible()
    expect(page.locator("#save")).to_be_enabled()
    expect(page.locator("#save")).to_be_focused()  # Record was hidden under the keyboard: focus fell to <body>
    page.fill("#note", "a walk by the river")
    page.click("#save")

    # the result: the label, a bar per class, the face share, the timeline chart and the stored clip playing
    expect(page.locator("#result-label")).to_have_text(HAPPY, timeout=60_000)
    expect(page.locator("#result-title")).to_be_focused()  # a keyboard user lands on it (focus was lost)
    expect(page.locator("#error")).to_be_hidden()
    result = page.locator("#result")
    expect(result.locator("[data-testid=bars] li")).to_have_count(len(classes))
    expect(result.locator("[data-testid=face-ratio]")).to_contain_text("%")
    expect(result.locator("[data-testid=timeline] svg path").first).to_be_attached()
    wait_until_video_loads(result.locator("video"), 1)

    stored = entries(server)
    assert len(stored) == before + 1
    entry = stored[0]
    assert entry["label"].lower() == "happy" and entry["note"] == "a walk by the river"
    item = page.locator(f"[data-testid=entry][data-id='{entry['id']}']")
    expect(item).to_have_count(1)
    expect(item.locator("[data-testid=entry-label]")).to_have_text(HAPPY)
    expect(item.locator("[data-testid=entry-note]")).to_have_text("a walk by the river")
    day_name = page.evaluate("d => new Intl.DateTimeFormat(undefined, {weekday: 'long', day: 'numeric', "
                             "month: 'long'}).format(new Date(d))", entry["created_at"])
    # heard with its day (Tab through History gave "02:06 Happy 98% ..." with no date)
    expect(item.get_by_test_id("entry-open")).to_have_accessible_name(re.compile(f"^{re.escape(day_name)}, "))
    expect(page.locator(f"#calendar [data-testid=calendar-day][data-label='{entry['label']}']")).to_have_count(1)
    expect(page.get_by_test_id(f"count-7-{entry['label']}")).to_have_text("1")

    # it survives a reload, then a server restart
    page.reload()
    expect(page.locator("body")).to_have_attribute("data-ready", "true")
    expect(item.locator("[data-testid=entry-label]")).to_have_text(HAPPY)
    server.stop()
    # opened while the server is down: the page says so, not that the browser cannot play the clip
    item.get_by_test_id("entry-open").click()
    expect(item.locator(".clip-note")).to_have_text(re.compile(r"^Cannot reach the journal server"), timeout=20_000)
    server.start()
    open_journal(page, server)
    expect(item).to_have_count(1)

    # opening it loads the clip lazily, shows its bars and timeline; its note can be edited
    assert item.locator("video").count() == 0
    item.get_by_test_id("entry-open").click()
    expect(item.locator("[data-testid=bars] li")).to_have_count(len(classes))
    expect(item.locator("[data-testid=timeline] svg")).to_be_visible()
    wait_until_video_loads(item.locator("video"), 1)
    item.get_by_test_id("note-edit").fill("a walk by the river, then tea")
    item.get_by_test_id("note-save").click()
    expect(item.get_by_test_id("note-status")).to_have_text("Note saved.")
    expect(item.get_by_test_id("entry-note")).to_have_text("a walk by the river, then tea")
    assert server.json("GET", f"api/entries/{entry['id']}")[1]["note"] == "a walk by the river, then tea"
    item.get_by_test_id("note-edit").press("End")
    item.get_by_test_id("note-edit").type("!")  # more text: "Note saved." would no longer be true
    expect(item.get_by_test_id("note-status")).to_have_text("")

    # delete, with the confirm step inside the page: cancel (or Escape) keeps it, confirm removes it
    item.get_by_test_id("delete").click()
    item.get_by_test_id("cancel-delete").click()
    expect(item).to_have_count(1)
    expect(item.get_by_test_id("delete")).to_be_focused()
    item.get_by_test_id("delete").click()
    expect(item.get_by_test_id("cancel-delete")).to_be_focused()
    page.keyboard.press("Escape")
    expect(item.get_by_test_id("confirm")).to_be_hidden()
    expect(item.get_by_test_id("delete")).to_be_focused()
    item.get_by_test_id("delete").click()
    item.get_by_test_id("confirm-delete").click()
    expect(item).to_have_count(0)
    # said beside the history, and the focus there: it was left on the page's body, the news in the New-entry card
    expect(page.locator("#history-status")).to_have_text("The entry was deleted.")
    expect(page.locator("#history-title")).to_be_focused()
    assert server.json("GET", f"api/entries/{entry['id']}")[0] == 404
    assert server.request("GET", f"api/entries/{entry['id']}/clip")[0] == 404
    page.reload()
    expect(page.locator("body")).to_have_attribute("data-ready", "true")
    expect(item).to_have_count(0)
    assert len(entries(server)) == before


def test_corrupt_upload_shows_the_servers_message(server: JournalServer, page, tmp_path: Path) -> None:
    broken = make_corrupt_file(tmp_path / "broken.mp4")
    before = len(entries(server))
    # what the server says about this file, asked without storing anything
    status, answer = server.upload("api/predict", broken.read_bytes(), filename="broken.mp4")
    assert 400 <= status < 500 and answer["error"], answer

    open_journal(page, server)
    page.set_input_files("#upload", str(broken))
    expect(page.locator("#save")).to_be_enabled()
    page.click("#save")
    error = page.locator("#error")
    expect(error).to_be_visible(timeout=30_000)
    expect(error).to_have_attribute("role", "alert")
    expect(page.get_by_test_id("error-message")).to_have_text(answer["error"])
    expect(page.locator("#status")).to_have_text("Nothing was saved.")
    expect(page.locator("#result")).to_be_hidden()
    assert len(entries(server)) == before
    expect(page.locator("#save")).to_be_disabled()  # the same clip would be refused again (it stayed enabled)
    expect(error).to_be_focused()  # Save, which had focus, is disabled: focus fell to the page's top
    page.locator("#error-close").focus()
    page.keyboard.press("Enter")
    expect(error).to_be_hidden()
    expect(page.locator("#record")).to_be_focused()  # the next step, not the page's top
    page.set_input_files("#upload", str(broken))  # another clip (here the same file, chosen again) can be saved
    expect(page.locator("#save")).to_be_enabled()
    page.click("#save")  # refused again; Escape closes the message as Dismiss does (it stayed, following the user)
    expect(error).to_be_focused(timeout=30_000)
    page.keyboard.press("Escape")
    expect(error).to_be_hidden()
    expect(page.locator("#record")).to_be_focused()


DIARY = {"anger": ["Train was late; missed the meeting.", "Deadline moved again."],
         "happy": ["Lunch with Mira, laughed a lot.", "Finished the draft!"],
         "neutral": ["Quiet evening, read a book.", "Long walk by the river."],
         "sad": ["Slept badly, grey morning.", "Headache all afternoon."],
         "surprise": ["Surprise call from Dad!", "Got the flat!"]}


def seed_past_weeks(server: JournalServer, tmp_path: Path) -> int:
    """Entries over the last four weeks, for the mood calendar: clips of real face photos of several
    expressions (../shared/data/faces), classified by the running server, kept through the store with
    an earlier date (the API only ever dates an entry now). None when the photos are absent."""
    from datetime import datetime, timedelta

    from pipeline.journal.store import EntryStore
    from tests.fixtures.clips import load_photo

    faces = REPO.parent / "shared" / "data" / "faces"
    if not faces.is_dir():
        return 0
    labels = sorted(p for p in faces.iterdir() if p.is_dir())
    photos = [(label.name, i, sorted(label.glob("*.jpg"))[i]) for i in range(2) for label in labels]
    model = server.json("GET", "api/health")[1]["model"]
    store = EntryStore(server.data_dir)
    now = datetime.now().astimezone()
    kept = 0
    try:
        for i, (label, k, photo) in enumerate(photos):
            clip = make_face_clip(load_photo(photo), tmp_path / f"past_{i}.mp4", seconds=3.2, size=SMALL, seed=i).path
            status, result = server.upload("api/predict", clip.read_bytes())
            if status != 200:
                continue
            upload = store.new_upload().with_suffix(".mp4")
            shutil.copyfile(h264(clip), upload)
            when = now - timedelta(days=26 - i * 2.5, hours=i % 3 * 4)
            store.add(upload, result, DIARY.get(label, ["-", "-"])[k], model, created_at=when)
            kept += 1
    finally:
        store.close()
    return kept


def test_history_screenshot(server: JournalServer, page, tmp_path: Path) -> None:
    """A few entries uploaded through the API, the newest one opened; the image is written and is a PNG."""
    from tests.fixtures.clips import astronaut_head

    seed_past_weeks(server, tmp_path)
    head = astronaut_head()
    notes = ["Coffee on the balcony before work.", "Long day; the run helped.", "Dinner with Ana and Joss."]
    for i, note in enumerate(notes):
        photo = head if i != 1 else np.ascontiguousarray(head[:, ::-1])
        clip = make_face_clip(photo, tmp_path / f"seed_{i}.mp4", seconds=3.2, size=SMALL, seed=10 + i).path
        status, body = server.upload("api/entries", h264(clip).read_bytes(), note=note)
        assert status == 201, body

    open_journal(page, server)
    newest = page.locator("[data-testid=entry]").first
    expect(newest.get_by_test_id("entry-note")).to_have_text(notes[-1])
    expect(page.locator("[data-testid=entry]")).to_have_count(len(entries(server)))
    newest.get_by_test_id("entry-open").click()
    expect(newest.locator("[data-testid=timeline] svg")).to_be_visible()
    wait_until_video_loads(newest.locator("video"), 2)
    page.eval_on_selector_all("video", "vs => vs.forEach(v => { v.pause(); v.currentTime = 1.5; })")
    page.wait_for_timeout(300)

    shot = tmp_path / "journal.png"
    page.screenshot(path=str(shot), full_page=True)
    width, height = png_size(shot)
    assert width == 1280 and height >= 900 and shot.stat().st_size > 30_000
    target = os.environ.get(SCREENSHOT_ENV)
    if target:
        path = Path(target) if Path(target).is_absolute() else REPO / target
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, path)


def test_export_links_download_every_entry(server: JournalServer, page) -> None:
    open_journal(page, server)
    stored = entries(server)
    with page.expect_download() as download:
        page.click("#export-json")
    exported = json.loads(Path(download.value.path()).read_text())
    assert sorted(e["id"] for e in exported["entries"]) == sorted(e["id"] for e in stored)
    with page.expect_download() as download:
        page.click("#export-csv")
    rows = Path(download.value.path()).read_text(encoding="utf-8-sig").strip().splitlines()
    assert rows[0].startswith("id,") and len(rows) == 1 + len(stored)


def test_the_page_needs_the_token(server: JournalServer, browser) -> None:
    context = browser.new_context()
    try:
        page = context.new_page()
        response = page.goto(server.url)
        assert response.status == 401 and "access token" in json.loads(response.text())["error"]
        open_journal(page, server)
        expect(page.locator("#model-info")).to_contain_text("Model ")
        expect(page.locator("#error")).to_be_hidden()
    finally:
        context.close()


def test_busy_server_says_when_to_retry(server: JournalServer, page, tmp_path: Path) -> None:
    """An upload that never finishes holds the only slot: the page says 503's Retry-After, then saving works."""
    clip = h264(make_face_clip(_head(), tmp_path / "busy.mp4", seconds=3.2, size=SMALL, seed=21).path)
    open_journal(page, server)
    before = len(entries(server))
    held = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    try:
        held.sendall((f"POST /api/entries HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
                      f"Authorization: Bearer {server.token}\r\nContent-Length: 100000\r\n"
                      "Content-Type: multipart/form-data; boundary=held\r\n\r\n--held\r\n").encode())
        deadline = time.monotonic() + 20
        while server.upload("api/predict", b"", filename="probe.mp4")[0] != 503:  # until the slot is taken
            assert time.monotonic() < deadline, "the held upload never took the server's only slot"
            time.sleep(0.1)
        page.set_input_files("#upload", str(clip))
        page.click("#save")
        busy = re.compile(r"^the server is busy, try again in \d+ s$")
        expect(page.get_by_test_id("error-message")).to_have_text(busy)
        expect(page.locator("#status")).to_have_text("Nothing was saved.")
        assert len(entries(server)) == before
    finally:
        held.close()
    # the slot comes back when the held upload is dropped; the same clip, still pending, is saved
    deadline = time.monotonic() + 20
    while server.upload("api/predict", b"", filename="probe.mp4")[0] == 503:
        assert time.monotonic() < deadline, "the dropped upload never gave its slot back"
        time.sleep(0.1)
    page.click("#save")
    expect(page.locator("#result-label")).to_have_text(HAPPY, timeout=60_000)
    expect(page.locator("#error")).to_be_hidden()
    assert len(entries(server)) == before + 1


def test_a_long_hevc_entry_on_a_phone(server: JournalServer, page, tmp_path: Path) -> None:
    """A 60 s entry whose clip (HEVC with sound, as an iPhone records) Chromium cannot show, seen 375 px wide:
    its chart had 31 time labels run together, its clip was a black box with no word, its note was cut to a
    few letters."""
    from pipeline.journal.store import EntryStore

    clip = make_face_clip(_head(), tmp_path / "long.mp4", seconds=3.2, size=SMALL, seed=31).path
    status, result = server.upload("api/predict", h264(clip).read_bytes())
    assert status == 200, result
    window = result["windows"][0]
    span = window["end_s"] - window["start_s"]
    result["seconds"] = 60.0
    result["windows"] = [{**window, "start_s": start, "end_s": start + span} for start in np.arange(0, 60 - span, 1.0)]
    hevc = tmp_path / "phone.mov"
    ffmpeg("-i", str(clip), "-f", "lavfi", "-i", "anullsrc=r=44100:cl=mono", "-shortest", "-c:v", "libx265",
           "-preset", "ultrafast", "-tag:v", "hvc1", "-pix_fmt", "yuv420p", "-c:a", "aac", str(hevc))
    note = "A long walk along the canal, then soup with Ana at the corner place; the rain held off."
    store = EntryStore(server.data_dir)
    try:
        upload = store.new_upload().with_suffix(".mov")
        shutil.copyfile(hevc, upload)
        entry = store.add(upload, result, note, server.json("GET", "api/health")[1]["model"])
    finally:
        store.close()

    page.set_viewport_size({"width": 375, "height": 700})
    open_journal(page, server)
    item = page.locator(f"[data-testid=entry][data-id='{entry['id']}']")
    note_box = item.get_by_test_id("entry-note").bounding_box()
    assert note_box["width"] > 250, note_box  # a line of its own, not the few pixels left beside the label
    item.get_by_test_id("entry-open").click()
    seconds = item.locator("[data-testid=timeline] svg text.tick", has_text=re.compile(r"^\d+(\.\d)? s$"))
    expect(seconds.first).to_be_attached()
    assert 4 <= seconds.count() <= 8, seconds.all_inner_texts()
    expect(item.locator(".clip-note")).to_have_text("This browser cannot play this clip; it is kept as it was sent.")
    server.json("DELETE", f"api/entries/{entry['id']}")


def test_an_upload_turns_the_camera_off_and_note_drafts_survive(server: JournalServer, page, tmp_path: Path) -> None:
    """At 375 px: the camera stayed on after a file was chosen; a long unbroken note widened the page; a note
    typed in History and not saved was lost when a new entry redrew the list; the "This clip" card kept an
    edited note's old text; the day numbers of the calendar were white on yellow (2.1:1)."""
    clips = [h264(make_face_clip(_head(), tmp_path / f"c{i}.mp4", seconds=3.2, size=SMALL, seed=40 + i).path)
             for i in range(2)]
    page.set_viewport_size({"width": 375, "height": 800})
    open_journal(page, server)
    page.click("#camera")
    expect(page.locator("#camera")).to_have_text("Turn off camera")
    page.set_input_files("#upload", str(clips[0]))
    expect(page.locator("#camera")).to_have_text("Turn on camera")
    assert page.eval_on_selector("#preview", "v => v.srcObject === null")

    # a note pasted past the limit was cut without a word
    limit = page.evaluate("document.getElementById('note').maxLength")
    page.fill("#note", "x" * (limit + 50))
    expect(page.locator("#note-limit")).to_have_text(f"A note holds at most {limit:,} characters; the rest was "
                                                     "not kept.")
    # an unsaved clip and note went on a reload without a word: leaving now asks first
    asks = ("() => { const e = new Event('beforeunload', {cancelable: true}); dispatchEvent(e); "
            "return e.defaultPrevented; }")
    assert page.evaluate(asks)
    page.fill("#note", "https://example.org/" + "a" * 300)
    expect(page.locator("#note-limit")).to_be_hidden()
    page.click("#save")
    expect(page.locator("#result-label")).to_have_text(HAPPY, timeout=60_000)
    assert not page.evaluate(asks)  # saved: nothing to lose
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    first = entries(server)[0]
    item = page.locator(f"[data-testid=entry][data-id='{first['id']}']")
    item.get_by_test_id("entry-open").click()
    item.get_by_test_id("note-edit").fill("typed, not saved yet")

    page.set_input_files("#upload", str(clips[1]))
    page.click("#save")
    expect(page.locator("#result-label")).to_have_text(HAPPY, timeout=60_000)
    second = entries(server)[0]
    assert second["id"] != first["id"]
    expect(item.get_by_test_id("note-edit")).to_have_value("typed, not saved yet")
    expect(item.get_by_test_id("note-status")).to_have_text("Not saved yet.")

    latest = page.locator(f"[data-testid=entry][data-id='{second['id']}']")
    latest.get_by_test_id("entry-open").click()
    latest.get_by_test_id("note-edit").fill("tea with Ana")
    latest.get_by_test_id("note-save").click()
    expect(latest.get_by_test_id("note-status")).to_have_text("Note saved.")
    expect(page.locator("#result-when")).to_contain_text("tea with Ana")

    day = page.locator(f"#calendar [data-testid=calendar-day][data-day='{second['day']}']")
    assert day.get_attribute("role") is None  # a button, heard as one (it was a "gridcell")
    colours = day.evaluate("b => [getComputedStyle(b).color, getComputedStyle(b).backgroundColor]")
    assert contrast(*colours) >= 4.0, colours  # white on a happy day's yellow was 2.1:1
    day.click()
    expect(page.locator(f"#day-{second['day']} .day-title")).to_be_focused()

    # leaving with that draft unsaved asks first
    with page.expect_event("dialog", timeout=10_000) as asked:
        page.close(run_before_unload=True)
    assert asked.value.type == "beforeunload"
    asked.value.dismiss()  # stay
    for entry in (first, second):
        server.json("DELETE", f"api/entries/{entry['id']}")


def test_months_back_in_the_calendar_and_history_pages(browser, tmp_path: Path) -> None:
    """60 entries over four months: the calendar only ever showed the last five weeks, and History listed every
    entry at once (66 made a 6,000 px page on a phone)."""
    from datetime import datetime, timedelta

    from pipeline.journal.store import EntryStore

    journal = JournalServer(tmp_path / "data").start()
    try:
        clip = h264(make_face_clip(_head(), tmp_path / "day.mp4", seconds=3.2, size=SMALL, seed=50).path)
        status, result = journal.upload("api/predict", clip.read_bytes())
        assert status == 200, result
        model = journal.json("GET", "api/health")[1]["model"]
        store = EntryStore(journal.data_dir)
        now = datetime.now().astimezone()
        try:
            for i in range(60):
                upload = store.new_upload().with_suffix(".mp4")
                shutil.copyfile(clip, upload)
                store.add(upload, result, f"day {i}", model, created_at=now - timedelta(days=2 * i))
        finally:
            store.close()
        oldest = entries(journal)[-1]

        context = browser.new_context(viewport={"width": 375, "height": 800}, locale="en-GB")
        page = context.new_page()
        try:
            open_journal(page, journal)
            expect(page.locator("[data-testid=entry]")).to_have_count(50)
            expect(page.locator("#history-more")).to_have_text("Show older entries (10 more)")
            expect(page.locator("#cal-later")).to_be_disabled()
            # The calendar is one Tab stop, its newest day; the arrow keys move between its days (each day
            # with entries was a Tab stop of its own: up to 35 of them before History).
            days = page.locator("#calendar [data-testid=calendar-day]")
            shown = [days.nth(i).get_attribute("data-day") for i in range(days.count())]  # oldest first
            assert len(shown) >= 15 and shown == sorted(shown)
            expect(page.locator("#calendar [tabindex='0']")).to_have_count(1)
            page.focus("#cal-earlier")
            page.keyboard.press("Tab")
            focused = "#calendar [data-testid=calendar-day]:focus"
            expect(page.locator(focused)).to_have_attribute("data-day", shown[-1])
            for key, expected in (("ArrowLeft", shown[-2]), ("ArrowUp", shown[-6]), ("ArrowRight", shown[-5]),
                                  ("Home", shown[0]), ("ArrowLeft", shown[0]), ("ArrowDown", shown[4]),
                                  ("End", shown[-1]), ("ArrowRight", shown[-1])):
                page.keyboard.press(key)  # entries every other day: a week up is 4 days with entries back
                expect(page.locator(focused)).to_have_attribute("data-day", expected)
            page.keyboard.press("ArrowLeft")
            page.keyboard.press("Tab")  # out of the calendar in one step, and back in on the day left
            expect(page.locator(focused)).to_have_count(0)
            page.keyboard.press("Shift+Tab")
            expect(page.locator(focused)).to_have_attribute("data-day", shown[-2])
            day = page.locator(f"#calendar [data-testid=calendar-day][data-day='{oldest['day']}']")
            while not day.count():
                assert page.locator("#cal-earlier").is_enabled(), "the oldest entry's day was never shown"
                page.click("#cal-earlier")
            expect(page.locator("#mood-title")).to_have_text(re.compile(r"^Mood, \d+ \w+ – \d+ \w+$"))
            expect(page.locator("#cal-earlier")).to_be_disabled()  # nothing before the first entry
            day.click()  # an entry History does not list yet: it lists down to it
            expect(page.locator(f"#day-{oldest['day']} .day-title")).to_be_focused()
            expect(page.locator("[data-testid=entry]")).to_have_count(60)
            expect(page.locator("#history-more")).to_be_hidden()
            while page.locator("#cal-later").is_enabled():
                page.click("#cal-later")
            expect(page.locator("#mood-title")).to_have_text("Mood over the last five weeks")
            page.reload()
            expect(page.locator("body")).to_have_attribute("data-ready", "true")
            page.click("#history-more")
            expect(page.locator("[data-testid=entry]")).to_have_count(60)
            expect(page.locator("[data-testid=entry-open]").nth(50)).to_be_focused()  # the first one added
        finally:
            context.close()
    finally:
        journal.stop()
