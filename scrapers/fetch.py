"""`cli.py fetch`: download a zipped clip dataset (Google Drive id or https URL) and unpack it safely.

Steps, each safe to interrupt and rerun:

1. Source: ``--id`` / ``--url``, else ``DATASET_DOWNLOAD_ID`` from the environment or ``.env``.
2. Download with gdown into ``<out>/<name>.<key>.download``, where ``<key>`` is a short hash of
   the source (gdown itself writes ``...<random>.part`` and renames when the body is complete).
   An interrupted download leaves only the ``.part`` file; the next run *with the same source*
   resumes it with an HTTP Range request (gdown does this for any server that answers 206, Drive
   or not). A partial of another source never matches the name, so it is never spliced onto this
   one. A server that ignores Range makes gdown refuse to splice; then the partial is dropped and
   the file downloaded again from the start.
3. Check the SHA-256 (``--sha256``) and that the file is a zip, then rename it to ``<out>/<name>``:
   the final name only ever holds a complete, checked archive. A file that fails a check (or
   turns out corrupt while extracting) is kept as ``<name>.rejected`` for inspection, never under
   the final name, so the next run downloads again.
4. Extract with :mod:`scrapers.archive` (all checks first, temporary folder, rename into place).
   The target may not be ``--out`` or hold it (nor the archive), and an existing folder is only
   ever replaced (``--force``) when this source's record says this command extracted it there.
5. Record what was done in ``<out>/.fetch-<key>.json``, so a rerun with the same source finds
   the archive and its extraction and does nothing, without touching the network.

An archive already under the final name is used only when this source's record names it with the
same SHA-256, or when it matches ``--sha256``. Two sources whose files have the same name (the
dataset moved to a new link, still ``clips.zip``) are not confused: the second one stops with an
error that says whose file is there and what to do (move it away, or use another ``--out``);
nothing is overwritten. Messages and the record never hold a URL's query string or user:password.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlparse, urlsplit, urlunsplit

from scrapers.archive import (
    PARTIAL_MARK,
    ArchiveError,
    CorruptArchiveError,
    ExtractResult,
    Limits,
    current_umask,
    extract_zip,
    matches_archive,
)
from stacks.atomic import atomic_write_text

log = logging.getLogger(__name__)

ENV_VAR = "DATASET_DOWNLOAD_ID"
DEFAULT_OUT = Path("data/raw")
DEFAULT_RETRIES = 3
TIMEOUT = (20.0, 60.0)  # connect, and seconds of silence mid-download before a retry
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
HOW_TO_SET = (f"set {ENV_VAR}=<Google Drive file id or https URL> in .env (copy .env.example), "
              "or pass --id ID or --url URL")
_DRIVE_ID = re.compile(r"^[-\w]{10,}$")
_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")


class FetchError(Exception):
    """A download or check failed; the message is one line for the user."""

    exit_code = 1


class ConfigError(FetchError):
    """The command was asked for something it cannot do (no source, bad URL or checksum)."""

    exit_code = 2


@dataclass(frozen=True)
class Source:
    """Where the archive comes from: a Drive file id or a URL, and who said so (for messages)."""

    kind: str  # "id" or "url"
    value: str
    origin: str

    @property
    def url(self) -> str:
        return f"https://drive.google.com/uc?id={self.value}" if self.kind == "id" else self.value

    @property
    def is_drive(self) -> bool:
        from gdown.parse_url import parse_url

        return self.kind == "id" or parse_url(self.value)[0] is not None

    @property
    def key(self) -> str:
        return hashlib.sha256(f"{self.kind}:{self.value}".encode()).hexdigest()[:16]

    @property
    def public(self) -> str:
        """The value without secrets: a URL loses its user:password@ and its query string."""
        return self.value if self.kind == "id" else redact_url(self.value)

    def __str__(self) -> str:
        return f"{'Drive id' if self.kind == 'id' else 'URL'} {self.public} (from {self.origin})"


def redact_url(url: str) -> str:
    """``url`` for messages and records: no user:password@, no query string or fragment (tokens live there)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "<unreadable URL>"
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{port}" if port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", "")) + ("?..." if parts.query else "")


_USERINFO = re.compile(r"(?<=://)[^/\s@]+@")
_QUERY = re.compile(r"\?[^\s'\"<>)\]]+")


def scrub(text: str) -> str:
    """Remove user:password@ and query strings from text that came from a library (it may quote the URL)."""
    return _QUERY.sub("?...", _USERINFO.sub("", text))


