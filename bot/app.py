"""The composition root: the one place where the running service is put together from `Settings`.

`isiqbot run` builds the service here, and so do the tests that drive it. Every part gets what it
needs through its constructor, in the order of what depends on what:

    database → SMS gateway, mailer, links → the conversation service, the staff desk
    → each channel that has credentials (`bot/channels/<name>/connector.py`), into the registry
    → the outbox's senders: SMS, e-mail and what each channel sends → the outbox worker
    → the web routes: the SMS gateway's reports, each channel's webhooks, the status page

The outbox worker and the parts that queue messages meet at one `asyncio.Event` (`wakeup`), made
first, so nothing is wired after it is built. `Service.run` serves until SIGTERM, then drains: the
web server and polling stop taking updates, and the sends the worker has claimed finish.

This is the only module outside `bot/channels/` that names a channel: adding one is a line in
`build` (and its settings).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import aiohttp
from aiohttp import web

from bot.channels.port import Channel, Channels, Parts, StartError
from bot.channels.telegram import connector as telegram
from bot.channels.telegram.limits import Limits
from bot.channels.terminal import StdinLines, Terminal, TerminalChannel, TerminalSms, demo_policy
from bot.channels.whatsapp import connector as whatsapp
from bot.core.clock import Clock, system_clock
from bot.core.links import PublicLinks
from bot.core.metrics import DatabaseMetrics, exposition
from bot.core.policy import StaffPolicy
from bot.core.service import Conversations
from bot.core.settings import Settings
from bot.notify.mail import EmailSender, LogMailer, Mailer, SmtpConfig, SmtpMailer
from bot.notify.outbox import OutboxWorker, Sender
from bot.notify.sms import GatewaySms, HttpSmsGateway, LogSmsGateway, SmsGateway, SmsSender, delivery_handler
from bot.staff.desk import StaffDesk
from bot.web.server import Listener, Route, make_app, metrics_handler, serve
from bot.web.statuspage import StatusPage
from dialogs import ports
from storage import outbox, registry, retention
from storage.db import Database, as_utc
from storage.migrate import open_database

__all__ = ["Pace", "Service", "StartError", "build", "chat", "run"]
log = logging.getLogger("isiqbot")
DRAIN_SECONDS = 10.0  # at SIGTERM, how long the sends already claimed may take to finish
SENDER = "isiqbot@localhost"  # the From of e-mails when SMTP_FROM is not set (they are only logged)


@dataclass(slots=True)
class Service:
    """Everything `isiqbot run` runs: built by `build`, then `run` until stopped."""

    settings: Settings
    db: Database
    http: aiohttp.ClientSession
    conversations: Conversations
    desk: StaffDesk
    worker: OutboxWorker
    channels: Channels
    routes: list[Route]
    metrics: DatabaseMetrics
    owns_db: bool = True
    tasks: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    died: list[str] = field(default_factory=list)  # background parts that stopped on their own

    @property
    def senders(self) -> list[str]:
        return sorted(self.worker.senders)

    async def start(self) -> None:
        """Register with the platforms and start the background parts (polling, the outbox worker)."""
        for channel in self.channels:
            await channel.start()
            for name, work in channel.background(self.stop).items():
                self._background(name, work)
        log.info("outbox: %s", ", ".join(self.senders))
        await self.metrics.renew(self.conversations.clock())  # before the first scrape
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
            await serve(self.listeners(), self.stop)
        finally:
            self.stop.set()
            await self.drain()
        return 1 if self.died else 0

    def listeners(self) -> list[Listener]:
        """The web applications `run` serves, each with its host and port: the public one, and the
        metrics' own when METRICS_PORT is set."""
        http = self.settings.http
        served = [(self.app(), http.http_host, http.http_port)]
        if http.metrics_port is not None:
            metrics = metrics_handler(self._exposition, None, guarded=False)
            served.append(
                (make_app(self.db, [("GET", "/metrics", metrics)]), http.http_host, http.metrics_port)
            )
        return served

    def app(self, *extra: Route) -> web.Application:
        """The public web application: the channels' webhooks, the SMS gateway's reports, the status
        page, /healthz, /readyz and, unless METRICS_PORT gives it a port of its own, /metrics for
        the local network or the holder of METRICS_TOKEN. `extra`: routes a test adds."""
        http = self.settings.http
        routes = [*self.routes, ("GET", "/readyz", self.readyz), *extra]
        if http.metrics_port is None:
            token = http.metrics_token.get_secret_value() if http.metrics_token else None
            routes.append(("GET", "/metrics", metrics_handler(self._exposition, token, guarded=True)))
        return make_app(self.db, routes)

    async def _exposition(self) -> bytes:
        return await exposition(self.metrics, self.conversations.clock)

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
        for channel in self.channels:
            try:
                await asyncio.wait_for(channel.settle(), DRAIN_SECONDS)
            except TimeoutError:
                log.warning("some %s answers were not sent before the stop", channel.label)
        for task in self.tasks.values():
            task.cancel()
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)
        try:  # another replica reports the database's metrics from its next turn
            await self.metrics.release(self.conversations.clock())
        except Exception as exc:
            log.warning("the metrics lease was not given up (%s); it expires", type(exc).__name__)

    async def close(self) -> None:
        for channel in self.channels:
            await channel.close()
        await self.http.close()
        if self.owns_db:
            await self.db.dispose()

    async def readyz(self, request: web.Request) -> web.Response:
        """200 when every background part runs and the outbox keeps up; 503 with the reasons otherwise."""
        problems = [f"{name} stopped" for name, task in self.tasks.items() if task.done()]
        for channel in self.channels:
            problem = await channel.problem()
            if problem is not None:
                problems.append(problem)
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


