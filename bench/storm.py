"""The outage-storm benchmark: `isiqbot run` beside a bare aiogram bot, under the same webhook load.

What it measures. One process (this one) runs a local Bot API server (`bench.fake_botapi`) and a load
generator. For each bot in turn, the bare aiogram webhook bot (`bench.bare_bot`) first, then
`isiqbot run` started as an operator starts it (environment variables, webhook mode, the sample
registry imported), N simulated private chats each act every T seconds (jittered start) for D
seconds. One action is one Telegram update POSTed to /telegram/webhook with the secret header; a chat
waits for the answer before its next action (closed loop, paced at T).

isiqbot's chats walk a whole residential application as a subscriber would: /start, "new" (the
callback data is read from the last inline keyboard the fake recorded for the chat, `<rev>|<id>`),
the shared contact (their own, a phone of the sample registry) when it is asked, the first account
when one is asked, "reason:no_power", a description, "done", "ok", "send"; then /start again, so the
load is steady. A button the walk expects and does not find is logged and the chat starts over with
/start (counted as a restart; "new" then meets the draft left behind, and the walk presses "fresh").
The bare bot gets the same sequence of updates (text, contact and callback queries with made-up
data) and answers each with one message.

Run (`make bench` runs the defaults on SQLite, then on PostgreSQL):

    .venv/bin/python -m bench.storm [--chats 40] [--every 3] [--seconds 30] [--database sqlite|postgresql]
        [--processes 2 --redis] [--limit-per-second 30] [--profile]

--processes 2 (PostgreSQL only) runs two processes of each bot on one database behind one webhook
address: a round-robin proxy in this process forwards each POST to the next process. The fake's
limit of 30 messages a second per bot token is then on (`--limit-per-second` sets it for any run;
0 is none), and its 429s are counted. --redis passes REDIS_URL (redis://127.0.0.1:6379/15 unless
given) to the isiqbot processes. --profile runs py-spy on an isiqbot process during the load, into
collapsed stacks (.folded: speedscope or flamegraph.pl draw them).

The columns, per bot:
  updates, updates/s      updates the bot answered 200, per second of the load phase (from the
                          first action to the end of the last)
  latency p50 … max       from the webhook POST sent to its response (both bots send their answer
                          before they respond); an answer that comes only after the response (isiqbot
                          hands a slow answer to its outbox) counts until its first message arrives;
                          a redelivered update counts from its first POST
  messages/update         sends + edits received by the fake (also the staff cards isiqbot's outbox
                          sends, until the sends stop after the load) per update; split into sends and
                          edits, and into people's chats and staff groups
  other calls/update      every other Bot API call (answerCallbackQuery …) per update
  429s                    message calls the fake refused for its per-token limit
  non-200 / redelivered   webhook responses other than 200, each update redelivered up to 5 times
                          after 0.5 s as Telegram would; "gave up" when none was 200
  late / unanswered       answers that arrived after the webhook response / not within 5 s
  walk restarts           an expected button was missing; applications filed: "send" answered with
                          the registration
  CPU s, CPU ms/update    user+system CPU of the bot's processes and their children (/proc/<pid>/stat)
                          from just before the load to when the fake's sends stopped, per update
  CPU busy                that CPU as a share of one core over the same time
  bench CPU s             this process (load generator, fake Bot API, proxy): when it nears one core
                          the bench, not the bot, is the limit
--fanout N queues N status messages to other chats in isiqbot's outbox just before the load: the
answers' latency while the outbox fans news out at the bulk rate (answers go first).
Then the ratios isiqbot/bare of CPU per update and of p99, and each bot's latency p50/p99 by step of
the walk. Staff cards beyond Telegram's 20 a minute per group stay in isiqbot's outbox when the
sends stop and are not in the measure. It prints; it asserts nothing. The isiqbot logs stay in the
run's folder (printed: /tmp/isiqbot-storm-*/isiqbot-<database>-<n>.log), with a count of their
WARNING and ERROR lines.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import logging
import os
import random
import re
import resource
import secrets
import shutil
import signal
import socket
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
from aiohttp import web

from bench.bare_bot import TOKEN as BARE_TOKEN
from bench.fake_botapi import Counts, FakeBotApi
from bench.throughput import PHONES
from bot.core import settings as isiqbot_settings
from storage.registry import SAMPLE_CSV

log = logging.getLogger("storm")
ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ISIQBOT = BIN / "isiqbot"
ISIQBOT_TOKEN = "7000001:bench-isiqbot-token"  # noqa: S105 (the fake server's, not a secret)
WEBHOOK_SECRET = "bench-webhook-secret"  # noqa: S105
WEBHOOK_PATH = "/telegram/webhook"
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"  # noqa: S105 (a header name)
STAFF_CHAT_ID = -1009999999999  # the applications no department of departments.example.toml serves
FIRST_CHAT = 500_001
DESCRIPTION = "Səhərdən bəri mənzildə işıq yoxdur, qonşularda var."
FILED = "qeydə alındı"  # the registration, as an Azerbaijani-speaking person reads it
ANSWER_WAIT = 5.0  # how long an answer may come after the webhook's response
REDELIVERIES = 5
QUIET = 1.0  # after the load: the fake has had no message for this long, so the outbox is done …
SETTLE_MAX = 20.0  # … or this long has passed
MISSING_LOGGED = 5  # a missing button is logged this many times a phase, then only counted
REDIS_URL = "redis://127.0.0.1:6379/15"
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
NUMBER = re.compile(r"\d+")
LOG_LINE = re.compile(r"^\S+ \S+ (WARNING|ERROR|CRITICAL) (\S+): (.*)$")


# ---- the walk --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Act:
    kind: str  # command, press, contact, text
    value: str = ""  # the command, the choice id (a prefix when it ends with ":"), the text
    optional: bool = False  # done only when the bot asks for it


ISIQBOT_WALK = (
    Act("command", "/start"),
    Act("press", "new"),
    Act("press", "fresh", optional=True),  # after a restart mid-walk: a draft waits; a new one
    Act("contact", optional=True),  # a chat that confirmed its phone before is not asked again
    Act("press", "acc:", optional=True),  # a phone with several accounts: the first
    Act("press", "mp:", optional=True),  # a main code: its first metering point
    Act("press", "reason:no_power"),
    Act("press", "dup:new", optional=True),  # the chat's earlier application is open: another problem
    Act("text", DESCRIPTION),
    Act("press", "done"),
    Act("press", "ok"),
    Act("press", "send"),
)
BARE_WALK = tuple(a for a in ISIQBOT_WALK if not a.optional or a.kind == "contact")


def chosen(keyboard: Sequence[str], want: str) -> str | None:
    """The callback data of the button whose choice id (after `<rev>|`) is `want`, or starts with it."""
    for data in keyboard:
        choice = data.partition("|")[2]
        if choice == want or (want.endswith(":") and choice.startswith(want)):
            return data
    return None


@dataclass(slots=True)
class Chat:
    id: int
    phone: str
    pos: int = 0
    message_ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    keyboard: list[str] = field(default_factory=list)
    asked_contact: bool = False


@dataclass(slots=True)
class Stats:
    latencies: list[float] = field(default_factory=list)
    by_step: dict[str, list[float]] = field(default_factory=dict)  # the latencies by what the chat did
    statuses: Counter[str] = field(default_factory=Counter)
    redelivered: int = 0
    gave_up: int = 0
    late: int = 0
    unanswered: int = 0
    restarts: int = 0
    missing: Counter[str] = field(default_factory=Counter)
    filed: int = 0

    @property
    def updates(self) -> int:
        """Updates answered 200 (a redelivered one once)."""
        return self.statuses["200"]


# ---- processes -----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _stat(pid: int) -> tuple[int, float] | None:
    """A process's parent and its CPU seconds (its own and its waited-for children's)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()  # after "pid (comm) "
    ppid = int(fields[1])
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    return ppid, (utime + stime + cutime + cstime) / CLOCK_TICKS


