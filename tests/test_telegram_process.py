"""`isiqbot run` with a Telegram token, as its own process: killed mid-update, it handles the update once."""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

from tests.fake_telegram import TOKEN, FakeTelegram, TelegramUser
from tests.processes import ISIQBOT, free_port, isiqbot_env, run_isiqbot


def bot_env(tmp_path: Path, api_url: str, token: str = TOKEN) -> dict[str, str]:
    return isiqbot_env(
        tmp_path, "bot.db", TELEGRAM_BOT_TOKEN=token, TELEGRAM_API_URL=api_url, HTTP_PORT=str(free_port())
    )


def start_bot(tmp_path: Path, api_url: str) -> subprocess.Popen[bytes]:
    env = bot_env(tmp_path, api_url)
    return subprocess.Popen([ISIQBOT, "run"], cwd=tmp_path, env=env, stderr=subprocess.DEVNULL)


async def wait_for(condition, within: float = 30) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError
        await asyncio.sleep(0.05)


def stored(tmp_path: Path) -> tuple[list[str], str]:
    with sqlite3.connect(tmp_path / "bot.db") as db:
        ids = [row[0] for row in db.execute("SELECT update_id FROM processed_update ORDER BY update_id")]
        [(state,)] = db.execute("SELECT state FROM conversation WHERE user_key = '601'")
    return ids, json.loads(state)["step"]


async def test_killed_between_storing_and_answering_then_restarted(
    tmp_path: Path, fake: FakeTelegram
) -> None:
    user = TelegramUser(fake, 601)
    bot = start_bot(tmp_path, fake.url)
    try:
        await wait_for(lambda: any(m == "getUpdates" for m, _ in fake.calls))
        assert "Azərişıq" in await user.text("/start")
        [(_, new_application)] = [b for b in user.buttons() if "Yeni müraciət" in b[0]]

        fake.stalled.add("sendmessage")  # the answer to the next update hangs on the network …
        pressed = fake.push(
            {
                "callback_query": {
                    "id": "cb-kill",
                    "from": user._sender(),
                    "chat_instance": "601",
                    "message": {"message_id": 1, "date": 0, "chat": {"id": 601, "type": "private"}},
                    "data": new_application,
                }
            }
        )
        await wait_for(lambda: fake.stalled_calls > 0)
        bot.send_signal(signal.SIGKILL)  # … and the process dies there, its update stored, not confirmed
        bot.wait(timeout=10)
    finally:
        if bot.poll() is None:
            bot.kill()
    assert fake.confirmed_offset <= pressed
    ids, step = stored(tmp_path)
    assert step == "ask_phone" and str(pressed) in ids

    fake.stalled.clear()
    before = len(fake.sent_to(601))
    restarted = start_bot(tmp_path, fake.url)
    try:
        await fake.processed(pressed, within=30)  # Telegram delivers the update again; it is confirmed now
    finally:
        restarted.send_signal(signal.SIGTERM)
        restarted.wait(timeout=20)
    ids_after, step_after = stored(tmp_path)
    assert ids_after == ids and step_after == "ask_phone"  # handled once: no second effect
    resent = [m["text"] for m in fake.sent_to(601)[before:]]
    # and the person sees where they are
    assert any("Abonent məlumatlarınızı tapmaq üçün" in text for text in resent)


async def test_a_wrong_token_stops_the_start_with_a_clear_message(tmp_path: Path, fake: FakeTelegram) -> None:
    env = bot_env(tmp_path, fake.url, token="123:wrong")
    result = await asyncio.to_thread(run_isiqbot, tmp_path, "run", env=env, timeout=60)
    assert result.returncode == 1
    assert "Telegram refused to start" in result.stderr and "Traceback" not in result.stderr
    assert "123:wrong" not in result.stderr  # the token never reaches the log
