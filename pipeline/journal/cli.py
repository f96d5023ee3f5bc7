"""`cli.py journal`: parse the options (generated from ``JournalSettings``), start the server, print where it is."""

from __future__ import annotations

import argparse
import sys

from pipeline.commands import Subcommands, add_command
from pipeline.console import fail
from pipeline.journal.settings import JournalSettings
from pipeline.options import add_options, settings_from


def add_journal(sub: Subcommands) -> None:
    p = add_command(
        sub, "journal", func=cmd_journal,
        help="the video journal: a local web app that records a clip, says its emotion and keeps it",
        description=(
            "Start the journal on http://127.0.0.1:8000: record a 4 s clip of your face in the browser (or upload "
            "one), see its emotion, keep it as a dated entry with a note, and see your mood over days and weeks. "
            "Entries stay in --data-dir (SQLite + the clips); nothing leaves this machine."))
    add_options(p, JournalSettings)


def cmd_journal(args: argparse.Namespace) -> int:
    from pipeline.journal.server import JournalError, Started, serve

    try:
        settings = settings_from(JournalSettings, args)
    except ValueError as exc:
        return fail(str(exc), 2)

    def announce(started: Started) -> None:
        if started.recovery.incoming or started.recovery.stray_clips:
            print(f"cleaned what an interrupted run left: {started.recovery.incoming} unfinished upload(s), "
                  f"{started.recovery.stray_clips} clip(s) without an entry")
        for entry in started.recovery.missing_clips or []:
            print(f"warning: the clip of entry {entry} is missing from {settings.data_dir / 'clips'}", file=sys.stderr)
        if started.token is not None and not settings.loopback:
            print(f"warning: listening on {settings.host}, reachable from other machines; every request needs the "
                  "access token", file=sys.stderr)
        address = started.url + (f"?token={started.token}" if started.token else "")
        print(f"journal: {address}  (data in {settings.data_dir}/; Ctrl-C to stop)", flush=True)

    try:
        serve(settings, announce)
    except JournalError as exc:
        return fail(str(exc))
    except KeyboardInterrupt:  # uvicorn has finished the requests in flight, then passes Ctrl-C/SIGTERM on
        pass
    print("journal stopped; every saved entry is on disk")
    return 0
