"""`isiqbot run` as its own process and the world around it, for the acceptance and chaos tests.

Everything outside the process stands on 127.0.0.1: the Bot API (`FakeTelegram`), the Graph API
(`FakeGraph`), an HTTP SMS gateway and a real SMTP server. `Isiqbot` configures every channel
against them through the environment, as an operator would.
"""

from __future__ import annotations

import asyncio
import inspect
import signal
import subprocess
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
from sqlmodel import select

from locales import Msg, translate
from storage import registry
from storage.db import Database
from storage.models import Application
from tests.assembly import EXAMPLE_DEPARTMENTS
from tests.fake_graph import APP_SECRET, GRAPH_TOKEN, PHONE_NUMBER_ID, VERIFY_TOKEN, FakeGraph, WaUser
from tests.fake_telegram import TOKEN, FakeTelegram, StaffMember, TelegramUser
from tests.outside import Gateway, Mailbox
from tests.processes import ISIQBOT, free_port, isiqbot_env, run_isiqbot

BAKI, FALLBACK = -1001000000001, -1009999999999
RAUF = 100001  # listed staff of the Baku department in departments.example.toml
SMS_TOKEN = "acceptance-sms-token"
T = TypeVar("T")


def t(key: str, **params: Any) -> str:
    """A message as an Azerbaijani-speaking person sees it."""
    return translate(Msg(key, params), "az")


async def eventually(check: Callable[[], T | Awaitable[T]], what: str, within: float = 30) -> T:
    """The first truthy value of `check` (awaited when it is a coroutine), polled for `within` seconds."""
    deadline = time.monotonic() + within
    while True:
        value = check()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within} s: {what}")
        await asyncio.sleep(0.05)


@dataclass
class World:
    """Everything outside the process."""

    telegram: FakeTelegram
    graph: FakeGraph
    sms: Gateway
    mail: Mailbox

    def card(self, chat_id: int, number: str) -> dict[str, Any]:
        """The application's card in a staff chat: the message with the buttons that names the number."""
        for message in self.telegram.sent_to(chat_id):
            markup = message.get("reply_markup") or {}
            if "inline_keyboard" in markup and number in str(message.get("text") or message.get("caption")):
                return message
        return {}

    def buttons(self, chat_id: int, number: str) -> dict[str, str]:
        """The card's buttons as staff see them now: the card is edited in place after each change."""
        card = self.card(chat_id, number)
        markup = card["reply_markup"]
        for edit in self.telegram.edits:
            same = (int(edit["chat_id"]), int(edit["message_id"])) == (chat_id, card["message_id"])
            if same and edit.get("reply_markup"):
                markup = edit["reply_markup"]
        return {b["text"]: b["callback_data"] for row in markup["inline_keyboard"] for b in row}

    def prompt(self, chat_id: int) -> dict[str, Any]:
        """The last question to a staff member that waits for their reply (the result, a message)."""
        for message in reversed(self.telegram.sent_to(chat_id)):
            if "force_reply" in str(message.get("reply_markup")):
                return message
        return {}

    def sms_saying(self, phone: str, words: str) -> list[str]:
        return [text for text in self.sms.texts_to(phone) if words in text]

    def reminders(self, chat_id: int) -> list[dict[str, Any]]:
        return [m for m in self.telegram.sent_to(chat_id) if str(m.get("text", "")).startswith("⏰")]

    def telegram_texts(self, chat_id: int) -> list[str]:
        return [str(m.get("text") or m.get("caption") or "") for m in self.telegram.sent_to(chat_id)]

    def whatsapp_texts(self, to: str) -> list[str]:
        texts = []
        for message in self.graph.sent_to(to):
            body = message.get(message["type"], {})
            texts.append(str(body.get("body") or body.get("caption") or body.get("name") or message))
        return texts


