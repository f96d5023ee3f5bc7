"""The journal's HTTP routes: the page, the entries API, exports and health.

Every answer is JSON (errors as ``{"error": "..."}``, a line a person can act on) except the page,
the clips and the exports. An upload becomes an entry only when it decoded, showed a face and was
classified; on any failure its file is removed and nothing is stored.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import logging
import shutil
from datetime import date
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from pipeline.journal.classify import Busy, ClipClassifier, PredictError
from pipeline.journal.security import Guard, SecurityHeaders, UploadLimit, UploadTooLarge
from pipeline.journal.settings import JournalSettings
from pipeline.journal.store import ENTRY_ID, EntryStore, sniff_suffix, still_image

log = logging.getLogger(__name__)
STATIC = Path(__file__).resolve().parent / "static"
MAX_NOTE = 10_000  # characters
SNIFF_BYTES = 64


class ApiError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.headers = headers


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _day(value: str | None, name: str) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ApiError(400, f"?{name}= must be a date like 2026-12-01 (got {value!r})") from None


def for_the_page(message: str) -> str:
    """``predict``'s reason, in words for someone who records a clip rather than runs a decoder."""
    if message.startswith("no face found"):
        return f"{message}: keep your face in the frame and in good light, then record again"
    if "FFmpeg cannot open it" in message or "no frame could be decoded" in message:
        return ("the file cannot be read as a video (a corrupt file, or not a video): record a clip, or pick "
                "an .mp4, .webm or .mov file")
    return message