def check_url(url: str) -> str:
    """https only: a dataset fetched over plain http could be swapped on the way. Loopback is exempt (tests)."""
    parsed = urlparse(url)
    if parsed.scheme == "https" and parsed.hostname:
        pass
    elif parsed.scheme == "http" and parsed.hostname in LOOPBACK:
        pass
    else:
        raise ConfigError(f"not an https URL: {redact_url(url)!r} (plain http is accepted only for localhost)")
    if parsed.hostname == "drive.google.com" and "/folders/" in parsed.path:
        raise ConfigError("Google Drive folder links are not supported: share the zip file itself and use its link")
    return url


def check_id(file_id: str) -> str:
    if not _DRIVE_ID.match(file_id):
        raise ConfigError(f"{file_id!r} does not look like a Google Drive file id (10 or more letters, digits, "
                          "- and _: the part after /d/ in the file's share link)")
    return file_id


def check_sha256(text: str | None) -> str | None:
    if text is None:
        return None
    if not _HEX64.match(text.strip()):
        raise ConfigError("--sha256 needs the 64 hex digits of a SHA-256 checksum")
    return text.strip().lower()


def resolve_source(file_id: str | None = None, url: str | None = None, env_file: Path = Path(".env")) -> Source:
    """The source to fetch: --id, --url, then DATASET_DOWNLOAD_ID from the environment, then from ``env_file``.

    The environment wins over the file, as with python-dotenv's ``load_dotenv``. The variable may
    hold a file id or a full URL (a Drive share link works: gdown extracts the id).
    """
    if file_id:
        return Source("id", check_id(file_id.strip()), "--id")
    if url:
        return Source("url", check_url(url.strip()), "--url")
    value, origin = os.environ.get(ENV_VAR, "").strip(), f"{ENV_VAR} in the environment"
    if not value and Path(env_file).is_file():
        from dotenv import dotenv_values

        value, origin = (dotenv_values(env_file).get(ENV_VAR) or "").strip(), f"{ENV_VAR} in {env_file}"
    if not value:
        where = f"{env_file} has no {ENV_VAR}" if Path(env_file).is_file() else f"no {env_file} file"
        raise ConfigError(f"no dataset to fetch ({where}): {HOW_TO_SET}")
    if re.match(r"^[a-z]+://", value, re.IGNORECASE):
        return Source("url", check_url(value), origin)
    return Source("id", check_id(value), origin)


def _safe_name(name: str) -> str:
    name = re.sub(r"[^\w.+-]", "_", name).lstrip(".")
    return name or "download.zip"


def archive_name(source: Source) -> str:
    """The file name to store the archive under: Drive's name for a Drive file, else the URL's last path part.

    For Drive this costs one request (gdown's ``skip_download``), which also fails early, with
    Drive's own explanation, when the file is not shared.
    """
    if source.is_drive:
        import gdown

        try:
            info = gdown.download(url=source.url, skip_download=True, quiet=True, timeout=TIMEOUT)
        except Exception as exc:  # mapped to one line by _download_error
            raise _download_error(exc, source) from exc
        return _safe_name(info.path)
    return _safe_name(unquote(PurePosixPath(urlparse(source.value).path).name))


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _download_error(exc: BaseException, source: Source) -> FetchError:
    """Turn what gdown / requests raise into one sentence that says what to do (no secrets of the URL in it)."""
    error = _describe_download_error(exc, source)
    return FetchError(scrub(str(error)))


def _describe_download_error(exc: BaseException, source: Source) -> FetchError:
    import requests
    from gdown.exceptions import DownloadError, FileURLRetrievalError

    host = urlparse(source.url).hostname
    if isinstance(exc, DownloadError) and isinstance(exc.__cause__, (requests.ConnectionError, requests.Timeout)):
        exc = exc.__cause__  # "Download failed after N retries": the network error says more
    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        code, reason = exc.response.status_code, exc.response.reason or ""
        if code == 404:
            return FetchError(f"not found: HTTP 404 from {host} for {source}; check the id or URL")
        if code in (401, 403):
            return FetchError(f"download refused: HTTP {code} {reason} from {host} for {source}; "
                              "is the file shared publicly ('Anyone with the link'), and is the link still valid?")
        return FetchError(f"download failed: HTTP {code} {reason} from {host} for {source}")
    if isinstance(exc, FileURLRetrievalError):
        detail = str(exc).split("You may still be able")[0].replace("Failed to retrieve file url:", "")
        return FetchError(f"Google Drive did not hand out {source}: {_one_line(detail)} "
                          "(check the id, that the file is shared as 'Anyone with the link', "
                          "and try later if it was downloaded too often)")
    if isinstance(exc, (requests.ConnectionError, requests.Timeout)):
        cause = re.search(r"\[Errno -?\d+\] ([^'\")]+)", str(exc))
        return FetchError(f"cannot reach {host}: {cause.group(1) if cause else type(exc).__name__}; "
                          "check the network and run the command again (a partial download resumes)")
    if isinstance(exc, DownloadError):
        return FetchError(_one_line(str(exc).split("\n")[0]))
    if isinstance(exc, requests.RequestException):
        return FetchError(f"download failed: {_one_line(str(exc))}")
    return FetchError(f"download failed: {type(exc).__name__}: {_one_line(str(exc))}")


