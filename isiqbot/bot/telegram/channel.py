"""The Telegram channel: updates in (polling or webhook), each handled once and in order, replies out."""

from __future__ import annotations

import asyncio
import hmac
import io
import logging
from collections import defaultdict
from collections.abc import Sequence
from typing import Any, Protocol, TypeVar

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
from aiogram.methods import AnswerCallbackQuery, SendMessage, TelegramMethod
from aiogram.types import BotCommand, Update
from aiohttp import web
from pydantic import ValidationError

from isiqbot.bot.outbox import Permanent, Temporary
from isiqbot.bot.service import Conversations, storage_unavailable
from isiqbot.bot.telegram import CHANNEL
from isiqbot.bot.telegram.limits import RateLimiter
from isiqbot.bot.telegram.mapping import Inbound, map_update
from isiqbot.bot.telegram.render import Outgoing, render
from isiqbot.bot.web import Handler
from isiqbot.dialogs.events import COMMANDS
from isiqbot.locales import LANGUAGES, Msg, translate
from isiqbot.storage import conversations

log = logging.getLogger(__name__)
ALLOWED_UPDATES = ["message", "callback_query"]
SEND_ATTEMPTS = 6
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"  # noqa: S105 (a header name, not a secret)
T = TypeVar("T")


class StaffUpdates(Protocol):
    """The staff chats' side of the channel (`staffchat.StaffChat`)."""

    def owns(self, update: Update) -> int | None: ...

    async def handle(self, update: Update) -> None: ...


def make_bot(token: str, api_url: str) -> Bot:
    """A bot whose requests go to `{api_url}/bot{token}/{method}`, so any Bot API server can stand in."""
    return Bot(token, session=AiohttpSession(api=TelegramAPIServer.from_base(api_url)))


