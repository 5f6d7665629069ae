"""Telegram's sending limits, one budget per bot token however many processes send for it.

Telegram meters a bot by its token: about 30 messages a second in all, about 1 a second per private
chat (short bursts allowed) and 20 a minute per group. Every send waits its turn here instead of
earning a 429. The windows are kept by `limits` (moving windows): in Redis when `REDIS_URL` is set, so
every `isiqbot run` process behind one webhook address shares them; in memory for a single process.

Answers to a person in a dialog go first: the outbox's bulk news takes a turn only while a reserve of
the second's budget is left for answers. A 429 pauses every send of the token, in every process, for
its `retry_after`. With Telegram's paid broadcasts enabled (`TELEGRAM_PAID_BROADCAST_MPS`), bulk news
has a budget of its own at that rate, and its sends ask for `allow_paid_broadcast`.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass, field
from enum import IntEnum

from limits import RateLimitItem, RateLimitItemPerMinute, RateLimitItemPerSecond
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter, SlidingWindowCounterRateLimiter
from limits.errors import StorageError

log = logging.getLogger(__name__)
SHORTEST_WAIT = 0.01  # a window that reopens "now" is polled again after this, not at once


class Priority(IntEnum):
    ANSWER = 0  # what a person waits for: the answer to a message or a press, a held answer
    BULK = 1  # news the outbox fans out: status changes, staff cards, reminders


@dataclass(frozen=True, slots=True)
class Limits:
    """The windows; the defaults are Telegram's. Tests of flows, not of limits, widen them."""

    # Telegram's 30 a second, less a margin: a message is counted here when it may go and there when
    # it arrives, and a moment between the two would let a 31st into Telegram's second.
    everyone: RateLimitItem = field(default_factory=lambda: RateLimitItemPerSecond(27))
    # About one a second, in bursts of a few: an answer of two messages goes at once.
    private: RateLimitItem = field(default_factory=lambda: RateLimitItemPerSecond(5, 5))
    group: RateLimitItem = field(default_factory=lambda: RateLimitItemPerMinute(20))
    reserve: int = 9  # of `everyone`'s window, kept for answers: bulk news waits below it


class LocalWindows(MemoryStorage):
    """`limits`' memory storage, its sweep of expired entries run at most once a second.

    The library starts a sweep after every hit, handing each key's entries to a thread; in the storm
    bench (`bench/storm.py --profile`) that was a tenth of the process's time. An entry past its
    window is ignored when counted whether it was swept or not: the sweep only frees memory, which
    once a second does as well.
    """

    SWEEP_EVERY = 1.0
    _swept = float("-inf")

    async def _MemoryStorage__schedule_expiry(self) -> None:  # the library's (name-mangled) hook
        now = time.monotonic()
        if now - self._swept >= self.SWEEP_EVERY:
            self._swept = now
            await super()._MemoryStorage__schedule_expiry()  # type: ignore[misc]


def storage_for(redis_url: str | None) -> Storage:
    """Redis when there is one (shared by every process), else this process's memory."""
    if not redis_url:
        return LocalWindows()
    scheme, _, rest = redis_url.partition("://")
    uri = f"async+redis+unix://{rest}" if scheme == "unix" else f"async+{redis_url}"
    return RedisStorage(uri, wrap_exceptions=True, key_prefix="isiqbot-limits")


