"""Telegram's sending budget: one per bot token across processes (Redis), answers before bulk news,
a 429 that pauses every sender, and a process that keeps pacing itself while Redis is away.

The windows are shrunk or stretched so each check is about counts, not clocks: a send that the budget
must hold back is shown not to leave within half a second of a ten-second window.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time

import pytest
from limits import RateLimitItemPerMinute, RateLimitItemPerSecond

from bot.channels.telegram.limits import Limits, Priority, SendingBudget, storage_for
from bot.core.settings import Settings, SettingsError

REDIS_URL = os.environ.get("ISIQBOT_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
_bots = itertools.count(int(os.getpid()) * 1000)
TEN_IN_TEN = Limits(
    everyone=RateLimitItemPerSecond(10, 10),
    private=RateLimitItemPerSecond(100),
    group=RateLimitItemPerSecond(100),
    reserve=4,
)
HELD = 0.5  # long enough to see a send held back, far shorter than the window that holds it


def bot_id() -> str:
    """A bot of its own for each test: Redis keeps the windows between runs."""
    return str(next(_bots))


async def goes(budget: SendingBudget, chat_id: int, priority: Priority = Priority.ANSWER) -> bool:
    """Whether one message to `chat_id` may leave now (within HELD seconds)."""
    try:
        await asyncio.wait_for(budget.acquire(chat_id, priority), HELD)
    except TimeoutError:
        return False
    return True


async def test_every_process_of_one_bot_shares_one_budget_through_redis() -> None:
    bot = bot_id()
    first = SendingBudget(bot, storage_for(REDIS_URL), TEN_IN_TEN)
    second = SendingBudget(bot, storage_for(REDIS_URL), TEN_IN_TEN)  # another process's
    for chat in range(5):
        assert await goes(first, 100 + chat)
        assert await goes(second, 200 + chat)
    assert not await goes(first, 300)  # the bot's 10 are spent, by both together
    assert not await goes(second, 301)
    other = SendingBudget(bot_id(), storage_for(REDIS_URL), TEN_IN_TEN)
    assert await goes(other, 300)  # another bot token has its own


async def test_answers_go_before_bulk_news() -> None:
    budget = SendingBudget(bot_id(), limits=TEN_IN_TEN)
    for chat in range(6):
        assert await goes(budget, chat, Priority.BULK)
    assert not await goes(budget, 50, Priority.BULK)  # the last 4 are kept for answers …
    for chat in range(4):
        assert await goes(budget, 60 + chat, Priority.ANSWER)  # … which go at once
    assert not await goes(budget, 70, Priority.ANSWER)


async def test_paid_broadcasts_give_bulk_news_a_budget_of_its_own() -> None:
    budget = SendingBudget(bot_id(), limits=TEN_IN_TEN, paid_broadcast_mps=1000)
    assert budget.paid_broadcast
    for chat in range(30):
        assert await goes(budget, chat, Priority.BULK)
    for chat in range(10):  # the free budget is all the answers'
        assert await goes(budget, 100 + chat, Priority.ANSWER)


async def test_a_429_pauses_every_send_of_the_bot_in_every_process() -> None:
    bot = bot_id()
    first = SendingBudget(bot, storage_for(REDIS_URL), TEN_IN_TEN)
    second = SendingBudget(bot, storage_for(REDIS_URL), TEN_IN_TEN)
    await first.pause(5)
    assert not await goes(second, 1)
    assert not await goes(first, 2, Priority.BULK)
    assert await goes(SendingBudget(bot_id(), storage_for(REDIS_URL), TEN_IN_TEN), 1)


async def at_the_start_of_a_window(seconds: int) -> None:
    """Wait for the next `seconds`-long window to open. A private chat's window is a counter over
    windows laid end to end from the epoch, weighted across the boundary; a burst that ended just
    before a boundary would count less a moment after it, and a check held for HELD could pass."""
    await asyncio.sleep(seconds - time.time() % seconds + 0.05)


async def test_a_private_chat_and_a_group_keep_their_own_windows() -> None:
    budget = SendingBudget(bot_id())  # Telegram's own limits
    await at_the_start_of_a_window(Limits().private.get_expiry())
    for _ in range(5):
        assert await goes(budget, 42, Priority.BULK)  # a short burst of news to one person …
    assert not await goes(budget, 42, Priority.BULK)  # … then about one a second
    assert await goes(budget, 43, Priority.BULK)  # another person is not held back
    assert await goes(budget, 42)  # an answer to what the person just did is not held back
    group = SendingBudget(bot_id(), limits=Limits(group=RateLimitItemPerMinute(20)))
    for _ in range(20):
        assert await goes(group, -1001)
    assert not await goes(group, -1001)  # 20 a minute into one group


async def test_with_redis_away_a_process_paces_itself(caplog: pytest.LogCaptureFixture) -> None:
    budget = SendingBudget(bot_id(), storage_for("redis://127.0.0.1:1/0"), TEN_IN_TEN)
    for chat in range(10):
        assert await goes(budget, chat)  # late rather than lost …
    assert not await goes(budget, 99)  # … and never unpaced
    assert "Redis unavailable" in caplog.text
    await budget.pause(0)  # nowhere to record a pause: it waits the second out itself


@pytest.mark.parametrize(
    ("name", "value"),
    [("REDIS_URL", "http://127.0.0.1:6379"), ("TELEGRAM_PAID_BROADCAST_MPS", "0")],
)
def test_a_wrong_sharing_setting_is_named(tmp_path: object, name: str, value: str) -> None:
    from pathlib import Path

    env = Path(str(tmp_path)) / ".env"
    env.write_text(f"{name}={value}\n", encoding="utf-8")
    with pytest.raises(SettingsError, match=name):
        Settings(env)


async def test_this_process_sweeps_its_windows_once_a_second_not_after_every_send(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    handed = 0
    real = asyncio.to_thread

    async def counted(*args: object, **kwargs: object) -> object:
        nonlocal handed
        handed += 1
        return await real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(asyncio, "to_thread", counted)
    budget = SendingBudget(bot_id())
    for chat in range(20):
        assert await goes(budget, -1000 - chat)  # 20 groups: 21 exact windows to sweep
        await asyncio.sleep(0.01)  # time enough for a sweep to end before the next send
    assert 1 <= handed <= 21  # one sweep (a thread hop per window), not one after each of 20 sends