def tree_cpu(pids: Sequence[int]) -> float:
    """User+system CPU seconds of these processes and all their descendants."""
    parents: dict[int, list[int]] = {}
    cpu: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            found = _stat(int(entry.name))
            if found is not None:
                parents.setdefault(found[0], []).append(int(entry.name))
                cpu[int(entry.name)] = found[1]
    total, pending, seen = 0.0, list(pids), set()
    while pending:
        pid = pending.pop()
        if pid in seen:
            continue
        seen.add(pid)
        total += cpu.get(pid, 0.0)
        pending.extend(parents.get(pid, []))
    return total


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass
class BotProcess:
    """One bot process listening on 127.0.0.1:`port`; its output goes to `log_path`."""

    argv: list[str]
    env: dict[str, str]
    cwd: Path
    port: int
    log_path: Path
    probe: str  # the path that answers 200 once it is ready
    process: asyncio.subprocess.Process | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, within: float = 90) -> None:
        with self.log_path.open("ab") as out:
            self.process = await asyncio.create_subprocess_exec(
                *self.argv, cwd=self.cwd, env=self.env, stdout=out, stderr=out
            )
        deadline = time.monotonic() + within
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
            while True:
                if self.process.returncode is not None:
                    raise RuntimeError(
                        f"{self.argv[0]} exited with {self.process.returncode}; see {self.log_path}"
                    )
                try:
                    async with http.get(self.base + self.probe) as response:
                        if response.status == 200:
                            return
                except (aiohttp.ClientError, TimeoutError):
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"not ready within {within} s; see {self.log_path}")
                await asyncio.sleep(0.2)

    async def stop(self) -> None:
        if self.process is None or self.process.returncode is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.process.wait(), 30)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()