def partial_files(output: Path) -> list[Path]:
    """gdown's partial files for ``output``: ``<name>`` + 8 random characters + ``.part`` in the same folder."""
    if not output.parent.is_dir():
        return []
    n = len(output.name) + 8 + len(".part")
    return sorted(p for p in output.parent.iterdir()
                  if p.name.startswith(output.name) and p.name.endswith(".part") and len(p.name) == n)


def _gdown_download(source: Source, output: Path, *, quiet: bool, retries: int, final: Path) -> None:
    """gdown, always quiet (its "From:" line prints the whole URL, tokens and all): our own lines and bar instead."""
    import gdown
    from tqdm import tqdm

    bar = None
    if not quiet:
        kept = partial_files(output)
        if kept:
            print(f"Resume: {kept[0]}", file=sys.stderr)
        print(f"From: {source.public if source.kind == 'url' else source.url}", file=sys.stderr)
        print(f"To: {final.resolve()}", file=sys.stderr)
        bar = tqdm(unit="B", unit_scale=True, file=sys.stderr)

    def progress(done: int, total: int | None) -> None:
        if bar is not None:
            if total and bar.total != total:
                bar.total = total
            bar.update(done - bar.n)

    try:
        gdown.download(url=source.url, output=str(output), quiet=True, resume=True, retries=retries,
                       timeout=TIMEOUT, progress=progress)
    finally:
        if bar is not None:
            bar.close()


def download(source: Source, output: Path, *, final: Path, quiet: bool = False,
             retries: int = DEFAULT_RETRIES) -> None:
    """Download ``source`` to ``output``, resuming a partial download left by an earlier run.

    gdown resumes by sending ``Range: bytes=<size of .part>-`` (and ``If-Range``, so a changed
    remote file is not spliced onto old bytes) and refuses a 200 answer. That refusal is the one
    case gdown leaves to the caller: the partial is deleted and the download starts over.
    """
    from gdown.exceptions import DownloadError

    output.parent.mkdir(parents=True, exist_ok=True)
    try:
        try:
            _gdown_download(source, output, quiet=quiet, retries=retries, final=final)
        except DownloadError as exc:
            if "did not honor the requested byte range" not in str(exc):
                raise
            log.info(f"{urlparse(source.url).hostname} cannot resume a download (or the file changed): starting over")
            for part in partial_files(output):
                part.unlink()
            _gdown_download(source, output, quiet=quiet, retries=retries, final=final)
    except Exception as exc:
        error = _download_error(exc, source)
        kept = partial_files(output)
        if kept and ("incomplete" in str(error).lower() or "cannot reach" in str(error)):
            size = sum(p.stat().st_size for p in kept)
            error = FetchError(f"{str(error).rstrip('.')}; {size} bytes are kept in {kept[0]}, "
                               "run the same command again to resume")
        raise error from exc


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1024**2):
            digest.update(block)
    return digest.hexdigest()


def _reject(path: Path, final: Path, why: str) -> FetchError:
    """Move a downloaded file that failed a check to ``<final>.rejected`` (kept for inspection, never final)."""
    rejected = final.with_name(final.name + ".rejected")
    os.replace(path, rejected)
    return FetchError(f"{why}; the file is kept as {rejected}")


def _looks_like(path: Path) -> str:
    with open(path, "rb") as fh:
        head = fh.read(512)
    text = head.lstrip().lower()
    if text.startswith((b"<!doctype html", b"<html")):
        return "an HTML page (a login, quota or error page?)"
    return f"{path.stat().st_size} bytes starting with {head[:8]!r}"


def verify(downloaded: Path, final: Path, expected_sha256: str | None) -> str:
    """Check the checksum and the zip signature, then rename to ``final``; returns the SHA-256."""
    import zipfile

    digest = sha256_of(downloaded)
    if expected_sha256 and digest != expected_sha256:
        raise _reject(downloaded, final, f"checksum mismatch for {final.name}: expected sha256 {expected_sha256}, "
                                         f"got {digest}")
    if not zipfile.is_zipfile(downloaded):
        raise _reject(downloaded, final, f"the download is not a zip archive but {_looks_like(downloaded)}")
    os.chmod(downloaded, 0o666 & ~current_umask())  # gdown's temporary file is owner-only
    os.replace(downloaded, final)
    return digest