class Isiqbot:
    """`isiqbot run` in its own process, configured against the world through its environment."""

    def __init__(self, tmp_path: Path, world: World, db_url: str, **settings: str) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        departments = tmp_path / "departments.toml"
        if not departments.exists():
            departments.write_text(EXAMPLE_DEPARTMENTS, encoding="utf-8")
        self.env = (
            isiqbot_env(
                tmp_path,
                DATABASE_URL=db_url,
                TELEGRAM_BOT_TOKEN=TOKEN,
                TELEGRAM_API_URL=world.telegram.url,
                DEPARTMENTS_FILE=str(departments),
                STAFF_CHAT_ID=str(FALLBACK),
                WHATSAPP_TOKEN=GRAPH_TOKEN,
                WHATSAPP_PHONE_NUMBER_ID=PHONE_NUMBER_ID,
                WHATSAPP_APP_SECRET=APP_SECRET,
                WHATSAPP_VERIFY_TOKEN=VERIFY_TOKEN,
                WHATSAPP_API_URL=world.graph.url,
                SMS_GATEWAY_URL=world.sms.url,
                SMS_GATEWAY_TOKEN=SMS_TOKEN,
                # The fakes answer from the test's own process: on a busy machine an answer may be late,
                # and a timeout would send the SMS again (at least once is the gateway's contract).
                SMS_GATEWAY_TIMEOUT="60",
                SMTP_HOST="127.0.0.1",
                SMTP_PORT=str(world.mail.port),
                SMTP_FROM="bot@azerisiq.az",
                SMTP_SECURITY="none",
                PUBLIC_BASE_URL=self.base,
                HTTP_PORT=str(self.port),
                LOG_LEVEL="INFO",
            )
            | settings
        )
        self.tmp_path = tmp_path
        self.log_path = tmp_path / f"isiqbot-{self.port}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def import_registry(self) -> None:
        """What an operator does once: load the billing registry."""
        result = run_isiqbot(self.tmp_path, "registry", "import", str(registry.SAMPLE_CSV), env=self.env)
        assert result.returncode == 0, result.stderr

    def spawn(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [ISIQBOT, "run"], cwd=self.tmp_path, env=self.env, stdout=log, stderr=log
            )

    async def start(self, probe: str = "/readyz") -> None:
        """Start it and wait until `probe` answers 200 (`/healthz`: only until it listens)."""
        self.spawn()
        deadline = time.monotonic() + 60
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
            while True:
                assert self.process is not None
                if self.process.poll() is not None:
                    raise AssertionError(f"isiqbot run exited with {self.process.returncode}:\n{self.log}")
                try:
                    async with http.get(self.base + probe) as response:
                        if response.status == 200:
                            return
                except (aiohttp.ClientError, TimeoutError):
                    pass  # not listening yet
                if time.monotonic() > deadline:
                    raise AssertionError(f"isiqbot run not ready within 60 s; its log:\n{self.log}")
                await asyncio.sleep(0.1)

    async def stop(self) -> int:
        """SIGTERM, as a service manager stops it; its exit code."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(self.process.wait, 30)
        return code

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    @property
    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace") if self.log_path.exists() else ""

    async def get(self, path: str) -> tuple[int, str]:
        async with aiohttp.ClientSession() as http, http.get(self.base + path) as response:
            return response.status, await response.text()


async def the_application(db: Database) -> Application:
    async with db.transaction() as session:
        found = (await session.scalars(select(Application).order_by(Application.id.desc()))).first()
    assert found is not None
    return found


async def file_in_telegram(user: TelegramUser, phone: str, code: str, email: str | None = None) -> None:
    """The shortest residential application in Telegram, from /start to "Send"."""
    assert "Azərişıq" in await user.text("/start")
    await user.press(t("menu.new"))
    await user.contact(phone)
    await choose_account(user, code)
    await user.press(t("reason.no_power"))
    if any(data.endswith("|dup:new") for _, data in user.buttons()):  # one is open on the account
        await user.press(t("duplicate.new"))
    await user.text("Mənzildə səhərdən işıq yoxdur, qonşularda var.")
    await user.press(t("details.continue"))
    if email is not None:
        await user.text(email)  # typed at the contacts: the e-mail address
    await user.press(t("contacts.ok"))
    assert "qeydə alındı" in await user.press(t("review.send"))


async def choose_account(user: TelegramUser | WaUser, code: str) -> None:
    """Press the account with `code` when the dialog asks; a phone with one account is not asked."""
    if isinstance(user, TelegramUser):
        if any("|acc:" in data for _, data in user.buttons()):
            await user.press(code)
    elif any("|acc:" in option_id for option_id, _ in user.options()):
        await user.press(code)


def whatsapp_user(world: World, service: Isiqbot, wa_id: str) -> WaUser:
    """A WhatsApp user posting signed webhooks to the process; each step waits for the answers."""
    user = WaUser(world.graph, f"{service.base}/whatsapp/webhook", wa_id)

    async def answered() -> None:
        await eventually(lambda: len(world.graph.sent_to(user.key)) > user.seen, "a WhatsApp answer")
        count = -1
        while count != len(world.graph.sent_to(user.key)):  # all of this step's answers, which
            count = len(world.graph.sent_to(user.key))  # leave at WhatsApp's pace of 1 a second
            await asyncio.sleep(1.2)

    user.settle = answered
    return user


async def file_in_whatsapp(user: WaUser, own_number: str, code: str) -> None:
    """The shortest residential application in WhatsApp, from "Salam" to "Send"."""
    assert "Azərişıq" in await user.text("Salam")
    await user.press("new")
    await user.press(own_number)
    await choose_account(user, code)
    await user.press("reason:no_power")
    if any(option_id.endswith("dup:new") for option_id, _ in user.options()):  # one is open on the account
        await user.press("dup:new")
    await user.text("Mənzildə səhərdən işıq yoxdur, qonşularda var.")
    await user.press("done")
    await user.press("ok")
    assert "qeydə alındı" in await user.press("send")


async def staff_close(world: World, staff: StaffMember, number: str, result: str) -> None:
    """Completed, and the result written in reply to the bot's question."""
    done = t("staff.btn_done")  # on the card once the work has started (the card is edited then)
    await staff.press(await eventually(lambda: world.buttons(BAKI, number).get(done), "the Completed button"))
    prompt = await eventually(lambda: world.prompt(BAKI), "the question for the result")
    await staff.text(result, reply_to=prompt["message_id"])