class RoundRobin:
    """One webhook address in front of several processes: each POST goes to the next one."""

    def __init__(self, targets: Sequence[str]) -> None:
        self.targets = itertools.cycle(targets)
        self.http: aiohttp.ClientSession | None = None
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> str:
        self.http = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0), timeout=aiohttp.ClientTimeout(total=120)
        )
        app = web.Application()
        app.router.add_post(WEBHOOK_PATH, self._forward)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        port = free_port()
        await web.TCPSite(self.runner, "127.0.0.1", port).start()
        self.url = f"http://127.0.0.1:{port}{WEBHOOK_PATH}"
        return self.url

    async def _forward(self, request: web.Request) -> web.Response:
        assert self.http is not None
        body = await request.read()
        headers = {SECRET_HEADER: request.headers.get(SECRET_HEADER, ""), "Content-Type": "application/json"}
        async with self.http.post(next(self.targets) + WEBHOOK_PATH, data=body, headers=headers) as answer:
            return web.Response(
                status=answer.status, body=await answer.read(), content_type="application/json"
            )

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
        if self.http is not None:
            await self.http.close()


# ---- the load ------------------------------------------------------------------------------------


@dataclass
class Options:
    chats: int
    every: float
    seconds: float
    database: str
    processes: int
    limit: float
    redis: str | None
    profile: bool
    fanout: int = 0