class TelegramChannel:
    def __init__(self, bot: Bot, service: Conversations, limiter: RateLimiter | None = None) -> None:
        self.bot = bot
        self.service = service
        self.limiter = limiter or RateLimiter()
        self.staff: StaffUpdates | None = None  # the department staff chats, when there are any

    async def process(self, update: Update) -> None:
        """Handle one update and answer it. Storage errors propagate: the update must come again."""
        if self.staff is not None and self.staff.owns(update) is not None:
            await self.staff.handle(update)
            return
        inbound = map_update(update)
        if inbound is not None:
            await self.answer(inbound)

    async def answer(self, inbound: Inbound) -> None:
        """Run the dialog for an update already mapped, then send what it says."""
        handled = await self.service.handle(
            inbound.subscriber,
            inbound.event,
            update_id=str(inbound.update_id),
            language_hint=inbound.language,
        )
        if inbound.callback_id is not None:  # every press is answered, or the button keeps spinning
            try:
                await self._call(AnswerCallbackQuery(callback_query_id=inbound.callback_id))
            except TelegramBadRequest:  # too old to answer (Telegram allows a few minutes): nothing spins
                pass
        if handled is None:
            # Seen before: Telegram sends an update again only when we failed to confirm it, perhaps
            # before its answer went out. Its effect stays single; the person gets the current question.
            handled = await self.service.handle(inbound.subscriber, None)
            if handled is None:
                return
        for message in render(handled.outcome, handled.lang):
            if not await self.send(inbound.chat_id, message):
                break

    async def send(self, chat_id: int, message: Outgoing) -> bool:
        """Send within the limits; False when the chat cannot be reached (recorded for the SMS fallback)."""
        await self.limiter.acquire(chat_id)
        try:
            return await self._call(
                SendMessage(chat_id=chat_id, text=message.text, reply_markup=message.markup)
            )
        except (TelegramForbiddenError, TelegramBadRequest) as exc:
            if isinstance(exc, TelegramBadRequest) and "chat not found" not in exc.message.lower():
                log.error("Telegram refused a message: %s", exc.message)  # ours to fix; the chat goes on
                return False
            reason = "blocked" if isinstance(exc, TelegramForbiddenError) else "chat_not_found"
            log.info("Telegram chat unreachable (%s); recorded", reason)
            await self._unreachable(chat_id, reason)
            return False

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

    async def _unreachable(self, chat_id: int, reason: str) -> None:
        if chat_id < 0:
            log.error("Telegram: the staff chat cannot be reached (%s); is the bot a member?", reason)
            return
        async with self.service.db.transaction() as session:
            await conversations.mark_unreachable(session, CHANNEL, str(chat_id), reason, self.service.clock())

    async def _call(self, method: TelegramMethod[Any]) -> bool:
        """Call the Bot API, waiting out 429s and retrying 5xx and network errors with backoff."""
        for attempt in range(SEND_ATTEMPTS):
            try:
                await self.bot(method)
                return True
            except TelegramRetryAfter as exc:
                await asyncio.sleep(exc.retry_after)
            except (TelegramServerError, TelegramNetworkError):
                await asyncio.sleep(min(0.5 * 2**attempt, 30))
        log.error("a Telegram call failed %s times and was given up", SEND_ATTEMPTS)
        return False

    async def process_batch(self, updates: Sequence[Update]) -> None:
        """The updates of one chat one after another, different chats at the same time."""
        by_chat: dict[int, list[Inbound | Update]] = defaultdict(list)
        for update in updates:
            staff_chat = self.staff.owns(update) if self.staff is not None else None
            if staff_chat is not None:
                by_chat[staff_chat].append(update)
                continue
            inbound = map_update(update)
            if inbound is not None:  # not for us: nothing to do, and confirmed with the batch
                by_chat[inbound.chat_id].append(inbound)

        async def run(chat_updates: list[Inbound | Update]) -> None:
            for item in chat_updates:
                if isinstance(item, Inbound):
                    await self.answer(item)
                elif self.staff is not None:
                    await self.staff.handle(item)

        await asyncio.gather(*(run(chat_updates) for chat_updates in by_chat.values()))

    async def poll(self, stop: asyncio.Event, long_poll_seconds: int = 25) -> None:
        """Long polling. The offset moves past a batch only once every update in it is stored."""
        await self.bot.delete_webhook(drop_pending_updates=False)
        offset: int | None = None
        while not stop.is_set():
            try:
                updates = await self.bot.get_updates(
                    offset=offset, timeout=long_poll_seconds, allowed_updates=ALLOWED_UPDATES
                )
            except (TelegramServerError, TelegramNetworkError) as exc:
                log.warning("getUpdates failed (%s); trying again", type(exc).__name__)
                await asyncio.sleep(1)
                continue
            if not updates:
                continue
            try:
                await self.process_batch(updates)
            except Exception as exc:
                if storage_unavailable(exc):
                    log.warning("storage unavailable; the batch will be fetched again")
                    await asyncio.sleep(1)
                    continue
                # What the service did not turn into an answer failed after the update was stored
                # (while answering it): fetching it again would change nothing.
                log.exception("a batch of updates failed while answering; moving past it")
            offset = max(u.update_id for u in updates) + 1

    async def set_commands(self) -> None:
        """The command menu in each language, and Azerbaijani for everyone else."""
        for lang in LANGUAGES:
            commands = [
                BotCommand(command=c, description=translate(Msg(f"command.{c}"), lang)) for c in COMMANDS
            ]
            await self.bot.set_my_commands(commands, language_code=lang)
            if lang == "az":
                await self.bot.set_my_commands(commands)


def webhook_handler(channel: TelegramChannel, secret: str) -> Handler:
    """POST /telegram/webhook: authenticated by the secret token, 200 only once the update is stored."""

    async def handle(request: web.Request) -> web.Response:
        given = request.headers.get(SECRET_HEADER, "")
        if not hmac.compare_digest(given.encode(), secret.encode()):
            return web.json_response({"error": "unauthorized"}, status=401)
        try:
            update = Update.model_validate(await request.json(), context={"bot": channel.bot})
        except (ValueError, ValidationError):
            return web.json_response({"error": "not a Telegram update"}, status=400)
        try:
            await channel.process(update)
        except Exception as exc:
            if not storage_unavailable(exc):
                raise
            log.warning("storage unavailable; asking Telegram to deliver update %s again", update.update_id)
            return web.json_response({"error": "try again"}, status=503)
        return web.json_response({"ok": True})

    return handle
