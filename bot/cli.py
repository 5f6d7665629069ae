"""The `isiqbot` command line: chat, run, migrate, registry import."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

from sqlalchemy.engine import make_url

from bot.core import logs
from bot.core.settings import Settings, SettingsError
from bot.staff.broadcast_cli import add_broadcast_parser, cmd_broadcast
from bot.staff.cli import add_applications_parser, cmd_applications
from bot.staff.outages_cli import add_outages_parser, cmd_outages
from locales import LANGUAGES
from storage import migrate, registry
from storage.db import Database

log = logging.getLogger("isiqbot")
CHAT_LOG = "isiqbot-chat.log"
STAFF_COMMANDS = ("applications", "outages", "broadcast")  # run by staff at a terminal
# Ctrl-C in the chat is a way to leave it, as /quit and Ctrl-D are: 0. (With 130, `make demo` would
# add "make: *** [demo] Error 130"; make, which gets the Ctrl-C too, still stops on it itself.)
LEFT_WITH_CTRL_C = 0


async def open_database(settings: Settings) -> Database:
    return await migrate.open_database(settings.database.database_url)


async def cmd_migrate(settings: Settings) -> int:
    db = await open_database(settings)
    await db.dispose()
    print("database schema is up to date")
    return 0


class _ExportUnreadable(Exception):
    """Reading the export failed part way: told as such, not taken for a database error."""

    def __init__(self, error: OSError) -> None:
        super().__init__(error.strerror)
        self.error = error


class _Export:
    """The registry export, open for the import, which reads it a chunk at a time."""

    def __init__(self, file: BinaryIO) -> None:
        self.file = file

    def read(self, size: int, /) -> bytes:
        try:
            return self.file.read(size)
        except OSError as exc:
            raise _ExportUnreadable(exc) from exc


async def cmd_registry_import(settings: Settings, path: Path, max_deactivate: float | None) -> int:
    try:
        file = await asyncio.to_thread(path.open, "rb")
    except OSError as exc:
        print(f"cannot read {path}: {exc.strerror}", file=sys.stderr)
        return 2
    with file:
        return await _import_registry(settings, path, _Export(file), max_deactivate)


async def _import_registry(
    settings: Settings, path: Path, export: _Export, max_deactivate: float | None
) -> int:
    db = await open_database(settings)
    try:
        async with db.transaction() as session:
            report = await registry.import_csv(session, export, max_deactivate=max_deactivate)
    except _ExportUnreadable as exc:
        print(f"cannot read {path}: {exc.error.strerror}; nothing was imported", file=sys.stderr)
        return 2
    except registry.TooManyDeactivations as exc:
        print(f"{path}: nothing was imported: {exc.reason}.", file=sys.stderr)
        print(
            "  An export that was cut short looks like this: check the file first. If these accounts are\n"
            "  really gone, import it again with --allow-deactivate, or set another limit with\n"
            "  --max-deactivate PERCENT.",
            file=sys.stderr,
        )
        return 1
    except registry.RegistryImportError as exc:
        print(f"{path}: nothing was imported; {len(exc.errors)} problem(s):", file=sys.stderr)
        for error in exc.errors:
            print(f"  {error}", file=sys.stderr)
        return 1
    finally:
        await db.dispose()
    print(
        f"{path}: imported {report.persons} persons, {report.accounts} accounts, "
        f"{report.metering_points} metering points\n"
        f"  persons: {report.persons_added} added, {report.persons_changed} changed\n"
        f"  accounts: {report.accounts_added} added, {report.accounts_changed} changed, "
        f"{report.accounts_deactivated} deactivated\n"
        f"  metering points: {report.metering_points_added} added, {report.metering_points_changed} changed, "
        f"{report.metering_points_deactivated} deactivated"
    )
    return 0


def chat_log(database_url: str) -> Path:
    """Where `isiqbot chat` logs: beside its SQLite database (./data by default), else in ./data."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        return Path(url.database).parent / CHAT_LOG
    return Path("data") / CHAT_LOG