class Load:
    """N chats acting on one webhook address, paced; what they saw."""

    def __init__(
        self, fake: FakeBotApi, url: str, walk: Sequence[Act], smart: bool, options: Options
    ) -> None:
        self.fake = fake
        self.url = url
        self.walk = walk
        self.smart = smart  # read the keyboards (isiqbot); else the bare bot's fixed sequence
        self.options = options
        self.stats = Stats()
        self.update_ids = itertools.count(1)
        self.http: aiohttp.ClientSession | None = None

    async def run(self) -> float:
        """The load phase; its length in seconds (first action to the end of the last)."""
        chats = [Chat(FIRST_CHAT + i, PHONES[i % len(PHONES)]) for i in range(self.options.chats)]
        rng = random.Random(7)  # noqa: S311 (jitter, not a secret)
        connector = aiohttp.TCPConnector(limit=0)
        timeout = aiohttp.ClientTimeout(total=120)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as self.http:
            started = time.monotonic()
            deadline = started + self.options.seconds
            await asyncio.gather(
                *(self._chat(chat, started + rng.uniform(0, self.options.every), deadline) for chat in chats)
            )
            return time.monotonic() - started

    async def _chat(self, chat: Chat, first: float, deadline: float) -> None:
        next_at = first
        while True:
            pause = next_at - time.monotonic()
            if pause > 0:
                await asyncio.sleep(pause)
            if time.monotonic() >= deadline:
                return
            await self._act(chat)
            next_at = max(next_at + self.options.every, time.monotonic())  # behind: at once, no burst

    def _next(self, chat: Chat) -> tuple[Act, dict[str, Any]]:
        """The chat's next action and its update."""
        while True:
            act = self.walk[chat.pos]
            if self.smart and act.kind == "contact" and not chat.asked_contact:
                chat.pos += 1
                continue
            data = f"1|{act.value}"
            if act.kind == "press" and self.smart:
                found = chosen(chat.keyboard, act.value)
                if found is None:
                    if act.optional:
                        chat.pos += 1
                        continue
                    self.stats.restarts += 1
                    self.stats.missing[act.value] += 1
                    if self.stats.restarts <= MISSING_LOGGED:
                        log.warning(
                            "chat %s: no %r button among %s; starting over", chat.id, act.value, chat.keyboard
                        )
                    chat.pos = 0
                    continue
                data = found
            chat.pos = (chat.pos + 1) % len(self.walk)
            return act, self._update(chat, act, data)

    def _update(self, chat: Chat, act: Act, data: str) -> dict[str, Any]:
        person = {"id": chat.id, "is_bot": False, "first_name": "Elçin", "language_code": "az"}
        where = {"id": chat.id, "type": "private", "first_name": "Elçin"}
        update_id = next(self.update_ids)
        if act.kind == "press":
            shown = self.fake.chat(chat.id).messages
            return {
                "update_id": update_id,
                "callback_query": {
                    "id": f"{chat.id}-{update_id}",
                    "from": person,
                    "chat_instance": str(chat.id),
                    "message": {"message_id": max(len(shown), 1), "date": int(time.time()), "chat": where},
                    "data": data,
                },
            }
        content: dict[str, Any]
        if act.kind == "contact":
            content = {"contact": {"phone_number": chat.phone, "first_name": "Elçin", "user_id": chat.id}}
        else:
            content = {"text": act.value}
        message = {
            "message_id": next(chat.message_ids),
            "date": int(time.time()),
            "chat": where,
            "from": person,
        }
        return {"update_id": update_id, "message": message | content}

    async def _act(self, chat: Chat) -> None:
        assert self.http is not None
        act, update = self._next(chat)
        shown = self.fake.chat(chat.id)
        seen = len(shown.messages)
        body = json.dumps(update, ensure_ascii=False).encode()
        headers = {SECRET_HEADER: WEBHOOK_SECRET, "Content-Type": "application/json"}
        started = time.monotonic()
        ok = False
        for attempt in range(REDELIVERIES):
            if attempt:
                self.stats.redelivered += 1
                await asyncio.sleep(0.5)
            try:
                async with self.http.post(self.url, data=body, headers=headers) as response:
                    await response.read()
                    status = str(response.status)
            except (aiohttp.ClientError, TimeoutError) as exc:
                status = type(exc).__name__
            self.stats.statuses[status] += 1
            if status == "200":
                ok = True
                break
            if status.startswith("4"):
                break  # refused: a redelivery would be refused too
        if not ok:
            self.stats.gave_up += 1
        ended = time.monotonic()
        if len(shown.messages) <= seen:
            if await self.fake.wait_message(chat.id, seen, ANSWER_WAIT):
                self.stats.late += 1
                ended = shown.messages[seen].at
            else:
                self.stats.unanswered += 1
        if ok:
            self.stats.latencies.append(ended - started)
            self.stats.by_step.setdefault(
                act.value if act.kind in ("command", "press") else act.kind, []
            ).append(ended - started)
        answer = shown.messages[seen:]
        keyboards = [m.keyboard for m in answer if m.keyboard is not None]
        chat.keyboard = keyboards[-1] if keyboards else list(shown.keyboard)
        chat.asked_contact = any(m.asks_contact for m in answer)
        if act.value == "send" and any(FILED in m.text for m in answer):
            self.stats.filed += 1