@dataclass(frozen=True, slots=True)
class Pace:
    """Sending limits; the defaults are the platforms'. Tests of flows, not of limits, go faster."""

    telegram: Limits = field(default_factory=Limits)
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

    sms = settings.sms
    sms_token = sms.gateway_token.get_secret_value() if sms.gateway_token else None
    gateway = _gateway(settings, http)
    code_sms = code_sms if code_sms is not None else GatewaySms(gateway)
    conversations = Conversations(
        database, code_sms, clock=clock, links=signer, policy=policy, on_commit=wakeup.set
    )
    channels = Channels()
    desk = StaffDesk(database, clock, policy, channels)
    parts = Parts(database, clock, conversations, desk, links, http, wakeup.set, channels)
    try:
        await _connect(settings, parts, pace)
    except StartError:
        await http.close()
        if owns_db:
            await database.dispose()
        raise

    senders: dict[str, Sender] = {
        outbox.SMS: SmsSender(gateway, links),
        outbox.EMAIL: EmailSender(
            database, _mailer(settings), settings.smtp.from_ or "isiqbot@localhost", links
        ),
    }
    routes: list[Route] = [("POST", "/sms/delivery", delivery_handler(database, sms_token, clock))]
    for channel in channels:
        senders.update(channel.senders())
        routes.extend(channel.routes())
    period = settings.staff.deadline_check_seconds
    database_metrics = DatabaseMetrics(database, period)
    jobs = [
        desk.check_deadlines,
        desk.remind_visits,
        _pruner(database, timedelta(days=settings.database.retention_days)),
        database_metrics.renew,
    ]
    worker = OutboxWorker(database, senders, clock, periodic=jobs, wakeup=wakeup, period=period)
    proxies = settings.http.trusted_proxies
    page = StatusPage(database, signer, policy, channels.chat_links, clock, trusted_proxies=proxies)
    routes.append(("GET", "/a/{token}", page.handle))

    _warn(settings, policy)
    return Service(
        settings, database, http, conversations, desk, worker, channels, routes, database_metrics, owns_db
    )


def _warn(settings: Settings, policy: StaffPolicy) -> None:
    """Settings that work, but not as an operator would want."""
    if not policy.departments.chats:
        log.warning("no staff chat: set STAFF_CHAT_ID or DEPARTMENTS_FILE to show applications to staff")
    if len(settings.http.public_base_url) > 32:  # "/a/" and a 28-character token follow it
        log.warning("PUBLIC_BASE_URL is long: an Azerbaijani SMS with its link may take 3 parts, not 2")


def _pruner(database: Database, keep: timedelta) -> Callable[[datetime], Coroutine[Any, Any, None]]:
    """The retention job: what is older than `keep` goes, a batch of each kind at each turn."""

    async def prune(now: datetime) -> None:
        async with database.transaction() as session:
            gone = await retention.prune(session, now - keep)
        if any(gone.values()):
            log.info("retention: deleted %s", ", ".join(f"{n} {table}" for table, n in gone.items() if n))

    return prune


async def _connect(settings: Settings, parts: Parts, pace: Pace) -> None:
    """Every channel that has credentials, into the registry. A new channel is a line here."""
    built: list[Channel | None] = [
        await telegram.connect(settings.telegram, parts, pace.telegram, settings.database.redis_url),
        whatsapp.connect(settings.whatsapp, parts, pace.whatsapp_mps, pace.whatsapp_per_user),
    ]
    for channel in built:
        if channel is not None:
            parts.channels.add(channel)


def _gateway(settings: Settings, http: aiohttp.ClientSession) -> SmsGateway:
    sms = settings.sms
    if not sms.gateway_url:
        return LogSmsGateway()
    token = sms.gateway_token.get_secret_value() if sms.gateway_token else None
    return HttpSmsGateway(http, sms.gateway_url, sms.sender, token, sms.gateway_timeout)


def _mailer(settings: Settings) -> Mailer:
    smtp = settings.smtp
    if not (smtp.host and smtp.from_):
        return LogMailer()
    password = smtp.password.get_secret_value() if smtp.password else None
    return SmtpMailer(SmtpConfig(smtp.host, smtp.port, smtp.from_, smtp.user, password, smtp.security))


async def chat(settings: Settings, lang: str) -> int:
    """`isiqbot chat`: the service in this terminal, as subscriber and (after /staff) as staff.

    The SMS (the one-time codes, the registration and the result) and the e-mails are shown in the
    terminal as they would arrive, their links to the status page at PUBLIC_BASE_URL. Every
    application goes to the demo's department, whose staff chat is the terminal's staff view. The
    sample registry is loaded into an empty database, so a newcomer can file an application at once.
    """
    db = await open_database(settings.database.database_url)
    try:
        async with db.transaction() as session:
            if await registry.is_empty(session):
                await registry.import_csv(session, registry.SAMPLE_CSV.read_bytes())
                log.info("the sample registry was loaded into an empty database")
        signer = settings.http.links()
        links = PublicLinks(signer, settings.http.public_base_url)
        policy = demo_policy()
        out = sys.stdout
        sms = TerminalSms(lambda text: print(text, file=out, flush=True))
        service = Conversations(db, sms, links=signer, policy=policy)
        desk = StaffDesk(db, policy=policy, channels=Channels([TerminalChannel()]))
        await Terminal(service, desk, StdinLines(), out=out, lang=lang, links=links).run()
    finally:
        await db.dispose()
    return 0


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
        log.error("cannot listen: %s", exc)
        return 1
    finally:
        await service.close()
