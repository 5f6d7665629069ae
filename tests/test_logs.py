"""Log lines never hold a full phone number, e-mail address or FİN, whoever writes them; as text or as
JSON (LOG_FORMAT), each names the update it was written for, and only that one."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import tempfile
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bot.app import Service, build
from bot.channels.telegram.connector import Telegram
from bot.channels.whatsapp.channel import log_ref
from bot.core import context, logs
from bot.core.context import bind, log_context
from bot.core.logs import redact
from bot.staff.desk import StaffDesk
from dialogs.events import Pressed
from dialogs.lifecycle import Status
from storage.db import Database
from tests.assembly import FAST, settings_in
from tests.chat import PLAIN, PLAIN_CODE, Chat, SmsRecorder, fill_residential
from tests.conftest import Clock
from tests.fake_telegram import TOKEN, FakeTelegram, TelegramUser
from tests.running import file_in_telegram, file_in_whatsapp, the_application
from tests.test_whatsapp import make_wa


@pytest.mark.parametrize(
    ("line", "kept", "gone"),
    [
        ("SMS to +994996510079 sent", "+994 99 ***-**-79", "996510079"),
        ("wa_id 994996510079 wrote", "+994 99 ***-**-79", "996510079"),
        ("typed 050 123 45 67", "+994 50 ***-**-67", "123 45 67"),
        ("typed 0501234567", "+994 50 ***-**-67", "1234567"),
        ("to elcin.m@example.az", "e***@example.az", "elcin.m@"),
        ("parameters ('M9CGRC9', 'Məmmədov')", "M******", "M9CGRC9"),
    ],
)
def test_personal_data_is_masked(line: str, kept: str, gone: str) -> None:
    assert kept in redact(line) and gone not in redact(line)


@pytest.mark.parametrize(
    "line",
    [
        "application TX-2026-000001 registered",
        "subscriber code 168808605066007",  # 15 digits: not a phone
        "update 123456789 handled in 0.0123456789 s",
        "wamid.HBgLOTk0OTk2NTEwMDc5FQIAEhgg",
        "listening on http://127.0.0.1:8080",
        "STATUS ACCEPTED",
    ],
)
def test_what_is_not_personal_stays_as_it_is(line: str) -> None:
    assert redact(line) == line


def test_the_database_drivers_stay_quiet_at_debug(capsys: pytest.CaptureFixture[str]) -> None:
    logs.setup("DEBUG")
    try:
        logging.getLogger("aiosqlite").debug("executing %s with ('+994996510079',)", "SELECT 1")
        logging.getLogger("isiqbot.test").debug("a line of ours to %s", "+994996510079")
    finally:
        logs.setup("WARNING")
    written = capsys.readouterr().err
    assert "executing" not in written  # the statement and its values are not written at all
    assert "a line of ours to +994 99 ***-**-79" in written


def test_a_log_file_gets_the_lines_masked_and_standard_error_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`isiqbot chat` logs to a file: the same format and the same masking as on standard error."""
    file = tmp_path / "data" / "isiqbot-chat.log"  # the folder is made
    logs.setup("INFO", file)
    try:
        logging.getLogger("isiqbot.test").info("SMS to %s for %s", "+994996510079", "TX-2026-000001")
        logging.getLogger("aiosqlite").info("executing with ('+994996510079',)")  # quiet at INFO too
    finally:
        logs.setup("WARNING")
    assert capsys.readouterr().err == ""
    (line,) = file.read_text(encoding="utf-8").splitlines()
    assert line.endswith(" INFO isiqbot.test: SMS to +994 99 ***-**-79 for TX-2026-000001")


# ---- LOG_FORMAT=json, and what each line is about ----------------------------------------------------

PHONE, EMAIL, FIN = "+994996510079", "elcin.m@example.az", "M9CGRC9"
SECRETS = ("996510079", "elcin.m@", FIN)


def json_lines(file: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in file.read_text(encoding="utf-8").splitlines()]