async def settle(fake: FakeBotApi) -> None:
    """Wait until the fake has had no message for QUIET seconds (the outbox has sent), or SETTLE_MAX."""
    deadline = time.monotonic() + SETTLE_MAX
    last = -1
    while time.monotonic() < deadline:
        now = fake.counts.messages
        if now == last:
            return
        last = now
        await asyncio.sleep(QUIET)


# ---- one bot, one phase ---------------------------------------------------------------------------


@dataclass
class Result:
    name: str
    stats: Stats
    counts: Counts
    seconds: float
    cpu: float
    wall: float  # the time the CPU was measured over
    bench_cpu: float
    logs: list[Path] = field(default_factory=list)


async def measure(
    name: str,
    fake: FakeBotApi,
    procs: Sequence[BotProcess],
    walk: Sequence[Act],
    smart: bool,
    options: Options,
    db_url: str | None = None,
) -> Result:
    proxy: RoundRobin | None = None
    profiler: asyncio.subprocess.Process | None = None
    try:
        for proc in procs:  # one after another: the first migrates the database
            await proc.start()
        url = procs[0].base + WEBHOOK_PATH
        if len(procs) > 1:
            proxy = RoundRobin([p.base for p in procs])
            url = await proxy.start()
        if options.profile and smart:
            profiler = await start_profiler(procs[0])
        fake.reset()
        if db_url is not None and options.fanout:
            await queue_fanout(db_url, options.fanout)
        pids = [p.process.pid for p in procs if p.process is not None]
        cpu0, bench0, wall0 = tree_cpu(pids), own_cpu(), time.monotonic()
        load = Load(fake, url, walk, smart, options)
        seconds = await load.run()
        await settle(fake)
        cpu1, bench1, wall1 = tree_cpu(pids), own_cpu(), time.monotonic()
        counts = fake.counts
        if db_url is not None and options.fanout:
            fanned = sum(len(log.messages) for chat, log in fake.chats.items() if chat >= FANOUT_CHATS)
            print(
                f"fan-out: {fanned} of {options.fanout} delivered during the load "
                f"({fanned / (wall1 - wall0):.1f}/s; they are in the messages counted below)"
            )
        fake.reset()  # what comes now (the stop, the next bot's start) is no part of this measure
        if profiler is not None:
            profiler.send_signal(signal.SIGINT)  # py-spy writes its flame graph on SIGINT
            await asyncio.wait_for(profiler.wait(), 60)
            profiler = None
        return Result(
            name,
            load.stats,
            counts,
            seconds,
            cpu1 - cpu0,
            wall1 - wall0,
            bench1 - bench0,
            [p.log_path for p in procs],
        )
    finally:
        if profiler is not None and profiler.returncode is None:
            profiler.kill()
        if proxy is not None:
            await proxy.stop()
        for proc in procs:
            await proc.stop()


FANOUT_CHATS = 900_000_000  # the fan-out's chats: ids no walking chat has


async def queue_fanout(db_url: str, count: int) -> None:
    """`count` status messages to as many other chats, queued as a status change queues them: the
    worker sends them at the bulk rate while the chats walk (answers go first)."""
    from storage import outbox  # the bench's own process writes isiqbot's outbox directly
    from storage.db import Database

    db = Database(db_url)
    try:
        now = datetime.now(UTC)
        payload = {
            "key": "notify.status",
            "params": {"number": "TX-2026-000001", "status": {"$msg": "status.in_progress"}},
        }
        async with db.transaction() as session:
            for n in range(count):
                outbox.enqueue(
                    session,
                    channel="telegram",
                    user_key=str(FANOUT_CHATS + n),
                    kind="status",
                    payload=payload,
                    now=now,
                )
    finally:
        await db.dispose()
    print(f"fan-out: {count} status messages queued in the outbox before the load")