@dataclass
class FetchOptions:
    source: Source
    out: Path = DEFAULT_OUT
    extract: bool = True
    extract_to: Path | None = None  # default: <out>/<archive name without .zip>
    sha256: str | None = None
    limits: Limits = field(default_factory=Limits)
    force: bool = False
    retries: int = DEFAULT_RETRIES
    quiet: bool = False


@dataclass
class FetchResult:
    archive: Path
    sha256: str
    dest: Path | None
    downloaded: bool = False
    extracted: ExtractResult | None = None
    nothing_to_do: bool = False


def default_dest(archive: Path) -> Path:
    stem = archive.name[:-4] if archive.name.lower().endswith(".zip") else f"{archive.name}_files"
    return archive.with_name(stem)


def state_path(out: Path, source: Source) -> Path:
    return out / f".fetch-{source.key}.json"


def _load_state(path: Path) -> dict | None:
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) and isinstance(state.get("archive"), str) else None


def _already_done(state: dict | None, opts: FetchOptions) -> FetchResult | None:
    """The earlier run's result when it covers this request and its files are still there."""
    if state is None or opts.force:
        return None
    archive = opts.out / state["archive"]
    if opts.sha256 and opts.sha256 != state.get("sha256"):
        return None
    have_archive = archive.is_file() and archive.stat().st_size == state.get("size")
    if not opts.extract:
        return FetchResult(archive, state["sha256"], None, nothing_to_do=True) if have_archive else None
    dest = opts.extract_to or default_dest(archive)
    # The archive may have been deleted to save space: the recorded, complete extraction is what counts.
    if not _same_path(state.get("extracted_to"), dest) or not dest.is_dir() or (archive.exists() and not have_archive):
        return None
    return FetchResult(archive, state["sha256"], dest, nothing_to_do=True)


def _remove_leftovers(dest: Path) -> None:
    """Temporary folders of an extraction that was killed (SIGKILL, power cut) before its cleanup ran."""
    if dest.parent.is_dir():
        for leftover in dest.parent.glob(f".{dest.name}{PARTIAL_MARK}*"):
            shutil.rmtree(leftover, ignore_errors=True)
        for leftover in dest.parent.glob(f".{dest.name}.old-*"):
            shutil.rmtree(leftover, ignore_errors=True)


def _same_path(a: str | Path | None, b: Path) -> bool:
    return a is not None and Path(a).resolve() == b.resolve()


def _contains(folder: Path, path: Path) -> bool:
    """True when ``path`` is ``folder`` or lies inside it (after resolving links and '..')."""
    folder, path = folder.resolve(), path.resolve()
    return path == folder or folder in path.parents


def check_dest(dest: Path, out: Path, archive: Path) -> None:
    """Refuse an extraction target that is, or holds, the download folder or the archive: replacing it would
    delete them (and everything beside them)."""
    for what, path in (("the download folder --out", out), ("the archive", archive)):
        if _contains(dest, path):
            raise ConfigError(f"cannot extract to {dest}: it is or contains {what} ({path}); "
                              "pick an --extract-to folder of its own (default: <out>/<archive name>)")


def _extract(archive: Path, dest: Path, opts: FetchOptions, state: dict | None) -> ExtractResult | None:
    """Extract unless ``dest`` already holds this archive's files; never overwrite a different ``dest`` silently.

    ``--force`` replaces an existing ``dest`` only when this source's record says this command extracted
    it there: a folder of anyone else's (or of another source) is never deleted.
    """
    replace = False
    if dest.exists():
        ours = bool(state) and _same_path(state.get("extracted_to"), dest)
        if opts.force and ours:
            replace = True
        elif matches_archive(archive, dest):
            log.info(f"{dest} already holds the files of {archive.name}: not extracting again")
            return None
        elif opts.force:
            raise FetchError(f"{dest} already exists and no record says this command extracted {archive.name} "
                             "there, so --force will not replace it (it may hold other files): remove it "
                             "yourself or pick another --extract-to")
        else:
            raise FetchError(f"{dest} already exists and does not match {archive.name}: remove it, pick another "
                             "--extract-to, or pass --force to replace it (only if this command extracted it)")
    _remove_leftovers(dest)
    from tqdm import tqdm

    bars: list[tqdm] = []

    def on_total(total: int) -> None:  # the bar appears only once every entry passed the checks
        bars.append(tqdm(total=total, desc="extract", unit="B", unit_scale=True, disable=opts.quiet, file=sys.stderr))

    try:
        return extract_zip(archive, dest, opts.limits, replace=replace, on_total=on_total,
                           progress=lambda n: bars[0].update(n))
    finally:
        for bar in bars:
            bar.close()


