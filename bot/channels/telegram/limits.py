"""Telegram's sending limits: about 30 messages a second in all, 1 a second per private chat (short
bursts allowed) and 20 a minute per group. Every send waits its turn here instead of earning a 429."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass


@dataclass(slots=True)
class Bucket:
    """A token bucket: `capacity` sends at once, refilled at `rate` a second."""

    capacity: float
    rate: float
    tokens: float
    stamp: float

    def refill(self, now: float) -> None:
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now

    def wait(self) -> float:
        # The epsilon: a refill that lands a hair under one token must not spin on ever tinier sleeps.
        return 0.0 if self.tokens >= 1 - 1e-9 else (1 - self.tokens) / self.rate


class RateLimiter:
    GLOBAL = (30.0, 30.0)  # capacity, per second
    PRIVATE = (3.0, 1.0)
    GROUP = (20.0, 20.0 / 60)
    MAX_IDLE_BUCKETS = 10_000

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        private: tuple[float, float] = PRIVATE,
        group: tuple[float, float] = GROUP,
    ) -> None:
        self.clock = clock
        self.sleep = sleep
        self.private = private
        self.group = group
        now = clock()
        self.everyone = Bucket(*self.GLOBAL, tokens=self.GLOBAL[0], stamp=now)
        self.chats: dict[int, Bucket] = {}

    def _chat(self, chat_id: int, now: float) -> Bucket:
        bucket = self.chats.get(chat_id)
        if bucket is None:
            if len(self.chats) >= self.MAX_IDLE_BUCKETS:
                self._forget_full(now)
            capacity, rate = self.group if chat_id < 0 else self.private
            bucket = self.chats[chat_id] = Bucket(capacity, rate, tokens=capacity, stamp=now)
        return bucket

    def _forget_full(self, now: float) -> None:
        """A full bucket holds no memory worth keeping: drop those, so the map stays bounded."""
        for chat_id, bucket in list(self.chats.items()):
            bucket.refill(now)
            if bucket.tokens >= bucket.capacity:
                del self.chats[chat_id]

    async def acquire(self, chat_id: int) -> None:
        """Return when one message to `chat_id` may go."""
        while True:
            now = self.clock()
            chat = self._chat(chat_id, now)
            chat.refill(now)
            self.everyone.refill(now)
            wait = max(chat.wait(), self.everyone.wait())
            if wait <= 0:
                chat.tokens -= 1
                self.everyone.tokens -= 1
                return
            await self.sleep(wait)
