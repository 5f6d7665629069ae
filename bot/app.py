"""The composition root: the one place where the running service is put together from `Settings`.

`isiqbot run` builds the service here, and so do the tests that drive it. Every part gets what it
needs through its constructor, in the order of what depends on what:

    database → SMS gateway, mailer, links → Telegram client, Graph API client
    → staff chat (reads WhatsApp photos) and WhatsApp channel (reads Telegram photos)
    → the outbox's senders, one per channel that is configured → the outbox worker
    → the conversation service → the Telegram channel → the web routes

The outbox worker and the parts that queue messages meet at one `asyncio.Event` (`wakeup`), made
first, so nothing is wired after it is built. `Service.run` serves until SIGTERM, then drains: the
web server and polling stop taking updates, and the sends the worker has claimed finish.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import aiohttp
from aiogram.exceptions import TelegramAPIError
from aiohttp import web

from bot.channels.telegram import CHANNEL as TELEGRAM
from bot.channels.telegram.channel import ALLOWED_UPDATES, TelegramChannel, webhook_handler
from bot.channels.telegram.client import TelegramClient, make_bot
from bot.channels.telegram.limits import RateLimiter
from bot.channels.telegram.notify import TelegramNotifier
from bot.channels.telegram.staffchat import StaffChat, check_deadlines
from bot.channels.whatsapp import CHANNEL as WHATSAPP
from bot.channels.whatsapp.channel import GraphClient, WhatsAppChannel
from bot.channels.whatsapp.channel import routes as whatsapp_routes
from bot.core.links import PublicLinks
from bot.core.service import Clock, Conversations, system_clock
from bot.core.settings import Settings
from bot.notify.mail import EmailSender, LogMailer, Mailer, SmtpConfig, SmtpMailer
from bot.notify.outbox import OutboxWorker, Sender
from bot.notify.sms import GatewaySms, HttpSmsGateway, LogSmsGateway, SmsGateway, SmsSender, delivery_handler
from bot.web.server import Route, serve
from bot.web.statuspage import StatusPage
from dialogs import ports
from storage import outbox
from storage.db import Database, as_utc
from storage.migrate import open_database

log = logging.getLogger("isiqbot")
DRAIN_SECONDS = 10.0  # at SIGTERM, how long the sends already claimed may take to finish
WEBHOOK_CHECK_SECONDS = 60.0  # /readyz asks Telegram about the webhook at most this often


class StartError(Exception):
    """The service cannot start (a platform refused the credentials); the message says which."""


@dataclass(slots=True)
class Telegram:
    client: TelegramClient
    channel: TelegramChannel
    staff_chat: StaffChat | None
    webhook_secret: str | None
    username: str | None


@dataclass(slots=True)
class Service:
    """Everything `isiqbot run` runs: built by `build`, then `run` until stopped."""

    settings: Settings
    db: Database
    http: aiohttp.ClientSession
    conversations: Conversations
    worker: OutboxWorker
    telegram: Telegram | None
    whatsapp: WhatsAppChannel | None
    routes: list[Route]
    owns_db: bool = True
    tasks: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    webhook_checked: tuple[float, str | None] = (0.0, None)  # (when, the problem found then)
    died: list[str] = field(default_factory=list)  # background parts that stopped on their own

    @property
    def senders(self) -> list[str]:
        return sorted(self.worker.senders)

    async def start(self) -> None:
        """Register with the platforms and start the background parts (polling, the outbox worker)."""
        telegram = self.telegram
        if telegram is not None:
            try:
                await telegram.channel.set_commands()
                if telegram.staff_chat is not None:
                    await telegram.staff_chat.set_commands()
                if telegram.webhook_secret is not None:
                    url = self.settings.telegram.webhook_url or ""
                    await telegram.client.bot.set_webhook(
                        url, secret_token=telegram.webhook_secret, allowed_updates=ALLOWED_UPDATES
                    )
                    log.info("Telegram: webhook registered")
            except (TelegramAPIError, aiohttp.ClientError) as exc:
                raise StartError(f"Telegram refused to start: {type(exc).__name__}: {exc}") from exc
            if telegram.webhook_secret is None:
                self._background("telegram polling", telegram.channel.poll(self.stop))
                log.info("Telegram: long polling")
        if self.whatsapp is not None:
            log.info("WhatsApp: webhook at /whatsapp/webhook")
        log.info("outbox: %s", ", ".join(self.senders))
        async with self.db.transaction() as session:
            waiting = await outbox.waiting_channels(session)
        for channel, count in sorted(waiting.items()):
            if channel not in self.worker.senders:
                log.warning("outbox: %s message(s) wait for %s, which is not configured", count, channel)
        self._background("outbox worker", self.worker.run(self.stop))

    def _background(self, name: str, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        # A part that dies takes the service down with it: a process that looks alive but does not
        # poll, or does not send, is worse than one that stops and is restarted.
        task.add_done_callback(lambda done: self._died(name, done))
        self.tasks[name] = task

    def _died(self, name: str, task: asyncio.Task[None]) -> None:
        if not self.stop.is_set():
            error = None if task.cancelled() else task.exception()
            log.error("%s stopped unexpectedly%s", name, f": {error!r}" if error else "")
            self.died.append(name)
            self.stop.set()

    async def run(self) -> int:
        """Serve until `stop` (SIGTERM), then drain. 1 when a part of the service died on its own."""
        try:
            await serve(self.settings, self.db, self.stop, [*self.routes, ("GET", "/readyz", self.readyz)])
        finally:
            self.stop.set()
            await self.drain()
        return 1 if self.died else 0

    async def drain(self) -> None:
        """Let the worker finish what it has claimed (at most DRAIN_SECONDS); stop the rest."""
        self.worker.wake()
        worker = self.tasks.get("outbox worker")
        if worker is not None:
            try:
                await asyncio.wait_for(asyncio.shield(worker), DRAIN_SECONDS)
            except TimeoutError:
                log.warning("the outbox worker did not finish its sends within %ss", DRAIN_SECONDS)
            except Exception:  # noqa: S110 (its death was logged by `_died`)
                pass
        if self.whatsapp is not None:
            try:
                await asyncio.wait_for(self.whatsapp.settle(), DRAIN_SECONDS)
            except TimeoutError:
                log.warning("some WhatsApp answers were not sent before the stop")
        for task in self.tasks.values():
            task.cancel()
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)

    async def close(self) -> None:
        if self.telegram is not None:
            await self.telegram.client.close()
        await self.http.close()
        if self.owns_db:
            await self.db.dispose()

    async def readyz(self, request: web.Request) -> web.Response:
        """200 when every background part runs and the outbox keeps up; 503 with the reasons otherwise."""
        problems = [f"{name} stopped" for name, task in self.tasks.items() if task.done()]
        webhook = await self._webhook_problem()
        if webhook is not None:
            problems.append(webhook)
        now = self.conversations.clock()
        try:
            async with self.db.transaction() as session:
                oldest = await outbox.oldest_due(session, now)
        except Exception as exc:
            problems.append(f"database: {type(exc).__name__}")
        else:
            waited = (now - as_utc(oldest)).total_seconds() if oldest is not None else 0.0
            if waited > self.settings.http.readyz_outbox_max_age:
                problems.append(f"outbox: a message has been due for {waited:.0f} s")
        if problems:
            return web.json_response({"status": "not ready", "problems": problems}, status=503)
        return web.json_response({"status": "ready", "outbox": self.senders})

    async def _webhook_problem(self) -> str | None:
        """Whether Telegram still calls our webhook (asked at most once a minute)."""
        telegram = self.telegram
        if telegram is None or telegram.webhook_secret is None:
            return None
        when, problem = self.webhook_checked
        if time.monotonic() - when < WEBHOOK_CHECK_SECONDS:
            return problem
        try:
            info = await telegram.client.bot.get_webhook_info()
        except (TelegramAPIError, aiohttp.ClientError) as exc:
            problem = f"telegram webhook: not known ({type(exc).__name__})"
        else:
            expected = self.settings.telegram.webhook_url
            problem = None if info.url == expected else "telegram webhook: no longer registered"
        self.webhook_checked = (time.monotonic(), problem)
        return problem


@dataclass(frozen=True, slots=True)
class Pace:
    """Sending limits; the defaults are the platforms'. Tests of flows, not of limits, go faster."""

    telegram: Callable[[], RateLimiter] = RateLimiter
    whatsapp_mps: float | None = None  # None: WHATSAPP_MPS
    whatsapp_per_user: float = 1.0