def _note(value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ApiError(400, "the note must be text")
    if len(value) > MAX_NOTE:
        raise ApiError(400, f"the note is {len(value)} characters long; at most {MAX_NOTE} are kept")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate ("\ud800" in JSON): SQLite cannot store it
        raise ApiError(400, "the note holds a character that is not text (half of a UTF-16 pair): send it as "
                            "UTF-8 text") from None
    return value


def _found(store: EntryStore, entry_id: str) -> dict[str, Any]:
    entry = store.get(entry_id) if ENTRY_ID.match(entry_id) else None
    if entry is None:
        raise ApiError(404, f"no entry {entry_id!r} (it may have been deleted)")
    return entry


def _csv_cell(value: Any) -> Any:
    """Text a spreadsheet would run as a formula is quoted with a leading apostrophe."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def export_csv(entries: list[dict[str, Any]], classes: tuple[str, ...]) -> str:
    """With a UTF-8 byte order mark: without one, Excel reads the notes' accents and emoji as another code page."""
    names = list(classes) + sorted({c for e in entries for c in e["probabilities"]} - set(classes))
    out = io.StringIO()
    out.write("\ufeff")
    writer = csv.writer(out)
    writer.writerow(["id", "created_at", "day", "label", "confidence", "face_ratio", "seconds", "note", "model",
                     *(f"p_{c}" for c in names)])
    for e in entries:
        writer.writerow([e["id"], e["created_at"], e["day"], e["label"], f"{e['confidence']:.6f}",
                         f"{e['face_ratio']:.4f}", f"{e['seconds']:.3f}", _csv_cell(e["note"]), e["model"],
                         *(f"{e['probabilities'].get(c, 0.0):.6f}" for c in names)])
    return out.getvalue()


def create_app(settings: JournalSettings, store: EntryStore, classifier: ClipClassifier, version: str,
               token: str | None = None) -> Any:
    """The ASGI app: FastAPI routes wrapped in the upload limit, the guard and the security headers."""
    model = classifier.model
    api = FastAPI(title="clip-emotion journal", version=version, docs_url=None, redoc_url=None, openapi_url=None)

    @api.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return _error(exc.status, str(exc), exc.headers)

    @api.exception_handler(UploadTooLarge)
    async def _too_large(request: Request, exc: UploadTooLarge) -> JSONResponse:
        return _error(413, str(exc), {"connection": "close"})

    @api.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> JSONResponse:
        message = {404: "no such page or API route", 405: "that method is not allowed here"}.get(
            exc.status_code, str(exc.detail))
        return _error(exc.status_code, message)

    @api.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # Starlette re-raises after this answer, so uvicorn still logs the traceback on the server's console.
        return _error(500, f"the server failed on this request ({type(exc).__name__}); nothing was stored. "
                           "The details are on the server's console")

    @api.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(400, "bad request: " + "; ".join(str(e.get("msg")) for e in exc.errors()))

    async def receive_clip(request: Request) -> tuple[Path, str]:
        """The multipart upload written to ``incoming/`` under a server-chosen name, and the note."""
        if not request.headers.get("content-type", "").startswith("multipart/form-data"):
            raise ApiError(415, "send the clip as multipart/form-data, in a field named 'clip'")
        try:
            form = await request.form(max_files=1, max_fields=4)
        except ClientDisconnect:
            raise ApiError(400, "the upload was interrupted") from None
        try:
            clip = form.get("clip")
            if not isinstance(clip, UploadFile):
                raise ApiError(400, "no clip: send the video file in a multipart field named 'clip'")
            note = _note(form.get("note"))
            head = await clip.read(SNIFF_BYTES)
            if not head:
                raise ApiError(400, "the clip is empty (0 bytes): record again or pick another file")
            if (kind := still_image(head)) is not None:
                raise ApiError(415, f"this is a photo ({kind}), not a video: the journal keeps a short clip of "
                                    "your face (the page records 4 s); record one, or pick a video file")
            path = store.new_upload().with_suffix(sniff_suffix(head))
            try:
                with open(path, "wb") as out:
                    out.write(head)
                    await clip.seek(len(head))
                    await run_in_threadpool(shutil.copyfileobj, clip.file, out, 1 << 20)  # off the event loop
            except BaseException:  # a full disk, say: no partial file stays behind
                path.unlink(missing_ok=True)
                raise
            return path, note
        finally:
            await form.close()

    async def classified(request: Request) -> tuple[Path, str, dict[str, Any]]:
        """Receive and classify a clip while holding a worker slot; the file is removed on failure."""
        try:
            classifier.reserve()
        except Busy as exc:
            raise ApiError(503, str(exc), {"retry-after": str(exc.retry_after)}) from None
        path: Path | None = None
        try:
            path, note = await receive_clip(request)
            try:
                prediction = await classifier.classify(path)
            except PredictError as exc:
                message = str(exc).removeprefix(f"{path}: ").replace(str(path), "the clip")
                raise ApiError(422, for_the_page(message)) from None
            return path, note, prediction.to_dict()
        except BaseException as exc:
            if path is not None:
                path.unlink(missing_ok=True)
            if isinstance(exc, asyncio.CancelledError):
                # The server is stopping and its --shutdown-seconds ran out: an answer, not a traceback.
                log.warning("journal: stopping; an upload still in progress was not saved")
                raise ApiError(503, "the journal is stopping, so this clip was not saved: send it again once the "
                                    "journal runs again") from None
            raise
        finally:
            classifier.release()

    @api.post("/api/entries", status_code=201)
    async def create_entry(request: Request) -> dict[str, Any]:
        path, note, result = await classified(request)
        try:
            return store.add(path, result, note, model.source.name)
        finally:
            path.unlink(missing_ok=True)  # already moved into clips/ unless adding failed

    @api.post("/api/predict")
    async def predict(request: Request) -> dict[str, Any]:
        path, _, result = await classified(request)
        path.unlink(missing_ok=True)
        result.pop("source", None)
        return result

    @api.get("/api/entries")
    def list_entries(request: Request) -> dict[str, Any]:
        since = _day(request.query_params.get("from"), "from")
        until = _day(request.query_params.get("to"), "to")
        entries = store.entries(since, until)
        return {"entries": entries, "count": len(entries)}

    @api.get("/api/entries/{entry_id}")
    def get_entry(entry_id: str) -> dict[str, Any]:
        return _found(store, entry_id)

    @api.patch("/api/entries/{entry_id}")
    async def edit_entry(entry_id: str, request: Request) -> dict[str, Any]:
        _found(store, entry_id)
        try:
            body = json.loads(await request.body() or b"null")
        except ValueError:
            raise ApiError(400, 'send JSON like {"note": "..."}') from None
        if not isinstance(body, dict) or set(body) != {"note"}:
            raise ApiError(400, 'only the note can be edited: send JSON like {"note": "..."}')
        entry = store.set_note(entry_id, _note(body["note"]))
        if entry is None:
            raise ApiError(404, f"no entry {entry_id!r} (it may have been deleted)")
        return entry

    @api.delete("/api/entries/{entry_id}")
    def delete_entry(entry_id: str) -> dict[str, Any]:
        _found(store, entry_id)
        if not store.delete(entry_id):
            raise ApiError(404, f"no entry {entry_id!r} (it may have been deleted)")
        return {"deleted": entry_id}

    @api.get("/api/entries/{entry_id}/clip")
    def entry_clip(entry_id: str) -> FileResponse:
        _found(store, entry_id)
        found = store.clip_file(entry_id)
        if found is None:
            raise ApiError(404, f"the clip of entry {entry_id!r} is missing from the data folder")
        path, media_type = found
        return FileResponse(path, media_type=media_type, headers={"cache-control": "no-store"})

    @api.get("/api/export.csv")
    def export_as_csv() -> Response:
        return Response(export_csv(store.entries(), model.classes), media_type="text/csv; charset=utf-8",
                        headers={"content-disposition": 'attachment; filename="journal.csv"'})

    @api.get("/api/export.json")
    def export_as_json() -> Response:
        body = json.dumps({"entries": store.entries(), "classes": list(model.classes)}, indent=1)
        return Response(body, media_type="application/json",
                        headers={"content-disposition": 'attachment; filename="journal.json"'})

    @api.get("/api/health")
    def health() -> dict[str, Any]:
        return {"model": model.source.name, "kind": model.kind, "backend": model.backend,
                "classes": list(model.classes), "version": version, "entries": store.count(),
                "workers": classifier.workers, "queue": classifier.capacity - classifier.workers,
                "max_note": MAX_NOTE}

    @api.get("/")
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8")

    api.mount("/static", StaticFiles(directory=STATIC), name="static")

    guarded = Guard(UploadLimit(api, settings.max_upload_bytes), token=token, loopback=settings.loopback)
    return SecurityHeaders(guarded)
