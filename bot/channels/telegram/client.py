"""Calls to the Bot API within Telegram's limits, shared by the subscribers' channel, the staff chats
and the outbox's Telegram sender.

An interactive answer (`send`) is retried on the spot by the channels' shared rule (`answer_within`);
a call for the outbox (`request`) turns failures into `Temporary` or `Permanent` and lets the outbox
retry. A chat that blocked the bot, or is gone, is recorded on its conversation, so later news goes
by SMS.
"""

from __future__ import annotations

import asyncio
import io
import logging
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

from bot.channels.port import ANSWER_WITHIN, Sent, answer_within
from bot.channels.telegram import CHANNEL
from bot.channels.telegram.limits import Priority, SendingBudget
from bot.channels.telegram.render import Outgoing
from bot.core import metrics
from bot.core.clock import Clock
from bot.notify.outbox import Permanent, Temporary
from storage import conversations
from storage.db import Database

log = logging.getLogger(__name__)
T = TypeVar("T")


def make_bot(token: str, api_url: str) -> Bot:
    """A bot whose requests go to `{api_url}/bot{token}/{method}`, so any Bot API server can stand in."""
    return Bot(token, session=AiohttpSession(api=TelegramAPIServer.from_base(api_url)))


class TelegramClient:
    def __init__(self, bot: Bot, db: Database, clock: Clock, budget: SendingBudget | None = None) -> None:
        self.bot = bot
        self.db = db
        self.clock = clock
        self.budget = budget or SendingBudget(str(bot.id))

    async def send(self, chat_id: int, message: Outgoing, within: float = ANSWER_WITHIN) -> Sent:
        """An answer to what the person just did, within the limits, then tried for at most `within`
        seconds.

        SENT; UNREACHABLE when the chat blocked the bot or is gone (recorded for the SMS fallback) or
        Telegram refused the message; LATER when its turn in the sending budget did not come within
        `within` seconds (a storm), or Telegram did not take it in time (5xx, the network, a 429
        longer than the time left): the caller hands it to the outbox rather than hold the update
        any longer.
        """
        try:
            await asyncio.wait_for(self.budget.acquire(chat_id, Priority.ANSWER), within)
        except TimeoutError:
            return Sent.LATER
        method = SendMessage(chat_id=chat_id, text=message.text, reply_markup=message.markup)
        try:
            taken = await answer_within(lambda: self._call(method), within)
        except (TelegramForbiddenError, TelegramBadRequest) as exc:
            if isinstance(exc, TelegramBadRequest) and "chat not found" not in exc.message.lower():
                log.error("Telegram refused a message: %s", exc.message)  # ours to fix; the chat goes on
                return Sent.UNREACHABLE
            reason = "blocked" if isinstance(exc, TelegramForbiddenError) else "chat_not_found"
            log.info("Telegram chat unreachable (%s); recorded", reason)
            await self._unreachable(chat_id, reason)
            return Sent.UNREACHABLE
        return Sent.SENT if taken is not None else Sent.LATER

    async def request(
        self,
        chat_id: int,
        method: TelegramMethod[T],
        message: bool = True,
        priority: Priority = Priority.BULK,
    ) -> T:
        """One call for the outbox, within the limits: failures as `Temporary` or `Permanent`.

        Only messages count against the limits (`message=False` for a callback answer, a reaction …).
        The outbox retries; a chat that blocked the bot or is gone is recorded for the SMS fallback.
        """
        if message:
            await self.budget.acquire(chat_id, priority)
        try:
            return await self._call(method)
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
        """A call that may fail without harm (a button press's answer); False when given up.
        Refusals (4xx) propagate."""
        if await answer_within(lambda: self._call(method), within) is not None:
            return True
        log.warning("a Telegram call (%s) was given up after %s s", type(method).__name__, within)
        return False

    async def _call(self, method: TelegramMethod[T]) -> T:
        """One call; a 429, a 5xx or the network failing as `Temporary`. Refusals (4xx) propagate."""
        try:
            return await self.bot(method)
        except TelegramRetryAfter as exc:
            metrics.RATE_LIMITED.labels(CHANNEL).inc()
            await self.budget.pause(exc.retry_after)
            raise Temporary("Telegram 429: too many requests", exc.retry_after) from exc
        except (TelegramServerError, TelegramNetworkError) as exc:
            raise Temporary(f"Telegram {type(exc).__name__}: {exc}"[:200]) from exc

    async def close(self) -> None:
        await self.bot.session.close()

    async def _unreachable(self, chat_id: int, reason: str) -> None:
        if chat_id < 0:
            log.error("Telegram: the staff chat cannot be reached (%s); is the bot a member?", reason)
            return
        async with self.db.transaction() as session:
            await conversations.mark_unreachable(session, CHANNEL, str(chat_id), reason, self.clock())
