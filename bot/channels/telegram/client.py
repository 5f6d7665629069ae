"""Calls to the Bot API within Telegram's limits, shared by the subscribers' channel, the staff chats
and the outbox's Telegram sender.

An interactive answer (`send`) waits out a 429 and retries a 5xx a few times on the spot; a call for
the outbox (`request`) turns failures into `Temporary` or `Permanent` and lets the outbox retry. A chat
that blocked the bot, or is gone, is recorded on its conversation, so later news goes by SMS.
"""

from __future__ import annotations

import asyncio
import enum
import io
import logging
import time
from typing import Any, TypeVar

from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramForbiddenError,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
)
from aiogram.methods import SendMessage, TelegramMethod

from bot.channels.telegram import CHANNEL
from bot.channels.telegram.limits import RateLimiter
from bot.channels.telegram.render import Outgoing
from bot.core.service import Clock
from bot.notify.outbox import Permanent, Temporary
from storage import conversations
from storage.db import Database

log = logging.getLogger(__name__)
# How long an answer may hold its update (the webhook's request, or the polled batch) before it is
# handed to the outbox, which retries it in order like every other message.
ANSWER_WITHIN = 3.0
T = TypeVar("T")


class Sent(enum.Enum):
    SENT = "sent"
    UNREACHABLE = "unreachable"
    LATER = "later"


def make_bot(token: str, api_url: str) -> Bot:
    """A bot whose requests go to `{api_url}/bot{token}/{method}`, so any Bot API server can stand in."""
    return Bot(token, session=AiohttpSession(api=TelegramAPIServer.from_base(api_url)))


class TelegramClient:
    def __init__(self, bot: Bot, db: Database, clock: Clock, limiter: RateLimiter | None = None) -> None:
        self.bot = bot
        self.db = db
        self.clock = clock
        self.limiter = limiter or RateLimiter()

    async def send(self, chat_id: int, message: Outgoing, within: float = ANSWER_WITHIN) -> Sent:
        """An answer to what the person just did, within the limits, then tried for at most `within`
        seconds (our own pacing is not counted: only Telegram's slowness is).

        SENT; UNREACHABLE when the chat blocked the bot or is gone (recorded for the SMS fallback) or
        Telegram refused the message; LATER when Telegram did not take it in time (5xx, the network,
        a 429 longer than the time left): the caller hands it to the outbox rather than hold the
        update any longer.
        """
        await self.limiter.acquire(chat_id)
        method = SendMessage(chat_id=chat_id, text=message.text, reply_markup=message.markup)
        try:
            return Sent.SENT if await self._within(method, within) else Sent.LATER
        except (TelegramForbiddenError, TelegramBadRequest) as exc:
            if isinstance(exc, TelegramBadRequest) and "chat not found" not in exc.message.lower():
                log.error("Telegram refused a message: %s", exc.message)  # ours to fix; the chat goes on
                return Sent.UNREACHABLE
            reason = "blocked" if isinstance(exc, TelegramForbiddenError) else "chat_not_found"
            log.info("Telegram chat unreachable (%s); recorded", reason)
            await self._unreachable(chat_id, reason)
            return Sent.UNREACHABLE

    async def request(self, chat_id: int, method: TelegramMethod[T], message: bool = True) -> T:
        """One call for the outbox, within the limits: failures as `Temporary` or `Permanent`.

        Only messages count against the limits (`message=False` for a callback answer, a reaction …).
        The outbox retries; a chat that blocked the bot or is gone is recorded for the SMS fallback.
        """
        if message:
            await self.limiter.acquire(chat_id)
        try:
            return await self.bot(method)
        except TelegramRetryAfter as exc:
            raise Temporary("Telegram 429: too many requests", exc.retry_after) from exc
        except (TelegramServerError, TelegramNetworkError) as exc:
            raise Temporary(f"Telegram {type(exc).__name__}: {exc}"[:200]) from exc
        except TelegramForbiddenError as exc:
            await self._unreachable(chat_id, "blocked")
            raise Permanent("blocked: the person blocked the bot") from exc
        except TelegramBadRequest as exc:
            if "chat not found" in exc.message.lower():
                await self._unreachable(chat_id, "chat_not_found")
                raise Permanent("chat_not_found") from exc
            raise Permanent(f"refused: {exc.message}"[:200]) from exc

    async def photo(self, file_id: str) -> tuple[bytes, str]:
        """A photo's bytes from Telegram (a staff member's, for a WhatsApp subscriber)."""
        buffer = io.BytesIO()
        try:
            await self.bot.download(file_id, destination=buffer)
        except (TelegramServerError, TelegramNetworkError) as exc:
            raise Temporary(f"Telegram file: {type(exc).__name__}") from exc
        except TelegramBadRequest as exc:
            raise Permanent(f"Telegram file refused: {exc.message}"[:200]) from exc
        return buffer.getvalue(), "image/jpeg"

    async def call(self, method: TelegramMethod[Any], within: float = ANSWER_WITHIN) -> bool:
        """A call that may fail without harm (a button press's answer); False when given up."""
        if await self._within(method, within):
            return True
        log.warning("a Telegram call (%s) was given up after %s s", type(method).__name__, within)
        return False

    async def _within(self, method: TelegramMethod[Any], within: float) -> bool:
        """Call until Telegram takes it or `within` seconds are over, waiting out 429s that fit in the
        time left and retrying 5xx and network errors; False when the time ran out. Refusals (4xx)
        propagate."""
        deadline = time.monotonic() + within
        attempt = 0
        while True:
            try:
                await asyncio.wait_for(self.bot(method), max(deadline - time.monotonic(), 0.1))
                return True
            except TelegramRetryAfter as exc:
                pause = float(exc.retry_after)
            except (TelegramServerError, TelegramNetworkError, TimeoutError):
                pause = min(0.25 * 2**attempt, 2.0)
            attempt += 1
            if time.monotonic() + pause >= deadline:
                return False
            await asyncio.sleep(pause)

    async def close(self) -> None:
        await self.bot.session.close()

    async def _unreachable(self, chat_id: int, reason: str) -> None:
        if chat_id < 0:
            log.error("Telegram: the staff chat cannot be reached (%s); is the bot a member?", reason)
            return
        async with self.db.transaction() as session:
            await conversations.mark_unreachable(session, CHANNEL, str(chat_id), reason, self.clock())