async def build(
    settings: Settings,
    *,
    db: Database | None = None,
    clock: Clock = system_clock,
    code_sms: ports.Sms | None = None,
    pace: Pace = Pace(),
) -> Service:
    """The service from `settings`: every channel that has credentials, every outbox sender, the routes.

    `db`, `clock`, `code_sms` and `pace` let a test run it on its own database, clock and pace; the
    operator's process passes none of them. Raises StartError when Telegram refuses the token.
    """
    policy = settings.staff.policy()
    owns_db = db is None
    database = db if db is not None else await open_database(settings.database.database_url)
    signer = settings.http.links()
    links = PublicLinks(signer, settings.http.public_base_url)
    http = aiohttp.ClientSession()
    wakeup = asyncio.Event()  # set by whoever queues a message; the worker waits on it

    gateway: SmsGateway = LogSmsGateway()
    sms = settings.sms
    sms_token = sms.gateway_token.get_secret_value() if sms.gateway_token else None
    if sms.gateway_url:
        gateway = HttpSmsGateway(http, sms.gateway_url, sms.sender, sms_token, sms.gateway_timeout)
    smtp = settings.smtp
    mailer: Mailer = LogMailer()
    if smtp.host and smtp.from_:
        password = smtp.password.get_secret_value() if smtp.password else None
        mailer = SmtpMailer(SmtpConfig(smtp.host, smtp.port, smtp.from_, smtp.user, password, smtp.security))
    senders: dict[str, Sender] = {
        outbox.SMS: SmsSender(gateway, links),
        outbox.EMAIL: EmailSender(database, mailer, smtp.from_ or "isiqbot@localhost", links),
    }

    tg = settings.telegram
    client = None
    if tg.bot_token is not None:
        client = TelegramClient(
            make_bot(tg.bot_token.get_secret_value(), tg.api_url), database, clock, pace.telegram()
        )
    wa = settings.whatsapp
    graph = None
    if wa.token and wa.app_secret and wa.verify_token:
        mps = pace.whatsapp_mps or wa.mps
        token = wa.token.get_secret_value()
        graph = GraphClient(http, wa.api_url, wa.phone_number_id or "", token, mps, pace.whatsapp_per_user)

    staff_chat = None
    if client is not None:
        senders[TELEGRAM] = TelegramNotifier(client, database, clock, policy)
        if policy.departments.chats:
            media = graph.media if graph is not None else None
            staff_chat = StaffChat(client, database, clock, policy, wake=wakeup.set, media=media)
            senders[outbox.STAFF] = staff_chat
    conversations = Conversations(
        database,
        code_sms if code_sms is not None else GatewaySms(gateway),
        clock=clock,
        links=signer,
        policy=policy,
        on_commit=wakeup.set,
    )
    whatsapp = None
    if graph is not None and wa.app_secret and wa.verify_token:
        whatsapp = WhatsAppChannel(
            conversations,
            graph,
            wa.app_secret.get_secret_value(),
            wa.verify_token.get_secret_value(),
            policy,
            links,
            wa.template,
            wa.template_language,
            photos=client.photo if client is not None else None,
        )
        senders[WHATSAPP] = whatsapp
    deadlines = partial(check_deadlines, database, policy)
    period = settings.staff.deadline_check_seconds
    worker = OutboxWorker(database, senders, clock, periodic=[deadlines], wakeup=wakeup, period=period)

    routes: list[Route] = [("POST", "/sms/delivery", delivery_handler(database, sms_token, clock))]
    telegram = None
    if client is not None:
        channel = TelegramChannel(client, conversations, staff_chat)
        try:
            username = (await client.bot.me()).username
        except (TelegramAPIError, aiohttp.ClientError) as exc:
            await client.close()
            await http.close()
            if owns_db:
                await database.dispose()
            raise StartError(
                f"Telegram refused to start (check TELEGRAM_BOT_TOKEN and TELEGRAM_API_URL): "
                f"{type(exc).__name__}"
            ) from exc
        secret = tg.webhook_secret.get_secret_value() if tg.webhook_url and tg.webhook_secret else None
        if secret is not None:
            routes.append(("POST", "/telegram/webhook", webhook_handler(channel, secret)))
        telegram = Telegram(client, channel, staff_chat, secret, username)
    if whatsapp is not None:
        routes.extend(whatsapp_routes(whatsapp))
    username = telegram.username if telegram else None
    proxies = settings.http.trusted_proxies
    page = StatusPage(database, signer, policy, username, wa.public_number, clock, trusted_proxies=proxies)
    routes.append(("GET", "/a/{token}", page.handle))

    if not policy.departments.chats:
        log.warning("no staff chat: set STAFF_CHAT_ID or DEPARTMENTS_FILE to show applications to staff")
    if len(settings.http.public_base_url) > 32:  # "/a/" and a 28-character token follow it
        log.warning("PUBLIC_BASE_URL is long: an Azerbaijani SMS with its link may take 3 parts, not 2")
    return Service(settings, database, http, conversations, worker, telegram, whatsapp, routes, owns_db)


async def run(settings: Settings) -> int:
    """`isiqbot run`: build, start, serve until SIGINT or SIGTERM, drain, stop."""
    started = time.monotonic()
    try:
        service = await build(settings)
    except StartError as exc:
        log.error("%s", exc)
        return 1
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, service.stop.set)
    try:
        try:
            await service.start()
        except StartError as exc:
            log.error("%s", exc)
            return 1
        log.info("started in %.1f s", time.monotonic() - started)
        return await service.run()
    except OSError as exc:  # the port is taken, say
        http = settings.http
        log.error("cannot listen on %s:%s: %s", http.http_host, http.http_port, exc.strerror or exc)
        return 1
    finally:
        await service.close()