async def start_profiler(proc: BotProcess) -> asyncio.subprocess.Process | None:
    spy = shutil.which("py-spy") or (str(BIN / "py-spy") if (BIN / "py-spy").exists() else None)
    if spy is None:
        print(
            "--profile: py-spy is not installed; `.venv/bin/pip install py-spy`, then run again "
            "(or `py-spy record --pid <isiqbot pid> -o isiqbot.svg` during a run)"
        )
        return None
    assert proc.process is not None
    folded = proc.log_path.with_suffix(".folded")  # collapsed stacks: speedscope or flamegraph.pl read them
    argv = [spy, "record", "--pid", str(proc.process.pid), "--nonblocking", "--rate", "200"]
    argv += ["--format", "raw", "-o", str(folded)]
    print(f"--profile: py-spy records isiqbot (pid {proc.process.pid}) into {folded}")
    return await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.DEVNULL)


# ---- the bots' processes --------------------------------------------------------------------------


def isiqbot_setting_names() -> set[str]:
    """Every environment variable isiqbot's settings read: none is inherited from this shell."""
    names = set()
    for cls in vars(isiqbot_settings).values():
        if isinstance(cls, type) and issubclass(cls, isiqbot_settings.BaseSettings) and cls.model_config:
            prefix = str(cls.model_config.get("env_prefix") or "")
            for key, info in cls.model_fields.items():
                names.add(str(info.alias) if info.alias else (prefix + key).upper())
    return names | {"REDIS_URL"}


def isiqbot_env(fake_url: str, db_url: str, departments: Path, port: int, options: Options) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in isiqbot_setting_names()}
    env |= {
        "PYTHONIOENCODING": "utf-8",
        "DATABASE_URL": db_url,
        "TELEGRAM_BOT_TOKEN": ISIQBOT_TOKEN,
        "TELEGRAM_API_URL": fake_url,
        # What setWebhook registers (Telegram calls only https); the bench POSTs to the port directly.
        "TELEGRAM_WEBHOOK_URL": f"https://bench.invalid{WEBHOOK_PATH}",
        "TELEGRAM_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "DEPARTMENTS_FILE": str(departments),
        "STAFF_CHAT_ID": str(STAFF_CHAT_ID),
        "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
        "HTTP_HOST": "127.0.0.1",
        "HTTP_PORT": str(port),
        "LINK_SECRET": secrets.token_urlsafe(32),  # no SMS_GATEWAY_URL: the SMS go to the log
        "LOG_LEVEL": "INFO",
    }
    if options.redis:
        env["REDIS_URL"] = options.redis
    return env


async def create_pg(name: str) -> str:
    connection = await asyncpg.connect(PG_ADMIN)
    try:
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()
    return f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"


async def drop_pg(name: str) -> None:
    connection = await asyncpg.connect(PG_ADMIN)
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()


