"""The `isiqbot` command line: chat, run, migrate, registry import."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence
from functools import partial
from pathlib import Path

from isiqbot.bot.cli_applications import add_applications_parser, cmd_applications
from isiqbot.bot.service import Conversations
from isiqbot.bot.settings import Settings, SettingsError
from isiqbot.bot.staff import StaffDesk
from isiqbot.bot.terminal import Terminal, TerminalSms, stdin_reader
from isiqbot.locales import LANGUAGES
from isiqbot.storage import registry
from isiqbot.storage.db import Database
from isiqbot.storage.migrate import upgrade

log = logging.getLogger("isiqbot")


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level, logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


async def open_database(settings: Settings) -> Database:
    """The database, migrated to the newest schema."""
    db = Database(settings.database.database_url)
    await upgrade(db.engine)
    return db


async def load_sample_registry_if_empty(db: Database) -> bool:
    async with db.transaction() as session:
        if not await registry.is_empty(session):
            return False
        await registry.import_csv(session, registry.SAMPLE_CSV.read_bytes())
    return True


async def cmd_chat(settings: Settings, lang: str) -> int:
    db = await open_database(settings)
    try:
        if await load_sample_registry_if_empty(db):
            log.info("the sample registry was loaded into an empty database")
        out = sys.stdout
        sms = TerminalSms(lambda text: print(text, file=out, flush=True))
        service = Conversations(db, sms)
        terminal = Terminal(service, StaffDesk(db), stdin_reader, out=out, lang=lang)
        await terminal.run()
    finally:
        await db.dispose()
    return 0


async def cmd_migrate(settings: Settings) -> int:
    db = await open_database(settings)
    await db.dispose()
    print("database schema is up to date")
    return 0


async def cmd_registry_import(settings: Settings, path: Path) -> int:
    try:
        data = await asyncio.to_thread(path.read_bytes)
    except OSError as exc:
        print(f"cannot read {path}: {exc.strerror}", file=sys.stderr)
        return 2
    db = await open_database(settings)
    try:
        async with db.transaction() as session:
            report = await registry.import_csv(session, data)
    except registry.RegistryImportError as exc:
        print(f"{path}: nothing was imported; {len(exc.errors)} problem(s):", file=sys.stderr)
        for error in exc.errors:
            print(f"  {error}", file=sys.stderr)
        return 1
    finally:
        await db.dispose()
    print(
        f"imported {report.persons} persons, {report.accounts} accounts, "
        f"{report.metering_points} metering points; {report.deactivated} no longer in the file set inactive"
    )
    return 0


async def cmd_run(settings: Settings) -> int:
    """The service: the web server, and every channel that has credentials."""
    import aiohttp
    from aiogram.exceptions import TelegramAPIError

    from isiqbot.bot.links import PublicLinks
    from isiqbot.bot.mail import EmailSender, LogMailer, Mailer, SmtpConfig, SmtpMailer
    from isiqbot.bot.outbox import OutboxWorker, Sender
    from isiqbot.bot.sms import (
        GatewaySms,
        HttpSmsGateway,
        LogSmsGateway,
        SmsGateway,
        SmsSender,
        delivery_handler,
    )
    from isiqbot.bot.statuspage import StatusPage
    from isiqbot.bot.telegram import CHANNEL
    from isiqbot.bot.telegram.channel import ALLOWED_UPDATES, TelegramChannel, make_bot, webhook_handler
    from isiqbot.bot.telegram.notify import TelegramNotifier
    from isiqbot.bot.telegram.staffchat import StaffChat, check_deadlines
    from isiqbot.bot.web import Route, serve
    from isiqbot.bot.whatsapp import CHANNEL as WHATSAPP
    from isiqbot.bot.whatsapp.channel import GraphClient, WhatsAppChannel
    from isiqbot.bot.whatsapp.channel import routes as whatsapp_routes
    from isiqbot.storage import outbox

    policy = settings.staff.policy()
    db = await open_database(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    signer = settings.http.links()
    links = PublicLinks(signer, settings.http.public_base_url)
    http = aiohttp.ClientSession()
    gateway: SmsGateway = LogSmsGateway()
    if settings.sms.gateway_url:
        token = settings.sms.gateway_token.get_secret_value() if settings.sms.gateway_token else None
        gateway = HttpSmsGateway(
            http, settings.sms.gateway_url, settings.sms.sender, token, settings.sms.gateway_timeout
        )
    smtp = settings.smtp
    mailer: Mailer = LogMailer()
    if smtp.host and smtp.from_:
        password = smtp.password.get_secret_value() if smtp.password else None
        mailer = SmtpMailer(SmtpConfig(smtp.host, smtp.port, smtp.from_, smtp.user, password, smtp.security))
    senders: dict[str, Sender] = {
        outbox.SMS: SmsSender(gateway, links),
        outbox.EMAIL: EmailSender(db, mailer, smtp.from_ or "isiqbot@localhost", links),
    }
    worker = OutboxWorker(db, senders, periodic=[partial(check_deadlines, db, policy)])
    service = Conversations(db, GatewaySms(gateway), links=signer, policy=policy, on_commit=worker.wake)
    routes: list[Route] = [("POST", "/sms/delivery", delivery_handler(db, token_of(settings), service.clock))]
    bot_username: str | None = None
    tasks: list[asyncio.Task[None]] = []
    telegram = settings.telegram
    bot = None
    staff_chat = None
    if telegram.bot_token is not None:
        bot = make_bot(telegram.bot_token.get_secret_value(), telegram.api_url)
        channel = TelegramChannel(bot, service)
        staff_chat = StaffChat(channel, policy, wake=worker.wake)
        if policy.departments.chats:
            channel.staff = staff_chat
            senders[outbox.STAFF] = staff_chat
        senders[CHANNEL] = TelegramNotifier(channel, policy)
        try:
            bot_username = (await bot.me()).username
            await channel.set_commands()
            if channel.staff is not None:
                await staff_chat.set_commands()
            if telegram.webhook_url and telegram.webhook_secret:
                secret = telegram.webhook_secret.get_secret_value()
                routes.append(("POST", "/telegram/webhook", webhook_handler(channel, secret)))
                await bot.set_webhook(
                    telegram.webhook_url, secret_token=secret, allowed_updates=ALLOWED_UPDATES
                )
                log.info("Telegram: webhook registered")
        except (TelegramAPIError, aiohttp.ClientError) as exc:
            log.error("Telegram refused to start (check TELEGRAM_BOT_TOKEN and TELEGRAM_API_URL): %s", exc)
            await bot.session.close()
            await http.close()
            await db.dispose()
            return 1
        if not telegram.webhook_url:
            polling = asyncio.create_task(channel.poll(stop))
            polling.add_done_callback(lambda _: stop.set())  # no polling, no service: stop, and say why
            tasks.append(polling)
            log.info("Telegram: long polling")
    whatsapp = settings.whatsapp
    if whatsapp.enabled and whatsapp.token and whatsapp.app_secret and whatsapp.verify_token:
        graph = GraphClient(
            http,
            whatsapp.api_url,
            whatsapp.phone_number_id or "",
            whatsapp.token.get_secret_value(),
            whatsapp.mps,
        )
        wa_channel = WhatsAppChannel(
            service,
            graph,
            whatsapp.app_secret.get_secret_value(),
            whatsapp.verify_token.get_secret_value(),
            policy,
            links,
            whatsapp.template,
            whatsapp.template_language,
        )
        routes.extend(whatsapp_routes(wa_channel))
        senders[WHATSAPP] = wa_channel
        if staff_chat is not None:
            staff_chat.media = graph.media
            wa_channel.photos = staff_chat.channel.photo
        log.info("WhatsApp: webhook at /whatsapp/webhook")
    if not policy.departments.chats:
        log.warning("no staff chat: set STAFF_CHAT_ID or DEPARTMENTS_FILE to show applications to staff")
    if len(settings.http.public_base_url) > 32:  # "/a/" and a 28-character token follow it
        log.warning("PUBLIC_BASE_URL is long: an Azerbaijani SMS with its link may take 3 parts, not 2")
    page = StatusPage(db, signer, policy, bot_username, settings.whatsapp.public_number)
    routes.append(("GET", "/a/{token}", page.handle))
    tasks.append(asyncio.create_task(worker.run(stop)))
    try:
        await serve(settings, db, stop, routes)
    finally:
        for task in tasks:
            task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        if bot is not None:
            await bot.session.close()
        await http.close()
        await db.dispose()
    failures = [r for r in results if isinstance(r, Exception) and not isinstance(r, asyncio.CancelledError)]
    for failure in failures:
        log.error("a part of the service stopped: %s: %s", type(failure).__name__, failure)
    return 1 if failures else 0


def token_of(settings: Settings) -> str | None:
    """The bearer token the SMS gateway's delivery reports must carry (SMS_GATEWAY_TOKEN)."""
    token = settings.sms.gateway_token
    return token.get_secret_value() if token is not None else None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="isiqbot", description="Technical-service applications of Azərişıq")
    commands = parser.add_subparsers(dest="command", required=True)
    chat = commands.add_parser("chat", help="the whole service in this terminal, as subscriber and staff")
    chat.add_argument("--lang", choices=LANGUAGES, default="az", help="the language to start in (default az)")
    commands.add_parser("run", help="the service: channels with credentials, the web server")
    commands.add_parser("migrate", help="bring the database schema up to date")
    add_applications_parser(commands)
    reg = commands.add_parser("registry", help="the registry of subscribers")
    reg_commands = reg.add_subparsers(dest="registry_command", required=True)
    imp = reg_commands.add_parser("import", help="load or refresh the registry from a billing CSV export")
    imp.add_argument("file", type=Path)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
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
    _setup_logging("WARNING" if args.command in ("chat", "applications") else settings.http.log_level)
    if args.command == "chat":
        return asyncio.run(cmd_chat(settings, args.lang))
    if args.command == "migrate":
        return asyncio.run(cmd_migrate(settings))
    if args.command == "applications":
        return asyncio.run(cmd_applications(settings, args))
    if args.command == "registry":
        return asyncio.run(cmd_registry_import(settings, args.file))
    if settings.http.link_secret is None:
        # Links in SMS, e-mail and /start must still open after a restart, and on every process.
        print(
            "isiqbot: settings: LINK_SECRET is not set; `run` needs it to sign application links "
            '(make one with: python3 -c "import secrets; print(secrets.token_urlsafe(32))")',
            file=sys.stderr,
        )
        return 2
    return asyncio.run(cmd_run(settings))


if __name__ == "__main__":
    sys.exit(main())
