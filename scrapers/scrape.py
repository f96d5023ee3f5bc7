"""`cli.py scrape`: search stock-footage APIs per label, download the clips as <Label>_<NNNN>.mp4 for `prepare`.

State is what is on disk: ``sources.csv`` (one row per file, with its attribution) and the files it
names. A (provider, id) with a row whose file exists is done; a rerun skips it and numbers new files
after the highest existing one. A download goes to a hidden ``.<provider>_<id>.<url hash>.part`` file;
its row is written first and the file renamed to its final name last, so an interrupted run never leaves
half a clip under a final name (and a row whose file never arrived is dropped, and fetched again, on the
next run). A download that breaks keeps its ``.part`` (and a ``.part.json`` with the total size and the
server's ETag/Last-Modified); the next try, in the same run or a later one, asks only for the rest with
``Range: bytes=<size>-`` and appends the 206 answer (a 200 answer starts over).

sources.csv is opened by people in spreadsheets: free-text cells that start with = + - @ get a leading
single quote so they are not run as formulas. API keys are never written: not in sources.csv, not in the
search cache (an answer that quotes the key back is not cached), and messages name a host[:port] only.

Politeness: 429 answers wait for Retry-After (else exponential backoff, capped), X-Ratelimit-Remaining
near zero waits for X-Ratelimit-Reset, search answers are cached for 24 hours (Pixabay asks for it),
one request at a time, timeouts everywhere.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import os
import re
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
import urllib3

from scrapers.providers import (
    AuthError,
    NoResultsError,
    Provider,
    RateLimitedError,
    Rendition,
    ScrapeError,
    UnreachableError,
    Video,
    pick_rendition,
)
from scrapers.trim import VideoInfo, cut, plan_pieces, probe
from stacks.atomic import atomic_write_text

log = logging.getLogger(__name__)

DEFAULT_QUERIES: dict[str, list[str]] = {
    "Anger": ["angry face close up"],
    "Happy": ["happy face close up"],
    "Shock": ["surprised face close up"],
    "Neutral": ["neutral face close up"],
    "Sad": ["sad face close up"],
}
SOURCES = "sources.csv"
ORIGINALS = ".originals"  # hidden: `prepare` skips it; the uncut downloads behind --trim pieces
CACHE = ".cache"
PART = ".part"
COLUMNS = ["file", "label", "provider", "id", "page_url", "author", "author_url", "licence", "licence_url",
           "query", "duration", "width", "height", "bytes", "rendition", "parent", "start", "end",
           "downloaded_at"]
# Free text (from the APIs, or the user's queries), as opposed to numbers and names this command makes.
TEXT_COLUMNS = {"page_url", "author", "author_url", "licence", "licence_url", "query", "rendition"}
USER_AGENT = "clip-emotion-scrape/0.1 (python-requests)"
_LABEL_RE = re.compile(r"[A-Za-z][A-Za-z\-]*")


# ----------------------------------------------------------------------------------------------- queries


def load_queries(path: Path | None) -> dict[str, list[str]]:
    """Label -> search queries: the defaults, or a JSON/TOML file ({"Happy": ["q1", "q2"], ...}).

    The file may also hold them under a "queries" table. It replaces the defaults (its labels are the set).
    """
    if path is None:
        return {k: list(v) for k, v in DEFAULT_QUERIES.items()}
    from pipeline.config_files import ConfigFileError, read_table

    try:
        data = read_table(Path(path), "--queries", json_ok=True)
    except ConfigFileError as exc:
        raise ScrapeError(str(exc)) from None
    if isinstance(data, dict) and isinstance(data.get("queries"), dict):
        data = data["queries"]
    if not isinstance(data, dict) or not data:
        raise ScrapeError(f"--queries {path} must map labels to queries, e.g. {{\"Happy\": [\"happy face\"]}}")
    queries: dict[str, list[str]] = {}
    for label, value in data.items():
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not items or not all(isinstance(q, str) and q.strip() for q in items):
            raise ScrapeError(f"--queries {path}: {label!r} needs a query or a list of queries")
        check_label(label)
        queries[label] = [q.strip() for q in items]
    return queries


def check_label(label: str) -> None:
    if not _LABEL_RE.fullmatch(label):
        raise ScrapeError(f"label {label!r} cannot start a <Label>_<NNNN>.mp4 name: use letters and '-' only")


def select_labels(queries: Mapping[str, list[str]], wanted: str) -> list[str]:
    """The labels of ``--labels a,b`` (any case) spelled as in the queries; all of them when empty."""
    if not wanted.strip():
        return list(queries)
    by_lower = {k.lower(): k for k in queries}
    labels = []
    for item in (x.strip() for x in wanted.split(",")):
        if not item:
            continue
        if item.lower() not in by_lower:
            raise ScrapeError(f"no queries for label {item!r} (labels with queries: {', '.join(queries)}); "
                              "add it to a --queries file")
        if by_lower[item.lower()] not in labels:
            labels.append(by_lower[item.lower()])
    return labels


# ------------------------------------------------------------------------------------------------ HTTP


@dataclass
class RetryPolicy:
    """How hard to try and how long to wait. The tests shrink the backoff; Retry-After is always obeyed."""

    retries: int = 4  # extra attempts after a 429, a 5xx, a timeout or a broken connection
    backoff: float = 1.0  # first wait (s); doubles each attempt
    backoff_cap: float = 60.0
    max_wait: float = 900.0  # a rate limit that resets later than this stops the run instead of waiting
    timeout: float = 30.0  # connect and read timeout (s)
    reserve: int = 1  # X-Ratelimit-Remaining at or below this: wait for X-Ratelimit-Reset first

    def delay(self, attempt: int) -> float:
        return min(self.backoff_cap, self.backoff * (2 ** attempt))


def retry_after(headers: Mapping[str, str], now: float) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date); None when absent or unreadable."""
    value = (headers.get("Retry-After") or "").strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - now)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def _reason(exc: Exception, timeout: float) -> str:
    """Why a request failed, without the URL (a Pixabay URL holds the key)."""
    if isinstance(exc, requests.Timeout):
        return f"no answer within {timeout:g} s"
    text = str(exc).lower()
    if "refused" in text:
        return "connection refused"
    if "name or service" in text or "getaddrinfo" in text or "resolve" in text or "nodename" in text:
        return "host name not resolved"
    if isinstance(exc, requests.exceptions.ChunkedEncodingError) or "incomplete" in text or "broken" in text:
        return "connection broken mid-transfer"
    return "connection failed"


