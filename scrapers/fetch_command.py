"""`cli.py fetch`: argument parsing and output only (the work is in scrapers.fetch and scrapers.archive)."""

from __future__ import annotations

import argparse
import re
import textwrap
from pathlib import Path

from pipeline.commands import Subcommands, add_command
from pipeline.console import fail
from scrapers.archive import DEFAULT_MAX_BYTES, DEFAULT_MAX_RATIO, human_bytes

ENV_VAR = "DATASET_DOWNLOAD_ID"  # scrapers.fetch.ENV_VAR; not imported so that `cli.py --help` stays light
_UNITS = {"": 1, "B": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


def parse_size(text: str) -> int:
    """'20G', '500M', '1.5GiB' or plain bytes -> bytes (binary units: what disks and `du -h` show)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:I?B)?\s*", text.upper())
    if not m or float(m.group(1)) <= 0:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (examples: 20G, 500M, 1048576)")
    return int(float(m.group(1)) * _UNITS[m.group(2)])


def add_fetch(sub: Subcommands) -> None:
    p = add_command(
        sub, "fetch", func=cmd_fetch, width=30, show_defaults=False,
        help="download the zipped clip dataset (Google Drive id or https URL) and unpack it safely",
        description=textwrap.fill(
            "Download a zip archive into --out and extract it to <out>/<archive name>/. The source is --id "
            "or --url, else DATASET_DOWNLOAD_ID from the environment or from .env (a Drive file id or an "
            "https URL). An interrupted download resumes on the next run; the archive gets its final name "
            "only when complete and checked (--sha256). Extraction refuses absolute paths, '..', symlinks, "
            "encrypted entries and archives over --max-size or --max-ratio, writes into a temporary folder "
            "and renames it into place when done. A rerun with the same source finds everything in place "
            "and does nothing. An archive of the same name from another source is never reused or "
            "overwritten: fetch stops and says so.", 78),
        epilog=(
            "examples:\n"
            "  python cli.py fetch                                 (DATASET_DOWNLOAD_ID from .env)\n"
            "  python cli.py fetch --id 1AbC...xyz --sha256 <64 hex digits>\n"
            "  python cli.py fetch --url https://example.org/clips.zip --max-size 50G\n"
            "then: python cli.py prepare --source data/raw/<archive name>"),
    )
    src = p.add_mutually_exclusive_group()
    src.add_argument("--id", dest="file_id", default=None, metavar="ID",
                     help=f"Google Drive file id (default: {ENV_VAR} from the environment or --env-file)")
    src.add_argument("--url", default=None,
                     help="https URL of the zip (a Drive share link works too; plain http only for localhost)")
    p.add_argument("--env-file", type=Path, default=Path(".env"), metavar="FILE",
                   help=f"file to read {ENV_VAR} from (default: %(default)s)")
    p.add_argument("--out", type=Path, default=Path("data/raw"), metavar="DIR",
                   help="folder for the archive (default: %(default)s)")
    p.add_argument("--extract-to", type=Path, default=None, metavar="DIR",
                   help="folder to extract to (default: <out>/<archive name without .zip>)")
    p.add_argument("--no-extract", action="store_true", help="only download and check the archive")
    p.add_argument("--sha256", default=None, metavar="HEX", help="expected SHA-256 of the archive")
    p.add_argument("--max-size", type=parse_size, default=DEFAULT_MAX_BYTES, metavar="SIZE",
                   help=f"refuse an archive that unpacks to more than this: 500M, 50G, ... "
                   f"(default: {human_bytes(DEFAULT_MAX_BYTES)})")
    p.add_argument("--max-ratio", type=float, default=DEFAULT_MAX_RATIO, metavar="N",
                   help="refuse an archive, or an entry over 1 MiB, compressed more than N:1 (zip bombs; "
                   "default: %(default).0f)")
    p.add_argument("--retries", type=int, default=3, metavar="N",
                   help="extra attempts after a dropped connection, each resuming (default: %(default)s)")
    p.add_argument("--force", action="store_true",
                   help="download again and replace the extracted folder, even after a complete run (only a "
                   "folder this command extracted for the same source; never --out or a folder holding it)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def cmd_fetch(args: argparse.Namespace) -> int:
    from scrapers.archive import Limits
    from scrapers.fetch import FetchError, FetchOptions, check_sha256, fetch, resolve_source

    if args.retries < 0:
        return fail("--retries must be >= 0", 2)
    try:
        limits = Limits(max_bytes=args.max_size, max_ratio=args.max_ratio)
    except ValueError as exc:
        return fail(str(exc), 2)
    try:
        source = resolve_source(args.file_id, args.url, args.env_file)
        opts = FetchOptions(source=source, out=args.out, extract=not args.no_extract, extract_to=args.extract_to,
                            sha256=check_sha256(args.sha256), limits=limits, force=args.force,
                            retries=args.retries, quiet=args.quiet)
        result = fetch(opts)
    except FetchError as exc:
        return fail(str(exc), exc.exit_code)
    except OSError as exc:  # the output folder cannot be written
        return fail(f"cannot write {exc.filename or args.out}: {exc.strerror or exc}")
    if result.nothing_to_do:
        what = f"{result.archive}" if result.archive.is_file() else f"{result.archive} (since deleted)"
        where = f", extracted in {result.dest}" if result.dest else ""
        print(f"nothing to do: already fetched {what}{where}; --force fetches it again")
        return 0
    print(f"{'downloaded' if result.downloaded else 'have'} {result.archive} "
          f"({human_bytes(result.archive.stat().st_size)}, sha256 {result.sha256})")
    if result.extracted:
        x = result.extracted
        junk = f"; left out {x.skipped_junk} macOS/Windows junk files" if x.skipped_junk else ""
        print(f"extracted {x.files} file{'s' if x.files != 1 else ''} ({human_bytes(x.bytes)}) to {x.dest}{junk}")
    if result.dest:
        print(f"next: python cli.py prepare --source {_clip_root(result.dest)}")
    return 0


def _clip_root(dest: Path) -> Path:
    """The folder to give prepare: an archive that wraps everything in one top folder gets that folder."""
    children = [c for c in dest.iterdir() if not c.name.startswith(".")] if dest.is_dir() else []
    return children[0] if len(children) == 1 and children[0].is_dir() else dest