def test_json_lines_have_their_fields_and_mask_personal_data(tmp_path: Path) -> None:
    file = tmp_path / "isiqbot.log"
    logs.setup("INFO", file, fmt="json")
    try:
        log = logging.getLogger("isiqbot.test")
        log.info("SMS to %s, e-mail to %s, FİN %s", PHONE, EMAIL, FIN)
        try:
            raise ValueError(f"refused for 050 651 00 79, {EMAIL} and FİN {FIN}")
        except ValueError:
            log.exception("update failed\non two lines")
        with log_context(channel="telegram", update_id=42, application="TX-2026-000001"):
            log.warning("inside an update")
        with log_context(channel="whatsapp", update_id=PHONE):  # a value that quotes a person
            log.error("a wa_id as the update")
        logging.getLogger("aiosqlite").info("executing with ('%s',)", PHONE)  # quiet in JSON too
    finally:
        logs.setup("WARNING")
    written = file.read_text(encoding="utf-8")
    assert not any(secret in written for secret in SECRETS), written
    plain, failed, inside, quoted = json_lines(file)  # one object a line, the exception's too
    assert list(plain) == ["time", "level", "logger", "message"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", plain["time"])
    assert abs(datetime.fromisoformat(plain["time"]) - datetime.now(UTC)) < timedelta(minutes=1)  # UTC
    assert (plain["level"], plain["logger"]) == ("INFO", "isiqbot.test")
    assert plain["message"] == "SMS to +994 99 ***-**-79, e-mail to e***@example.az, FİN M******"
    assert list(failed) == ["time", "level", "logger", "message", "exc_info"]
    assert (failed["level"], failed["message"]) == ("ERROR", "update failed\non two lines")
    assert failed["exc_info"].startswith("Traceback (most recent call last):")
    assert "ValueError: refused for +994 50 ***-**-79, e***@example.az and FİN M******" in failed["exc_info"]
    assert inside["message"] == "inside an update"
    assert (inside["channel"], inside["update_id"], inside["application"]) == (
        "telegram",
        "42",
        "TX-2026-000001",
    )
    assert (quoted["channel"], quoted["update_id"]) == ("whatsapp", "+994 99 ***-**-79")


def test_a_text_line_ends_with_its_update(tmp_path: Path) -> None:
    file = tmp_path / "isiqbot.log"
    logs.setup("INFO", file)
    try:
        log = logging.getLogger("isiqbot.test")
        with log_context(channel="telegram", update_id=42):
            bind(application="TX-2026-000001")
            log.info("SMS to %s", PHONE)
        log.info("no update")
    finally:
        logs.setup("WARNING")
    inside, outside = file.read_text(encoding="utf-8").splitlines()
    assert inside.endswith(" INFO isiqbot.test: SMS to +994 99 ***-**-79 [telegram 42 TX-2026-000001]")
    assert outside.endswith(" INFO isiqbot.test: no update")


def test_a_failure_logged_after_its_update_ended_still_names_it(tmp_path: Path) -> None:
    """The web server's middleware logs what escaped a webhook handler, outside the handler's block."""
    file = tmp_path / "isiqbot.log"
    logs.setup("INFO", file, fmt="json")
    try:
        try:
            with log_context(channel="telegram", update_id=7):
                bind(application="TX-2026-000002")
                raise RuntimeError("a bug")
        except RuntimeError:
            assert context.current() == {}
            logging.getLogger("bot.web.server").exception("POST /telegram/webhook failed")
    finally:
        logs.setup("WARNING")
    (line,) = json_lines(file)
    assert (line["channel"], line["update_id"], line["application"]) == ("telegram", "7", "TX-2026-000002")
    assert "RuntimeError: a bug" in line["exc_info"]


def test_an_update_s_context_ends_with_it(tmp_path: Path) -> None:
    file = tmp_path / "isiqbot.log"
    logs.setup("INFO", file, fmt="json")
    try:
        log = logging.getLogger("isiqbot.test")
        bind(application="TX-2026-000009")  # outside an update: it would never end, so nothing
        with log_context(channel="telegram", update_id=1):
            log.info("first")
            with log_context(channel="telegram", update_id="1"):  # the service, entered again: no change
                bind(application="TX-2026-000001")
            log.info("first, registered")
        log.info("between")
        with log_context(channel="telegram", update_id=2):
            log.info("second")
    finally:
        logs.setup("WARNING")
    fields = {line["message"]: {k: line.get(k) for k in context.FIELDS} for line in json_lines(file)}
    assert fields == {
        "first": {"channel": "telegram", "update_id": "1", "application": None},
        "first, registered": {"channel": "telegram", "update_id": "1", "application": "TX-2026-000001"},
        "between": {"channel": None, "update_id": None, "application": None},
        "second": {"channel": "telegram", "update_id": "2", "application": None},
    }


async def test_concurrent_updates_keep_their_own_context(tmp_path: Path) -> None:
    """Updates handled at once, in tasks, interleaved, each binding its application at another moment;
    a task an update starts (its answers, sent later) keeps that update's context, and nothing else."""
    file = tmp_path / "isiqbot.log"
    log = logging.getLogger("isiqbot.test")
    turns = [asyncio.Event() for _ in range(6)]

    async def aside(n: int) -> None:  # a task of the update's own binds something: not seen by the update
        bind(application="TX-2026-999999")
        log.info("update %s, aside", n)

    async def later(n: int) -> None:
        await asyncio.sleep(0.01)  # runs on after its update's block has ended
        log.info("update %s, its answer", n)

    async def update(n: int) -> None:
        with log_context(channel="whatsapp", update_id=f"wamid.{n}"):
            await asyncio.create_task(aside(n))
            for turn in range(n, 6, 2):  # update 0 at turns 0, 2, 4; update 1 at turns 1, 3, 5
                if turn:
                    await turns[turn - 1].wait()
                if turn == n + 2:
                    bind(application=f"TX-2026-00000{n}")
                log.info("update %s, turn %s", n, turn)
                turns[turn].set()
            answer = asyncio.create_task(later(n))
        log.info("update %s, done", n)
        await answer

    logs.setup("INFO", file, fmt="json")
    try:
        with log_context(channel="telegram"):  # around both: each update changes its own copy
            await asyncio.gather(update(0), update(1))
            log.info("between")
        log.info("after both")
    finally:
        logs.setup("WARNING")
    fields = {line["message"]: {k: line.get(k) for k in context.FIELDS} for line in json_lines(file)}
    turns_logged = [message for message in fields if "turn" in message]
    assert turns_logged == [f"update {t % 2}, turn {t}" for t in range(6)]  # really interleaved
    for n in (0, 1):
        update_id, number = f"wamid.{n}", f"TX-2026-00000{n}"
        assert fields[f"update {n}, turn {n}"] == {
            "channel": "whatsapp",
            "update_id": update_id,
            "application": None,
        }
        assert fields[f"update {n}, aside"] == {
            "channel": "whatsapp",
            "update_id": update_id,
            "application": "TX-2026-999999",
        }
        for turn in (n + 2, n + 4):
            expected = {"channel": "whatsapp", "update_id": update_id, "application": number}
            assert fields[f"update {n}, turn {turn}"] == expected
        assert fields[f"update {n}, its answer"] == expected
        assert fields[f"update {n}, done"] == {"channel": "telegram", "update_id": None, "application": None}
    assert fields["between"] == {"channel": "telegram", "update_id": None, "application": None}
    assert fields["after both"] == {"channel": None, "update_id": None, "application": None}
    assert len(fields) == 14


# ---- through the service as `isiqbot run` builds it --------------------------------------------------


@pytest.fixture
async def built(
    fake: FakeTelegram, sample_db: Database, clock: Clock, tmp_path: Path
) -> AsyncIterator[Service]:
    """The service with Telegram polling the fake Bot API (as tests/test_outbox.py and test_whatsapp.py)."""
    settings = settings_in(tmp_path / "settings", TELEGRAM_BOT_TOKEN=TOKEN, TELEGRAM_API_URL=fake.url)
    service = await build(settings, db=sample_db, clock=clock, code_sms=SmsRecorder(), pace=FAST)
    telegram = service.channels["telegram"]
    assert isinstance(telegram, Telegram)
    stop = asyncio.Event()
    polling = asyncio.create_task(telegram.channel.poll(stop, long_poll_seconds=1))
    yield service
    stop.set()
    polling.cancel()
    await asyncio.gather(polling, return_exceptions=True)
    await service.close()


async def test_the_service_s_lines_name_their_update_and_application(
    built: Service,
    fake: FakeTelegram,
    sample_db: Database,
    clock: Clock,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pushed: list[int] = []  # the ids of the updates the person sends, in order
    push = fake.push

    def recorded(update: dict[str, Any], update_id: int | None = None) -> int:
        pushed.append(push(update, update_id))
        return pushed[-1]

    monkeypatch.setattr(fake, "push", recorded)
    file = tmp_path / "isiqbot.log"
    logs.setup("INFO", file, fmt="json")
    try:
        user = TelegramUser(fake, 501)
        await file_in_telegram(user, PLAIN, PLAIN_CODE)
        registering = pushed[-1]  # the press on "Send"
        number = (await the_application(sample_db)).number
        fake.blocked.add(501)  # the next answer fails: the channel logs it, after the service's part
        await user.text("/start")
        blocked_at = pushed[-1]
        await StaffDesk(sample_db, clock=clock).set_status(number, Status.IN_PROGRESS, "staff:1", None)
        await built.worker.drain()  # the news cannot reach the chat either: the outbox logs that
    finally:
        logs.setup("WARNING")
    lines = json_lines(file)
    (registered,) = [line for line in lines if line["message"].startswith(f"application {number} registered")]
    assert registered["logger"] == "bot.core.service"
    assert (registered["channel"], registered["update_id"]) == ("telegram", str(registering))
    assert registered["application"] == number
    (in_update,) = [line for line in lines if line["message"].startswith("Telegram chat unreachable")]
    # the channel's line, after the service returned; the previous update's application is not on it
    assert (in_update["logger"], in_update["channel"]) == ("bot.channels.telegram.client", "telegram")
    assert in_update["update_id"] == str(blocked_at) and "application" not in in_update
    # the outbox worker's lines: the message's channel and application, no update
    by_sms = [line for line in lines if line["logger"] == "bot.notify.sms"]
    assert len(by_sms) == 2  # the registration's SMS, and the news that could not reach the chat
    assert all((line["channel"], line.get("application")) == ("sms", number) for line in by_sms), by_sms
    (failed,) = [line for line in lines if "failed for good" in line["message"]]
    assert (failed["logger"], failed["channel"], failed["application"]) == (
        "bot.notify.outbox",
        "telegram",
        number,
    )
    assert not any("update_id" in line for line in [*by_sms, failed])
    assert not any(secret in json.dumps(lines) for secret in ("996510079", PLAIN_CODE[:-3]))


async def test_the_service_names_the_update_whichever_channel_calls_it(chat: Chat, tmp_path: Path) -> None:
    """`Conversations.handle` sets the context itself: the terminal (and any caller) gets it too."""
    await fill_residential(chat)
    file = tmp_path / "isiqbot.log"
    logs.setup("INFO", file, fmt="json")
    try:
        await chat.send(Pressed("send", chat.rev), update_id="update-77")
    finally:
        logs.setup("WARNING")
    (registered,) = [line for line in json_lines(file) if " registered " in line["message"]]
    assert (registered["channel"], registered["update_id"]) == (chat.subscriber.channel, "update-77")
    assert registered["application"] == registered["message"].split()[1]  # "application TX-… registered"


async def test_a_whatsapp_update_names_its_message(
    sample_db: Database, clock: Clock, fake: FakeTelegram
) -> None:
    """Its lines while it is handled, and those of its answers, sent after the webhook is acknowledged."""
    with tempfile.TemporaryDirectory() as folder:
        file = Path(folder) / "isiqbot.log"
        async for wa in make_wa(sample_db, clock, fake):
            logs.setup("INFO", file, fmt="json")
            try:
                user = wa.user("994996510079")
                await file_in_whatsapp(user, "99 651 00 79", PLAIN_CODE)
                number = (await the_application(sample_db)).number
                wa.graph.fail_next(400, 131026, "Message undeliverable")  # the next answer is refused
                await user.text("Salam", wamid="wamid.HBgMOTk0OTk2NTEwMDc5")
            finally:
                logs.setup("WARNING")
        lines = json_lines(file)
    (registered,) = [line for line in lines if line["message"].startswith(f"application {number} registered")]
    assert registered["channel"] == "whatsapp" and registered["application"] == number
    assert re.fullmatch(r"wa\.[0-9a-f]{16}", registered["update_id"])  # the press on "Send", digested
    (refused,) = [line for line in lines if line["message"].startswith("WhatsApp refused an answer")]
    assert (refused["channel"], refused["update_id"]) == ("whatsapp", log_ref("wamid.HBgMOTk0OTk2NTEwMDc5"))
    assert "application" not in refused  # the application of an earlier update stayed with it
    assert "996510079" not in json.dumps(lines)  # nor is the number in the fake's wamids (IN994…)
