"""`cli.py scrape`: argument parsing and output only (the work is in scrapers.scrape)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from pipeline.commands import Subcommands, add_command
from pipeline.console import fail

EPILOG = """\
keys: PEXELS_API_KEY (https://www.pexels.com/api/) and PIXABAY_API_KEY (https://pixabay.com/api/docs/),
  read from .env (copy .env.example) or the environment; without --providers, every provider with a key
  is searched.
terms: both sites ask for credit (author and a link back); sources.csv keeps provider, id, page URL,
  author, licence and query for every file. Neither licence allows redistributing the clips as they
  are, so share sources.csv, not the files. Pexels' API terms forbid building ML datasets from the API
  without their written permission: ask them first. Pixabay's API is for human-driven requests and
  forbids systematic mass downloads: keep --limit small.
queries file (JSON or TOML): {"Happy": ["happy face close up", "smiling woman portrait"], "Sad": "sad face"}
  or a [queries] table in TOML; it replaces the default labels and queries.
examples:
  python cli.py scrape --dry-run --limit 3
  python cli.py scrape --labels Happy,Sad --limit 20 --resolution 720 --trim
  python cli.py prepare --source data/raw/scraped
"""


def _providers_help() -> str:
    from scrapers.providers import PROVIDERS

    return f"comma-separated, of: {', '.join(PROVIDERS)} (default: every one whose key is set)"


def add_scrape(sub: Subcommands) -> None:
    p = add_command(
        sub, "scrape", func=cmd_scrape, epilog=EPILOG, width=32,
        help="download labelled face clips from stock-footage APIs (Pexels, Pixabay)",
        description=(
            "Search the providers' official APIs with each label's queries and download up to --limit videos "
            "per label into --out as <Label>_<NNNN>.mp4 (numbering continues after the files already there), "
            "so `prepare --source <out>` reads them directly. sources.csv keeps the provenance and the "
            "attribution of every file. Reruns resume: what is listed in sources.csv and on disk is never "
            "downloaded again, and --limit counts the videos already there. Rate limits are respected "
            "(429 Retry-After, X-Ratelimit-Remaining/Reset); search answers are cached for 24 hours."))
    p.add_argument("--labels", default="", help="comma-separated labels to fetch (default: every label with queries)")
    p.add_argument("--limit", type=int, default=10,
                   help="videos per label that scrape has put in --out, earlier runs included (listed in "
                        "sources.csv; a trimmed video counts once)")
    p.add_argument("--queries", type=Path, default=None,
                   help="JSON or TOML file: label -> query or list of queries (default: '<emotion> face close up' "
                        "for Anger, Happy, Shock, Neutral, Sad)")
    p.add_argument("--providers", default="", help=_providers_help())
    p.add_argument("--out", type=Path, default=Path("data/raw/scraped"), help="folder to fill")
    p.add_argument("--min-duration", type=float, default=3.0, help="shorter videos are skipped (seconds)")
    p.add_argument("--max-duration", type=float, default=30.0, help="longer videos are skipped (seconds)")
    p.add_argument("--resolution", type=int, default=720,
                   help="download the rendition whose short side is closest to this (pixels)")
    p.add_argument("--trim", action="store_true",
                   help="cut videos longer than 5 s into 3-5 s pieces (decoded as prepare does, mp4v, no audio); the "
                        "uncut file stays in <out>/.originals/, each piece's start, end and parent go to sources.csv")
    p.add_argument("--dry-run", action="store_true", help="search and list what would be downloaded; write nothing")
    p.add_argument("--per-page", type=int, default=40, help="results asked per search request")
    p.add_argument("--max-pages", type=int, default=5, help="result pages read per query and provider")
    p.add_argument("--env-file", type=Path, default=Path(".env"), help="file with the API keys (if it exists)")
    p.add_argument("--base-url", action="append", default=[], metavar="NAME=URL",
                   help="another base URL for a provider (a proxy, a test server); repeatable")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for a server before retrying")
    p.add_argument("--retries", type=int, default=4,
                   help="extra tries after a 429, a 5xx or a broken connection (exponential backoff, capped)")
    p.add_argument("--no-cache", action="store_true", help="ask the APIs again even if an answer is under 24 h old")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def read_env(env_file: Path | None) -> dict[str, str]:
    """The .env file's values under the process environment's (a set variable wins over the file)."""
    from dotenv import dotenv_values

    values: dict[str, str] = {}
    if env_file is not None and Path(env_file).is_file():
        values.update({k: v for k, v in dotenv_values(env_file).items() if v})
    values.update({k: v for k, v in os.environ.items() if v})
    return values


def _base_urls(items: list[str]) -> dict[str, str]:
    from scrapers.providers import PROVIDERS, ScrapeError

    urls = {}
    for item in items:
        name, sep, url = item.partition("=")
        if not sep or not url.strip() or name.strip() not in PROVIDERS:
            raise ScrapeError(f"--base-url {item!r}: expected NAME=URL with NAME one of {', '.join(PROVIDERS)}")
        urls[name.strip()] = url.strip()
    return urls


def _providers(names: str, env: dict[str, str], base_urls: dict[str, str]) -> list:
    from scrapers.providers import PROVIDERS, MissingKeyError, make_provider

    wanted = [n.strip().lower() for n in names.split(",") if n.strip()]
    if wanted:
        return [make_provider(name, env, base_urls.get(name)) for name in dict.fromkeys(wanted)]
    chosen = [make_provider(name, env, base_urls.get(name)) for name, cls in PROVIDERS.items() if env.get(cls.key_env)]
    if not chosen:
        keys = " or ".join(f"{cls.key_env} ({cls.key_url})" for cls in PROVIDERS.values())
        raise MissingKeyError(f"no stock-footage API key is set: put {keys} in .env (copy .env.example) "
                              "or export it")
    return chosen


def _check_numbers(args: argparse.Namespace) -> str | None:
    if args.limit < 1:
        return "--limit must be at least 1"
    if args.min_duration < 0 or args.max_duration < args.min_duration:
        return "--min-duration must be >= 0 and <= --max-duration"
    if args.resolution < 1:
        return "--resolution must be a positive number of pixels"
    if args.per_page < 1 or args.max_pages < 1:
        return "--per-page and --max-pages must be at least 1"
    if args.timeout <= 0 or args.retries < 0:
        return "--timeout must be > 0 and --retries >= 0"
    return None


def cmd_scrape(args: argparse.Namespace) -> int:
    from scrapers.providers import ScrapeError
    from scrapers.scrape import CACHE, ApiClient, RetryPolicy, ScrapeOptions, load_queries, scrape, select_labels

    problem = _check_numbers(args)
    if problem:
        return fail(problem, 2)
    try:
        queries = load_queries(args.queries)
        labels = select_labels(queries, args.labels)
        providers = _providers(args.providers, read_env(args.env_file), _base_urls(args.base_url))
        opts = ScrapeOptions(out=args.out, queries=queries, labels=labels, limit=args.limit,
                             min_duration=args.min_duration, max_duration=args.max_duration,
                             resolution=args.resolution, per_page=args.per_page, max_pages=args.max_pages,
                             trim=args.trim, dry_run=args.dry_run, progress=not args.no_progress)
        policy = RetryPolicy(retries=args.retries, timeout=args.timeout)
        client = ApiClient(policy, cache_dir=None if args.no_cache else args.out / CACHE / "search",
                           write_cache=not args.dry_run)
        report = scrape(opts, providers, client)
    except ScrapeError as exc:
        return fail(str(exc))
    except OSError as exc:
        return fail(f"cannot write {exc.filename or args.out}: {exc.strerror or exc}")
    return _summary(args, report)


def _summary(args: argparse.Namespace, report) -> int:
    short_by_failure = 0
    if report.dropped_rows:
        print(f"{report.dropped_rows} row(s) of sources.csv named no file (a run stopped mid-way, or files "
              "deleted): dropped, their videos may be fetched again")
    for rep in report.labels:
        if args.dry_run:
            for line in rep.planned:
                print(line)
        total = rep.had + rep.added
        line = f"{rep.label}: {rep.had} already there"
        if rep.had < args.limit:
            verb = "would download" if args.dry_run else "downloaded"
            line += f", {verb} {rep.added}" + (f" ({rep.files} files)" if rep.files > rep.added else "")
            if rep.failed:
                line += f", {rep.failed} failed"
            if total < args.limit:
                line += f"; {total} of {args.limit}: " + (
                    "rerun to retry the failed ones" if rep.failed else
                    "no more results (add queries, raise --max-pages or widen the durations)")
                short_by_failure += bool(rep.failed)
        print(line)
    if args.dry_run:
        print(f"dry run: nothing written ({report.api_requests} API requests)")
        return 0
    print(f"clips and sources.csv (credits: author, page, licence) in {args.out}; "
          f"next: python cli.py prepare --source {args.out}")
    if short_by_failure:
        return fail(f"{report.failed} download(s) failed; rerun the same command to retry them")
    return 0