async def import_registry(env: dict[str, str], cwd: Path) -> None:
    done = await asyncio.create_subprocess_exec(
        str(ISIQBOT),
        "registry",
        "import",
        str(SAMPLE_CSV),
        cwd=cwd,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await done.communicate()
    if done.returncode != 0:
        raise RuntimeError(f"isiqbot registry import failed:\n{output.decode(errors='replace')}")


async def main(options: Options) -> None:
    folder = Path(tempfile.mkdtemp(prefix="isiqbot-storm-"))
    departments = folder / "departments.toml"
    shutil.copyfile(ROOT / "departments.example.toml", departments)
    fake = FakeBotApi(options.limit)
    fake_url = await fake.start()
    pg_name = f"bench_storm_{os.getpid()}" if options.database == "postgresql" else None
    results: list[Result] = []
    try:
        bare = []
        for n in range(options.processes):
            port = free_port()
            argv = [sys.executable, "-m", "bench.bare_bot", "--port", str(port), "--api", fake_url]
            argv += ["--secret", WEBHOOK_SECRET, "--token", BARE_TOKEN]
            bare.append(
                BotProcess(argv, dict(os.environ), ROOT, port, folder / f"bare-{n + 1}.log", "/healthz")
            )
        results.append(await measure("bare aiogram", fake, bare, BARE_WALK, False, options))

        if pg_name is not None:
            db_url = await create_pg(pg_name)
        else:
            db_url = f"sqlite+aiosqlite:///{folder / 'isiqbot.db'}"
        ours = []
        for n in range(options.processes):
            port = free_port()
            env = isiqbot_env(fake_url, db_url, departments, port, options)
            log_path = folder / f"isiqbot-{options.database}-{n + 1}.log"
            ours.append(BotProcess([str(ISIQBOT), "run"], env, folder, port, log_path, "/readyz"))
        await import_registry(ours[0].env, folder)
        results.append(await measure("isiqbot run", fake, ours, ISIQBOT_WALK, True, options, db_url))
    finally:
        await fake.stop()
        if pg_name is not None:
            with contextlib.suppress(OSError, asyncpg.PostgresError):
                await drop_pg(pg_name)
        for db_file in os.listdir(folder):  # the database goes; the logs stay
            if db_file.startswith("isiqbot.db"):
                os.unlink(folder / db_file)
    report(results, options)
    print(f"\nlogs: {folder}/  (isiqbot-{options.database}-<n>.log, bare-<n>.log)")
    for result in results:
        for path in result.logs:
            print(log_summary(path))


# ---- the report ------------------------------------------------------------------------------------


def report(results: Sequence[Result], options: Options) -> None:
    limit = f"{options.limit:g} messages/s per token" if options.limit else "none"
    procs = (
        f"{options.processes} processes behind a round-robin proxy" if options.processes > 1 else "1 process"
    )
    print(
        f"\noutage storm: {options.chats} chats, each acting every {options.every:g} s for "
        f"{options.seconds:g} s; {options.database}; {procs}; Bot API limit: {limit}"
        + (f"; REDIS_URL={options.redis}" if options.redis else "")
    )
    rows: list[tuple[str, list[str]]] = []

    def row(label: str, value: Any) -> None:
        rows.append((label, [value(r) for r in results]))

    def ms(q: float) -> Any:
        return lambda r: f"{1000 * percentile(r.stats.latencies, q):.0f}" if r.stats.latencies else "—"

    def per(n: Any) -> Any:
        return lambda r: f"{n(r) / r.stats.updates:.2f}" if r.stats.updates else "—"

    row("updates (200)", lambda r: str(r.stats.updates))
    row("updates/s", lambda r: f"{r.stats.updates / r.seconds:.1f}")
    row("latency p50 ms", ms(50))
    row("latency p90 ms", ms(90))
    row("latency p99 ms", ms(99))
    row("latency max ms", lambda r: f"{1000 * max(r.stats.latencies):.0f}" if r.stats.latencies else "—")
    row("messages/update", per(lambda r: r.counts.messages))
    row("  sends / edits", lambda r: f"{r.counts.sends} / {r.counts.edits}")
    row("  to people / staff groups", lambda r: f"{r.counts.to_private} / {r.counts.to_groups}")
    row(
        "other calls/update",
        per(lambda r: sum(r.counts.calls.values()) - r.counts.messages - r.counts.too_many),
    )
    row("429s", lambda r: str(r.counts.too_many))
    row(
        "non-200 / redelivered / gave up",
        lambda r: f"{non_200(r.stats)} / {r.stats.redelivered} / {r.stats.gave_up}",
    )
    row("late / unanswered", lambda r: f"{r.stats.late} / {r.stats.unanswered}")
    row("walk restarts", lambda r: str(r.stats.restarts))
    row("applications filed", lambda r: str(r.stats.filed) if r.name.startswith("isiqbot") else "—")
    row("CPU s (bot processes)", lambda r: f"{r.cpu:.2f}")
    row("CPU ms/update", per(lambda r: 1000 * r.cpu))
    row("CPU busy (of one core)", lambda r: f"{100 * r.cpu / r.wall:.0f}%")
    row("bench CPU s (driver+fake)", lambda r: f"{r.bench_cpu:.2f}")
    width = max(len(label) for label, _ in rows)
    print(f"{'':{width}}  " + "  ".join(f"{r.name:>14}" for r in results))
    for label, values in rows:
        print(f"{label:{width}}  " + "  ".join(f"{v:>14}" for v in values))
    if len(results) == 2 and all(r.stats.updates for r in results):
        bare, ours = results
        cpu = (ours.cpu / ours.stats.updates) / max(bare.cpu / bare.stats.updates, 1e-9)
        p99 = percentile(ours.stats.latencies, 99) / max(percentile(bare.stats.latencies, 99), 1e-9)
        print(f"isiqbot/bare: CPU per update ×{cpu:.1f}, p99 latency ×{p99:.1f}")
    for r in results:
        steps = ", ".join(
            f"{step} {1000 * percentile(values, 50):.0f}/{1000 * percentile(values, 99):.0f}"
            for step, values in r.stats.by_step.items()
        )
        print(f"{r.name}: latency p50/p99 ms by step: {steps}")
        statuses = {k: v for k, v in r.stats.statuses.items() if k != "200"}
        if statuses:
            print(f"{r.name}: webhook answers other than 200: {dict(statuses)}")
        if r.stats.missing:
            print(f"{r.name}: buttons missing when expected: {dict(r.stats.missing)}")


def non_200(stats: Stats) -> int:
    return sum(v for k, v in stats.statuses.items() if k != "200")


def percentile(values: Sequence[float], q: float) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def log_summary(path: Path, top: int = 6) -> str:
    """How many WARNING/ERROR lines a log has, and the most frequent ones (numbers folded)."""
    if not path.exists():
        return f"{path.name}: no log"
    levels: Counter[str] = Counter()
    lines: Counter[str] = Counter()
    tracebacks = 0
    with path.open(encoding="utf-8", errors="replace") as text:
        for line in text:
            if line.startswith("Traceback"):
                tracebacks += 1
            found = LOG_LINE.match(line.rstrip("\n"))
            if found:
                levels[found.group(1)] += 1
                folded = NUMBER.sub("N", found.group(3))[:140]
                lines[f"{found.group(1)} {found.group(2)}: {folded}"] += 1
    head = f"{path.name}: {dict(levels) or 'no warnings or errors'}" + (
        f", {tracebacks} tracebacks" if tracebacks else ""
    )
    return "\n".join([head, *(f"    {n:5d} × {line}" for line, n in lines.most_common(top))])


def parse(argv: Sequence[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chats", type=int, default=40, help="simulated chats (default 40)")
    parser.add_argument(
        "--every", type=float, default=3.0, help="seconds between a chat's actions (default 3)"
    )
    parser.add_argument("--seconds", type=float, default=30.0, help="length of the load (default 30)")
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument(
        "--processes", type=int, default=1, help="processes per bot behind one address (PostgreSQL)"
    )
    parser.add_argument(
        "--limit-per-second",
        type=float,
        default=None,
        help="the fake's messages a second per bot token, 0: none (default 30 with --processes > 1, else 0)",
    )
    parser.add_argument(
        "--redis", nargs="?", const=REDIS_URL, default=None, help=f"REDIS_URL for isiqbot ({REDIS_URL})"
    )
    parser.add_argument(
        "--profile", action="store_true", help="run py-spy on an isiqbot process during the load"
    )
    parser.add_argument(
        "--fanout",
        type=int,
        default=0,
        help="status messages queued in isiqbot's outbox just before the load, to other chats (default 0)",
    )
    args = parser.parse_args(argv)
    if args.processes > 1 and args.database != "postgresql":
        parser.error("--processes > 1 needs --database postgresql (processes share one database)")
    if args.chats < 1 or args.every <= 0 or args.seconds <= 0 or args.processes < 1:
        parser.error("--chats, --every, --seconds and --processes must be positive")
    limit = (
        args.limit_per_second if args.limit_per_second is not None else (30.0 if args.processes > 1 else 0.0)
    )
    return Options(
        args.chats,
        args.every,
        args.seconds,
        args.database,
        args.processes,
        limit,
        args.redis,
        args.profile,
        args.fanout,
    )


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(main(parse()))
