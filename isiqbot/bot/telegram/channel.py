"""The Telegram channel: updates in (polling or webhook), each handled once and in order, replies out."""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections import defaultdict
from collections.abc import Sequence
from typing import Protocol

from aiogram.exceptions import TelegramBadRequest, TelegramNetworkError, TelegramServerError
from aiogram.methods import AnswerCallbackQuery
from aiogram.types import BotCommand, Update
from aiohttp import web
from pydantic import ValidationError

from isiqbot.bot.service import Conversations, storage_unavailable
from isiqbot.bot.telegram.client import TelegramClient
from isiqbot.bot.telegram.mapping import Inbound, map_update
from isiqbot.bot.telegram.render import render
from isiqbot.bot.web import Handler
from isiqbot.dialogs.events import COMMANDS
from isiqbot.locales import LANGUAGES, Msg, translate

log = logging.getLogger(__name__)
ALLOWED_UPDATES = ["message", "callback_query"]
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"  # noqa: S105 (a header name, not a secret)


class StaffUpdates(Protocol):
    """The staff chats' side of the channel (`staffchat.StaffChat`)."""

    def owns(self, update: Update) -> int | None: ...

    async def handle(self, update: Update) -> None: ...


class TelegramChannel:
    """The subscribers' private chats, and the staff chats' updates handed to `staff` when there are any."""

    def __init__(self, client: TelegramClient, service: Conversations, staff: StaffUpdates | None = None):
        self.client = client
        self.bot = client.bot
        self.service = service
        self.staff = staff

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
                await self.client.call(AnswerCallbackQuery(callback_query_id=inbound.callback_id))
            except TelegramBadRequest:  # too old to answer (Telegram allows a few minutes): nothing spins
                pass
        if handled is None:
            # Seen before: Telegram sends an update again only when we failed to confirm it, perhaps
            # before its answer went out. Its effect stays single; the person gets the current question.
            handled = await self.service.again(inbound.subscriber, str(inbound.update_id))
            if handled is None:
                return
        for message in render(handled.outcome, handled.lang):
            if not await self.client.send(inbound.chat_id, message):
                break

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