def cmd_chat(settings: Settings, lang: str, verbose: bool) -> int:
    """The terminal demo. Its log goes to a file, not into the conversation, unless --verbose.

    Ctrl-C ends it at once and quietly, as /quit does.
    """
    level, fmt = settings.http.log_level, settings.http.log_format
    try:
        logs.setup(level, None if verbose else chat_log(settings.database.database_url), fmt)
    except OSError:  # no file to write: only what is worth a look, where it always went
        logs.setup("WARNING", fmt=fmt)
    try:
        from bot import app  # the service's parts are imported only by the command that runs them

        return asyncio.run(app.chat(settings, lang))
    except KeyboardInterrupt:
        print(flush=True)  # the shell's prompt on a line of its own, not after the "^C"
        return LEFT_WITH_CTRL_C


def percent(text: str) -> float:
    """A share for --max-deactivate: 0 to 100, a trailing % allowed."""
    try:
        value = float(text.strip().removesuffix("%"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 <= value <= 100:  # also refuses nan
        raise argparse.ArgumentTypeError(f"a percentage from 0 to 100, not {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="isiqbot", description="Technical-service applications of Azərişıq")
    commands = parser.add_subparsers(dest="command", required=True)
    chat = commands.add_parser("chat", help="the whole service in this terminal, as subscriber and staff")
    chat.add_argument("--lang", choices=LANGUAGES, default="az", help="the language to start in (default az)")
    chat.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help=f"log to standard error, not to {CHAT_LOG} beside the database (./data)",
    )
    commands.add_parser("run", help="the service: channels with credentials, the web server")
    commands.add_parser("migrate", help="bring the database schema up to date")
    add_applications_parser(commands)
    add_outages_parser(commands)
    add_broadcast_parser(commands)
    reg = commands.add_parser("registry", help="the registry of subscribers")
    reg_commands = reg.add_subparsers(dest="registry_command", required=True)
    imp = reg_commands.add_parser("import", help="load or refresh the registry from a billing CSV export")
    imp.add_argument("file", type=Path)
    guard = imp.add_mutually_exclusive_group()
    guard.add_argument(
        "--max-deactivate",
        type=percent,
        default=registry.MAX_DEACTIVATE_PERCENT,
        metavar="PERCENT",
        help="refuse a refresh that sets more than this share of the active accounts inactive "
        f"(default {registry.MAX_DEACTIVATE_PERCENT:g})",
    )
    guard.add_argument(
        "--allow-deactivate",
        action="store_true",
        help="the accounts missing from the file are really gone: set them inactive, however many",
    )
    return parser


def _terminated(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command in ("run", "migrate"):
        # As PID 1 in a container a signal without a handler is ignored: a SIGTERM that comes while
        # the service starts (or migrates) stops it at once. `run` sets its draining handler later.
        signal.signal(signal.SIGTERM, _terminated)
    # A terminal may send bytes that are not UTF-8: they become "�", never a crash.
    for stream in (sys.stdin, sys.stdout):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(encoding="utf-8", errors="replace")
    try:
        settings = Settings()
        if args.command == "run":
            settings.staff.policy()  # a bad DEPARTMENTS_FILE stops the start, with every problem named
    except SettingsError as exc:
        print(f"isiqbot: settings: {exc}", file=sys.stderr)
        return 2
    if args.command == "chat":
        return cmd_chat(settings, args.lang, args.verbose)
    if args.command in STAFF_COMMANDS:  # staff's commands: their warnings are for them to read
        logs.setup("WARNING")
    else:
        logs.setup(settings.http.log_level, fmt=settings.http.log_format)
    if args.command == "migrate":
        return asyncio.run(cmd_migrate(settings))
    if args.command == "applications":
        return asyncio.run(cmd_applications(settings, args))
    if args.command == "outages":
        return asyncio.run(cmd_outages(settings, args))
    if args.command == "broadcast":
        return asyncio.run(cmd_broadcast(settings, args))
    if args.command == "registry":
        limit = None if args.allow_deactivate else args.max_deactivate
        return asyncio.run(cmd_registry_import(settings, args.file, limit))
    if settings.http.link_secret is None:
        # Links in SMS, e-mail and /start must still open after a restart, and on every process.
        print(
            "isiqbot: settings: LINK_SECRET is not set; `run` needs it to sign application links "
            '(make one with: python3 -c "import secrets; print(secrets.token_urlsafe(32))")',
            file=sys.stderr,
        )
        return 2
    from bot import app  # the service's parts are imported only by the command that runs them

    return asyncio.run(app.run(settings))


if __name__ == "__main__":
    sys.exit(main())