def _owner_of(out: Path, name: str, source: Source) -> dict | None:
    """The record of another source that downloaded ``<out>/<name>``, if any."""
    for path in sorted(out.glob(".fetch-*.json")):
        if path.name == state_path(out, source).name:
            continue
        other = _load_state(path)
        if other is not None and other["archive"] == name:
            return other
    return None


def _describe(record: dict) -> str:
    src = record.get("source") or {}
    value = str(src.get("value", "?"))
    return f"Drive id {value}" if src.get("kind") == "id" else f"URL {redact_url(value)}"


def _existing_archive(archive: Path, state: dict | None, opts: FetchOptions) -> str | None:
    """The SHA-256 of an archive already under the final name when it is this source's; None: download it.

    It is this source's when this source's record names it with the same checksum, or when it matches
    --sha256. Otherwise it stops: a file of the same name from another source (or of unknown origin)
    is never taken for this one, and never overwritten without being asked.
    """
    if not archive.is_file():
        return None
    recorded = bool(state) and state["archive"] == archive.name
    other = None if recorded else _owner_of(opts.out, archive.name, opts.source)
    if other is not None:  # even with --force: that file and its folder belong to the other source's record
        raise FetchError(f"{archive} was downloaded from another source ({_describe(other)}), not from "
                         f"{opts.source}; both name their file {archive.name}: move or delete {archive} "
                         f"(and its extracted folder), or use another --out")
    if opts.force:
        archive.unlink()
        return None
    digest = sha256_of(archive)
    if opts.sha256:
        if digest != opts.sha256:
            raise FetchError(f"checksum mismatch for {archive}: expected sha256 {opts.sha256}, got {digest}; "
                             "delete it or pass --force to download it again")
    elif not (recorded and state.get("sha256") == digest):
        why = "it changed since this source downloaded it" if recorded else "no record says it came from this source"
        raise FetchError(f"{archive} is already there but {why} ({opts.source}): pass --sha256 {digest} "
                         "to use it as it is, or --force to download it again")
    log.info(f"{archive} is already downloaded: not downloading it again")
    return digest


def fetch(opts: FetchOptions) -> FetchResult:
    """Download (or resume), verify and extract; does nothing when an earlier run already did it all."""
    out = opts.out
    state_file = state_path(out, opts.source)
    state = _load_state(state_file)
    done = _already_done(state, opts)
    if done is not None:
        return done
    name = state["archive"] if state and not opts.force else archive_name(opts.source)
    archive = out / name
    if opts.extract:
        check_dest(opts.extract_to or default_dest(archive), out, archive)
    # Keyed by the source: a partial download of another source with the same file name is never resumed.
    staging = archive.with_name(f"{archive.name}.{opts.source.key}.download")
    if opts.force:
        for stale in [staging, *partial_files(staging)]:
            stale.unlink(missing_ok=True)
    digest = _existing_archive(archive, state, opts)
    downloaded = digest is None
    if digest is None:
        download(opts.source, staging, final=archive, quiet=opts.quiet, retries=opts.retries)
        digest = verify(staging, archive, opts.sha256)
    result = FetchResult(archive, digest, None, downloaded=downloaded)
    record = {"source": {"kind": opts.source.kind, "value": opts.source.public}, "archive": archive.name,
              "size": archive.stat().st_size, "sha256": digest, "extracted_to": None}
    if state and state["archive"] == archive.name and state.get("extracted_to"):
        # What this source extracted before stays its own (the one folder --force may replace).
        record.update({k: state[k] for k in ("extracted_to", "files", "bytes") if k in state})
    if record != state:  # the archive is this source's from now on, even if extracting it fails below
        atomic_write_text(state_file, json.dumps(record, indent=1) + "\n")
    if opts.extract:
        result.dest = opts.extract_to or default_dest(archive)
        try:
            result.extracted = _extract(archive, result.dest, opts, state)
        except CorruptArchiveError as exc:
            raise _reject(archive, archive, f"refused to extract {archive.name}: {exc}; the next run downloads "
                                            "it again") from exc
        except ArchiveError as exc:
            raise FetchError(f"refused to extract {archive.name}: {exc}") from exc
        record["extracted_to"] = str(result.dest)
        if result.extracted:
            record.update(files=result.extracted.files, bytes=result.extracted.bytes)
        atomic_write_text(state_file, json.dumps(record, indent=1) + "\n")
    return result