def _host(url: str) -> str:
    """host[:port] of ``url`` for messages: never its user:password@, path or query (a key may be there)."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname or "?", parts.port
    except ValueError:
        return "?"
    return f"{host}:{port}" if port else host


class ApiClient:
    """GET JSON from a provider: retries, backoff, Retry-After, X-Ratelimit-*, timeouts, a 24 h cache."""

    def __init__(self, policy: RetryPolicy | None = None, cache_dir: Path | None = None,
                 cache_ttl: float = 24 * 3600, write_cache: bool = True,
                 session: requests.Session | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.policy = policy or RetryPolicy()
        self.cache_dir = cache_dir
        self.cache_ttl = cache_ttl
        self.write_cache = write_cache
        self.session = session or requests.Session()
        self.session.headers.setdefault("User-Agent", USER_AGENT)
        self.sleep = sleep
        self.blocked_until: dict[str, float] = {}
        self.requests = 0

    # -- cache
    def _cache_path(self, provider: Provider, url: str, params: Mapping[str, Any]) -> Path | None:
        if self.cache_dir is None:
            return None
        public = {k: str(v) for k, v in params.items() if v != provider.api_key}  # never the key
        digest = hashlib.sha256(json.dumps([provider.name, url, public], sort_keys=True).encode()).hexdigest()
        return self.cache_dir / f"{provider.name}-{digest[:24]}.json"

    def _cache_get(self, path: Path | None) -> Any:
        if path is None or not path.is_file():
            return None
        try:
            entry = json.loads(path.read_text(encoding="utf-8"))
            if time.time() - float(entry["time"]) <= self.cache_ttl:
                return entry["data"]
        except (OSError, ValueError, KeyError, TypeError):
            pass
        return None

    def _cache_put(self, path: Path | None, data: Any) -> None:
        if path is None or not self.write_cache:
            return
        try:
            atomic_write_text(path, json.dumps({"time": time.time(), "data": data}))
        except OSError:
            pass  # a cache that cannot be written is no reason to stop

    # -- rate limits
    def _wait_for_quota(self, provider: Provider) -> None:
        until = self.blocked_until.pop(provider.name, 0.0)
        wait = until - time.time()
        if wait <= 0:
            return
        if wait > self.policy.max_wait:
            when = datetime.fromtimestamp(until).strftime("%Y-%m-%d %H:%M")
            raise RateLimitedError(f"{provider.title}'s request quota is used up until {when} "
                                   f"(X-Ratelimit-Reset); rerun then, what is downloaded is kept")
        log.warning(f"{provider.title}: rate limit nearly used up, waiting {wait:.0f} s for it to reset")
        self.sleep(wait)

    def _remember_quota(self, provider: Provider, headers: Mapping[str, str]) -> None:
        try:
            remaining = int(float(headers["X-Ratelimit-Remaining"]))
            reset = float(headers["X-Ratelimit-Reset"])
        except (KeyError, TypeError, ValueError):
            return
        if remaining <= self.policy.reserve:
            now = time.time()
            self.blocked_until[provider.name] = now + provider.seconds_until_reset(reset, now)

    # -- the request
    def get_json(self, provider: Provider, url: str, params: Mapping[str, Any], headers: Mapping[str, str]) -> Any:
        cache = self._cache_path(provider, url, params)
        cached = self._cache_get(cache)
        if cached is not None:
            return cached
        host = _host(url)
        attempt = 0
        while True:
            self._wait_for_quota(provider)
            try:
                self.requests += 1
                resp = self.session.get(url, params=dict(params), headers=dict(headers), timeout=self.policy.timeout)
            except requests.RequestException as exc:
                if attempt >= self.policy.retries:
                    raise UnreachableError(
                        f"cannot reach {provider.title} at {host}: {_reason(exc, self.policy.timeout)} "
                        f"(after {attempt + 1} tries); check the network, or leave it out with --providers"
                    ) from None
                self.sleep(self.policy.delay(attempt))
                attempt += 1
                continue
            self._remember_quota(provider, resp.headers)
            status = resp.status_code
            if status == 429 or status >= 500:
                wait = retry_after(resp.headers, time.time()) if status == 429 else None
                if attempt >= self.policy.retries or (wait is not None and wait > self.policy.max_wait):
                    if status == 429:
                        raise RateLimitedError(f"{provider.title} keeps answering 429 Too Many Requests; "
                                               "rerun later, what is downloaded is kept")
                    raise UnreachableError(f"{provider.title} at {host} answers HTTP {status} "
                                           f"(after {attempt + 1} tries); try again later")
                wait = self.policy.delay(attempt) if wait is None else wait
                if status == 429:
                    log.warning(f"{provider.title}: 429 Too Many Requests, retrying in {wait:g} s")
                self.sleep(wait)
                attempt += 1
                continue
            body = resp.text[:300] if status != 200 else ""
            if provider.is_auth_failure(status, body):
                raise AuthError(provider.auth_message(status))
            if status != 200:
                detail = " ".join(body.replace(provider.api_key, "***").split())[:160]
                raise ScrapeError(f"{provider.title} answered HTTP {status}" + (f": {detail}" if detail else ""))
            try:
                data = resp.json()
            except ValueError:
                raise ScrapeError(f"{provider.title} at {host} answered something that is not JSON") from None
            if not isinstance(data, dict):
                raise ScrapeError(f"{provider.title} at {host} answered JSON of an unexpected shape")
            if not provider.api_key or provider.api_key not in json.dumps(data):
                self._cache_put(cache, data)  # an answer that echoes the key is used, never written to disk
            return data


class DownloadError(Exception):
    """One file could not be downloaded (the run goes on with the next candidate)."""


class _Retry(Exception):
    def __init__(self, reason: str, wait: float | None = None) -> None:
        super().__init__(reason)
        self.wait = wait


def _meta_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".json")


def _read_meta(dest: Path) -> dict[str, Any] | None:
    try:
        meta = json.loads(_meta_path(dest).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) and isinstance(meta.get("total"), int) else None


def discard_partial(dest: Path) -> None:
    dest.unlink(missing_ok=True)
    _meta_path(dest).unlink(missing_ok=True)


_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+)")


def _chunks(resp: requests.Response) -> Iterator[bytes]:
    """The body as it arrives. ``read1`` hands over every byte received before a connection breaks
    (``iter_content`` drops the last, partly filled chunk), and those bytes are what a resume starts from."""
    read1 = getattr(resp.raw, "read1", None)
    if read1 is None:  # urllib3 < 2.3
        yield from resp.iter_content(chunk_size=1 << 16)
        return
    while chunk := read1(1 << 16, decode_content=True):
        yield chunk


def _download_once(session: requests.Session, url: str, dest: Path, policy: RetryPolicy) -> int:
    """One request: resumes ``dest`` with a Range request when its size and the total are known from before."""
    have = dest.stat().st_size if dest.is_file() else 0
    meta = _read_meta(dest) if have else None
    # identity: Content-Length and Range count the bytes on the wire, which must be the bytes on disk.
    headers = {"Accept-Encoding": "identity"}
    if meta and 0 < have < meta["total"]:
        headers["Range"] = f"bytes={have}-"
        if meta.get("validator"):  # a changed file is answered 200 (whole) instead of spliced onto old bytes
            headers["If-Range"] = meta["validator"]
    else:
        have = 0
    try:
        with session.get(url, stream=True, timeout=policy.timeout, headers=headers) as resp:
            status = resp.status_code
            if status == 429 or status >= 500:
                raise _Retry(f"HTTP {status}", retry_after(resp.headers, time.time()) if status == 429 else None)
            if status == 206 and have:
                m = _CONTENT_RANGE.fullmatch(resp.headers.get("Content-Range", "").strip())
                if not m or int(m.group(1)) != have or int(m.group(3)) != meta["total"]:  # type: ignore[index]
                    resp.close()
                    discard_partial(dest)  # not the piece asked for: start over
                    return _download_once(session, url, dest, policy)
                expected, size, mode = int(m.group(3)), have, "ab"
            elif status == 416 and have:
                resp.close()
                discard_partial(dest)
                return _download_once(session, url, dest, policy)
            elif status == 200:
                expected, size, mode = int(resp.headers.get("Content-Length") or 0), 0, "wb"
                if resp.headers.get("Content-Encoding", "identity").lower() != "identity":
                    expected = 0  # identity refused: Content-Length counts compressed bytes; no check, no resume
                etag = resp.headers.get("ETag") or ""
                validator = etag if etag and not etag.startswith("W/") else resp.headers.get("Last-Modified")
                _meta_path(dest).unlink(missing_ok=True)
                if expected:
                    atomic_write_text(_meta_path(dest), json.dumps({"total": expected, "validator": validator}))
            else:
                raise DownloadError(f"HTTP {status}")  # 403, 404: asking again will not help
            try:
                with open(dest, mode) as fh:
                    for chunk in _chunks(resp):
                        fh.write(chunk)
                        size += len(chunk)
                    fh.flush()
                    os.fsync(fh.fileno())
            except (requests.RequestException, urllib3.exceptions.HTTPError):
                raise
            except OSError as exc:  # disk full, permissions: every later file would fail the same way
                raise ScrapeError(f"cannot write {dest}: {exc.strerror or exc}") from None
    except (requests.RequestException, urllib3.exceptions.HTTPError) as exc:
        raise _Retry(_reason(exc, policy.timeout)) from None
    if expected and size != expected:
        if size > expected:
            discard_partial(dest)
        raise _Retry(f"connection broken mid-transfer ({size} of {expected} bytes)")
    if size == 0:
        raise DownloadError("empty answer")
    return size


def download(session: requests.Session, url: str, dest: Path, policy: RetryPolicy,
             sleep: Callable[[float], None] = time.sleep) -> int:
    """Stream ``url`` into ``dest`` (a temporary name), retrying as the API client does; returns the bytes.

    A transfer that breaks or ends short of its Content-Length keeps what arrived in ``dest`` (with the
    total and the server's ETag/Last-Modified beside it in ``dest.json``); the next try, in this run or
    the next one, asks for the rest with ``Range: bytes=<size>-`` (and ``If-Range``) and appends a 206
    answer; a server that answers 200 instead sends the whole file again, which replaces the partial.
    A file that cannot be had (404, empty) leaves nothing at ``dest``.
    """
    attempt = 0
    while True:
        try:
            size = _download_once(session, url, dest, policy)
            _meta_path(dest).unlink(missing_ok=True)
            return size
        except _Retry as exc:  # the partial stays for the next try
            if attempt >= policy.retries:
                raise DownloadError(f"{exc} (after {attempt + 1} tries; the part that arrived is kept and "
                                    "resumed next time)") from None
            sleep(min(exc.wait, policy.max_wait) if exc.wait is not None else policy.delay(attempt))
            attempt += 1
        except (KeyboardInterrupt, ScrapeError):
            raise  # interrupted, or the disk: what arrived is resumed by the next run
        except BaseException:
            discard_partial(dest)
            raise


# ------------------------------------------------------------------------------------------- the table


def spreadsheet_safe(value: str) -> str:
    """A cell a spreadsheet will not run as a formula (CSV injection): text starting with = + - @ (or a tab
    or carriage return) gets a leading single quote, which Excel and LibreOffice show as text."""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


class SourcesTable:
    """sources.csv: one row per clip in the folder, with where it came from and whom to credit."""

    def __init__(self, path: Path, rows: list[dict[str, str]] | None = None) -> None:
        self.path = path
        self.rows: list[dict[str, str]] = rows or []

    @classmethod
    def load(cls, path: Path) -> SourcesTable:
        if not path.is_file():
            return cls(path)
        try:
            with open(path, newline="", encoding="utf-8") as fh:
                rows = [{c: (row.get(c) or "") for c in COLUMNS} for row in csv.DictReader(fh)]
        except (OSError, csv.Error, UnicodeDecodeError) as exc:
            raise ScrapeError(f"cannot read {path}: {exc}") from None
        return cls(path, [r for r in rows if r["file"]])

    def save(self) -> None:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows({k: spreadsheet_safe(v) if k in TEXT_COLUMNS else v for k, v in row.items()}
                         for row in self.rows)
        atomic_write_text(self.path, buf.getvalue())

    def drop_missing(self, folder: Path) -> int:
        """Forget rows whose file is not there (a run stopped between the row and the rename)."""
        kept = [r for r in self.rows if (folder / r["file"]).is_file()]
        dropped = len(self.rows) - len(kept)
        self.rows = kept
        return dropped

    def keys(self) -> set[tuple[str, str]]:
        return {(r["provider"], r["id"]) for r in self.rows}

    def sources_of(self, label: str) -> int:
        return len({(r["provider"], r["id"]) for r in self.rows if r["label"].lower() == label.lower()})


def next_number(folder: Path, label: str, table: SourcesTable) -> int:
    """1 + the highest NNNN among <label>_NNNN.* files in ``folder`` and in the table (any case)."""
    pattern = re.compile(rf"^{re.escape(label)}_(\d+)\.[A-Za-z0-9]+$", re.IGNORECASE)
    names = [p.name for p in folder.iterdir() if p.is_file()] if folder.is_dir() else []
    names += [r["file"] for r in table.rows]
    numbers = [int(m.group(1)) for m in map(pattern.match, names) if m]
    return max(numbers, default=0) + 1


_RESUMABLE = re.compile(rf"^\..+\.[0-9a-f]{{8}}{re.escape(PART)}(\.json)?$")


def partial_path(out: Path, stem: str, url: str) -> Path:
    """Where a download goes until complete: hidden, named by the video and a hash of its file URL (so a
    partial is only ever resumed from the very file it came from)."""
    return out / f".{stem}.{hashlib.sha256(url.encode()).hexdigest()[:8]}{PART}"


def remove_partials(folder: Path) -> int:
    """Remove what an interrupted run left half-written; partial downloads stay, to be resumed."""
    count = 0
    for sub in (folder, folder / ORIGINALS):
        if sub.is_dir():
            for path in sub.glob(f".*{PART}*"):
                if path.is_file() and not (sub == folder and _RESUMABLE.match(path.name)):
                    path.unlink(missing_ok=True)
                    count += 1
    return count


# ----------------------------------------------------------------------------------------- the run


@dataclass
class ScrapeOptions:
    out: Path = Path("data/raw/scraped")
    queries: dict[str, list[str]] = field(default_factory=lambda: {k: list(v) for k, v in DEFAULT_QUERIES.items()})
    labels: list[str] = field(default_factory=list)  # empty: every label of queries
    limit: int = 10  # videos per label in the folder, earlier runs included
    min_duration: float = 3.0
    max_duration: float = 30.0
    resolution: int = 720  # short side of the rendition to pick
    per_page: int = 40
    max_pages: int = 5  # per query and provider
    trim: bool = False
    piece_min: float = 3.0
    piece_max: float = 5.0
    dry_run: bool = False
    progress: bool = True


@dataclass
class LabelReport:
    label: str
    had: int = 0
    added: int = 0  # videos (a trimmed one counts once)
    files: int = 0  # files written (pieces counted)
    failed: int = 0
    matched: int = 0  # search hits within the durations, done or not
    found: int = 0  # new ones among them
    planned: list[str] = field(default_factory=list)  # --dry-run lines


@dataclass
class ScrapeReport:
    labels: list[LabelReport]
    dropped_rows: int = 0
    api_requests: int = 0

    @property
    def failed(self) -> int:
        return sum(r.failed for r in self.labels)


def _candidates(opts: ScrapeOptions, label: str, providers: list[Provider], client: ApiClient,
                seen: set[tuple[str, str]], rep: LabelReport) -> Iterator[tuple[Video, str]]:
    """New videos for ``label``: its queries x providers x pages, filtered, each (provider, id) once."""
    for query in opts.queries[label]:
        for provider in providers:
            page: int | None = 1
            pages = 0
            while page is not None and pages < opts.max_pages:
                result = provider.search(client, query, page, opts.per_page)
                pages += 1
                for video in result.videos:
                    if not opts.min_duration <= video.duration <= opts.max_duration:
                        continue
                    if pick_rendition(video.renditions, opts.resolution) is None:
                        continue
                    rep.matched += 1
                    if video.key in seen:
                        continue
                    seen.add(video.key)
                    yield video, query
                page = result.next_page


def _row(video: Video, label: str, query: str, file: str, duration: float, width: int, height: int,
         size: int, rendition: Rendition, parent: str = "", start: str = "", end: str = "") -> dict[str, str]:
    """``rendition`` is what the API offered; width, height and duration are what the file really holds."""
    return {"file": file, "label": label, "provider": video.provider, "id": video.id, "page_url": video.page_url,
            "author": video.author, "author_url": video.author_url, "licence": video.licence,
            "licence_url": video.licence_url, "query": query, "duration": f"{duration:.2f}", "width": str(width),
            "height": str(height), "bytes": str(size),
            "rendition": f"{rendition.quality} {rendition.width}x{rendition.height}".strip(),
            "parent": parent, "start": start, "end": end,
            "downloaded_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}


class _Fetcher:
    """Download one chosen video (and cut it with --trim), writing rows before the renames."""

    def __init__(self, opts: ScrapeOptions, table: SourcesTable, session: requests.Session,
                 policy: RetryPolicy) -> None:
        self.opts, self.table, self.session, self.policy = opts, table, session, policy

    def __call__(self, video: Video, label: str, query: str, number: Callable[[], int]) -> int:
        out = self.opts.out
        rendition = pick_rendition(video.renditions, self.opts.resolution)
        assert rendition is not None
        stem = f"{video.provider}_{video.id}"
        parent = out / ORIGINALS / f"{stem}.mp4"
        if self.opts.trim and parent.is_file():
            path, size = parent, parent.stat().st_size  # cut before, stopped before its rows: cut again
        else:
            path = partial_path(out, stem, rendition.url)
            for stale in out.glob(f".{stem}.*{PART}*"):  # a partial of another rendition: never spliced
                if stale.is_file() and not stale.name.startswith(path.name):
                    stale.unlink(missing_ok=True)
            size = download(self.session, rendition.url, path, self.policy)
        info = probe(path)
        if info is None:
            discard_partial(path)
            raise DownloadError("not a video FFmpeg can decode")
        if not self.opts.trim or info.duration <= self.opts.piece_max:
            name = f"{label}_{number():04d}.mp4"
            self.table.rows.append(_row(video, label, query, name, info.duration, info.width, info.height, size,
                                        rendition))
            self.table.save()
            os.replace(path, out / name)
            return 1
        if path != parent:
            parent.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, parent)
        return self._pieces(video, label, query, parent, info, rendition, number)

    def _pieces(self, video: Video, label: str, query: str, parent: Path, info: VideoInfo, rendition: Rendition,
                number: Callable[[], int]) -> int:
        out = self.opts.out
        plan = plan_pieces(info.frames, info.fps, self.opts.piece_min, self.opts.piece_max)
        min_frames = max(1, round(self.opts.piece_min * info.fps - 1e-6))
        temps = [out / f".{video.provider}_{video.id}-{i}{PART}.mp4" for i in range(len(plan))]
        try:
            done = cut(parent, plan, temps, min_frames=min_frames)
        except OSError as exc:
            for tmp in temps:
                tmp.unlink(missing_ok=True)
            raise DownloadError(f"cannot cut {parent.name}: {exc}") from None
        moves = []
        for tmp, (start, end) in zip(temps, done):
            if end <= start:
                continue
            name = f"{label}_{number():04d}.mp4"
            rel_parent = f"{ORIGINALS}/{parent.name}"
            self.table.rows.append(_row(video, label, query, name, (end - start) / info.fps, info.width,
                                        info.height, tmp.stat().st_size, rendition, rel_parent,
                                        f"{start / info.fps:.2f}", f"{end / info.fps:.2f}"))
            moves.append((tmp, out / name))
        if not moves:
            raise DownloadError(f"{parent.name} gave no piece of {self.opts.piece_min:g} s or more")
        self.table.save()
        for tmp, final in moves:
            os.replace(tmp, final)
        return len(moves)


class _Numbers:
    """Hands out the next file number of a label, one at a time."""

    def __init__(self, first: int) -> None:
        self.next = first

    def __call__(self) -> int:
        self.next += 1
        return self.next - 1


def scrape(opts: ScrapeOptions, providers: list[Provider], client: ApiClient | None = None) -> ScrapeReport:
    """Fill ``opts.out`` up to ``opts.limit`` videos per label (or, with dry_run, say what that would take)."""
    from tqdm import tqdm

    if not providers:
        raise ScrapeError("no provider to search")
    labels = opts.labels or list(opts.queries)
    out = opts.out
    if out.exists() and not out.is_dir():
        raise ScrapeError(f"--out {out} is a file, not a folder")
    client = client or ApiClient(cache_dir=out / CACHE / "search", write_cache=not opts.dry_run)
    table = SourcesTable.load(out / SOURCES)
    report = ScrapeReport(labels=[])
    if not opts.dry_run:
        out.mkdir(parents=True, exist_ok=True)
        remove_partials(out)
        report.dropped_rows = table.drop_missing(out)
        if report.dropped_rows:
            table.save()
    elif table.rows:
        table.drop_missing(out)
    seen = table.keys()
    fetch = _Fetcher(opts, table, client.session, client.policy)
    for label in labels:
        rep = LabelReport(label, had=table.sources_of(label))
        report.labels.append(rep)
        need = opts.limit - rep.had
        if need <= 0:
            continue
        number = _Numbers(next_number(out, label, table))
        bar = tqdm(total=need, desc=label, unit="clip", disable=not opts.progress or opts.dry_run, leave=True)
        try:
            for video, query in _candidates(opts, label, providers, client, seen, rep):
                rep.found += 1
                if opts.dry_run:
                    r = pick_rendition(video.renditions, opts.resolution)
                    assert r is not None
                    cut_note = " (cut into pieces)" if opts.trim and video.duration > opts.piece_max else ""
                    rep.planned.append(f"{label}_{number():04d}.mp4  {video.provider} {video.id}  "
                                       f"{video.duration:g} s  {r.width}x{r.height}{cut_note}  {video.page_url}")
                    rep.added += 1
                else:
                    try:
                        rep.files += fetch(video, label, query, number)
                        rep.added += 1
                        bar.update(1)
                    except DownloadError as exc:
                        rep.failed += 1
                        log.warning(f"{label}: {video.provider} {video.id} not downloaded: {exc}")
                if rep.added >= need:
                    break
        finally:
            bar.close()
    report.api_requests = client.requests
    if not any(r.matched for r in report.labels) and any(r.had < opts.limit for r in report.labels):
        queries = "; ".join(f"{lab}: {', '.join(opts.queries[lab])}" for lab in labels)
        raise NoResultsError(f"no results from {', '.join(p.title for p in providers)} between "
                             f"{opts.min_duration:g} and {opts.max_duration:g} s ({queries}); try other "
                             "--queries or a wider --min-duration/--max-duration")
    return report