class SendingBudget:
    """One bot token's budget: `acquire` returns when one message to `chat_id` may go."""

    def __init__(
        self,
        bot_id: str,
        storage: Storage | None = None,
        limits: Limits | None = None,
        paid_broadcast_mps: int | None = None,
    ) -> None:
        self.bot_id = bot_id  # the bot's numeric id: the token itself never leaves us
        self.ns = f"telegram/{bot_id}"
        self.storage = storage or LocalWindows()
        self.windows = MovingWindowRateLimiter(self.storage)  # exact: the bot's and the groups' few keys
        # A private chat's window is a counter: one key per person, cheap to keep for thousands (the
        # exact window keeps a list for each, and sweeps them all), and its limit is a soft one.
        self.people = SlidingWindowCounterRateLimiter(self.storage)
        self.limits = limits or Limits()
        self.paid_mps = paid_broadcast_mps
        self.paid = RateLimitItemPerSecond(paid_broadcast_mps) if paid_broadcast_mps else None
        # In one process, one waiter per priority asks the shared windows at a time; the rest queue
        # here in order, so a backlog polls Redis once per turn, not once per waiting message.
        self._turns = {priority: asyncio.Lock() for priority in Priority}
        self._alone: SendingBudget | None = None  # while the shared storage is away
        self._answers_waiting = 0  # answers of this process waiting for their turn: bulk yields to them

    @property
    def paid_broadcast(self) -> bool:
        return self.paid is not None

    async def acquire(self, chat_id: int, priority: Priority = Priority.ANSWER) -> None:
        """Wait for the turn of one message to `chat_id`. With Redis away, this process keeps the
        limits on its own until it is back: a message is late rather than lost, never sent unpaced."""
        try:
            await self._acquire(chat_id, priority)
        except StorageError as exc:
            if self._alone is None:
                log.warning("Redis unavailable (%s); pacing this process on its own", type(exc).__name__)
                self._alone = SendingBudget(self.bot_id, LocalWindows(), self.limits, self.paid_mps)
            await self._alone._acquire(chat_id, priority)
            return
        if self._alone is not None:
            log.info("Redis is back: the sending budget is shared again")
            self._alone = None

    async def _acquire(self, chat_id: int, priority: Priority) -> None:
        chat_item, windows = (
            (self.limits.group, self.windows) if chat_id < 0 else (self.limits.private, self.people)
        )
        chat = (self.ns, "chat", str(chat_id))
        # News to a chat waits for the chat's window. An answer to a person does not: it answers what
        # they just did, and no one taps for long faster than the window; it is counted all the same,
        # so news to them waits behind it. A group's window (20 a minute) holds every message.
        while (chat_id < 0 or priority == Priority.BULK) and not await windows.test(chat_item, *chat):
            await self._sleep_until((await windows.get_window_stats(chat_item, *chat)).reset_time)
        if priority == Priority.ANSWER:
            self._answers_waiting += 1
        try:
            async with self._turns[priority]:
                await self._wait_pause()
                if priority == Priority.BULK and self.paid is not None:
                    await self._take(self.paid, (self.ns, "paid"), bulk=False)
                else:
                    await self._take(self.limits.everyone, (self.ns, "all"), bulk=priority == Priority.BULK)
        finally:
            if priority == Priority.ANSWER:
                self._answers_waiting -= 1
        await windows.hit(chat_item, *chat)

    async def pause(self, seconds: float) -> None:
        """Telegram said 429: no send of this token goes for `seconds`, in any process."""
        seconds = max(1, math.ceil(seconds))
        try:
            await self.storage.clear(self._pause_key)
            await self.storage.incr(self._pause_key, seconds)
        except StorageError:
            await asyncio.sleep(seconds)  # no one to tell: this process at least waits it out
            return
        log.warning("Telegram asked to slow down: every send pauses for %s s", seconds)

    @property
    def _pause_key(self) -> str:
        return f"{self.ns}/pause"

    async def _wait_pause(self) -> None:
        while await self.storage.get(self._pause_key) > 0:
            await self._sleep_until(await self.storage.get_expiry(self._pause_key))

    async def _take(self, item: RateLimitItem, key: tuple[str, ...], bulk: bool) -> None:
        """One entry in the window `key`. Bulk news leaves the reserve, and one more for each answer
        this process has waiting, so answers are not starved when they come faster than the reserve."""
        while True:
            if bulk:
                stats = await self.windows.get_window_stats(item, *key)
                if stats.remaining <= self.limits.reserve + self._answers_waiting:
                    await self._sleep_until(stats.reset_time)
                    continue
            if await self.windows.hit(item, *key):
                return
            await self._sleep_until((await self.windows.get_window_stats(item, *key)).reset_time)

    @staticmethod
    async def _sleep_until(at: float) -> None:
        await asyncio.sleep(max(SHORTEST_WAIT, at - time.time()))
