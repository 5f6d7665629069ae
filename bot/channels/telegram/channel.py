"""The Telegram channel: updates in (polling or webhook), each handled once and in order, replies out."""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Sequence
from typing import Any, Protocol

from aiogram.exceptions import TelegramBadRequest, TelegramNetworkError, TelegramServerError
from aiogram.methods import AnswerCallbackQuery
from aiogram.types import BotCommand, Update
from aiohttp import web
from pydantic import ValidationError

from bot.channels.port import HeldAnswers, Sent, one_by_one
from bot.channels.telegram import CHANNEL
from bot.channels.telegram.client import TelegramClient
from bot.channels.telegram.mapping import Inbound, map_update, within_64_bits
from bot.channels.telegram.render import Outgoing, render
from bot.core.context import log_context
from bot.core.service import Conversations, Handled
from bot.web.server import Handler, TooDeep, error, loads_json, try_again
from dialogs.events import COMMANDS
from locales import LANGUAGES, Msg, translate
from storage.db import storage_unavailable

log = logging.getLogger(__name__)
ALLOWED_UPDATES = ["message", "callback_query"]
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"  # noqa: S105 (a header name, not a secret)


class StaffUpdates(Protocol):
    """The staff chats' side of the channel (`staffchat.StaffChat`)."""

    def owns(self, update: Update) -> int | None: ...

    async def handle(self, update: Update) -> None: ...


class TelegramChannel:
    """The subscribers' private chats, and the staff chats' updates handed to `staff` when there are any."""

    def __init__(
        self,
        client: TelegramClient,
        service: Conversations,
        held: HeldAnswers,
        staff: StaffUpdates | None = None,
    ):
        self.client = client
        self.bot = client.bot
        self.service = service
        self.held = held  # answers that wait in the outbox because Telegram was slow
        self.staff = staff

    async def process(self, update: Update, in_response: bool = False) -> AnswerCallbackQuery | None:
        """Handle one update and answer it. Storage errors propagate: the update must come again.

        `in_response` (a webhook): a subscriber's press is not answered by a call of its own but
        returned, for the webhook's response to carry (Telegram makes that call for us: one request
        less for every press)."""
        with log_context(channel=CHANNEL, update_id=update.update_id):  # on every line logged meanwhile
            if self.staff is not None and self.staff.owns(update) is not None:
                await self.staff.handle(update)
                return None
            inbound = map_update(update)
            if inbound is None:
                return None
            return await self.answer(inbound, in_response)

    async def answer(self, inbound: Inbound, in_response: bool = False) -> AnswerCallbackQuery | None:
        """Run the dialog for an update already mapped, then send what it says."""
        subscriber, update_id = inbound.subscriber, str(inbound.update_id)
        handled, _ = await self.service.receive(subscriber, inbound.event, update_id, inbound.language)
        press = None
        if inbound.callback_id is not None:  # every press is answered, or the button keeps spinning
            press = AnswerCallbackQuery(callback_query_id=inbound.callback_id)
            if not in_response:
                await self._answer_press(press)
                press = None
        if handled is not None:
            await self._send(inbound.chat_id, handled)
        return press

    async def _answer_press(self, press: AnswerCallbackQuery) -> None:
        try:
            await self.client.call(press)
        except TelegramBadRequest:  # too old to answer (Telegram allows a few minutes): nothing spins
            pass

    async def _send(self, chat_id: int, handled: Handled) -> None:
        async def send_now(message: Outgoing) -> Sent:
            return await self.client.send(chat_id, message)

        messages = render(handled.outcome, handled.lang)
        await self.held.send(str(chat_id), messages, handled.lang, send_now, _stored)

    async def process_batch(self, updates: Sequence[Update]) -> None:
        """The updates of one chat one after another, different chats at the same time."""
        mine: list[tuple[int, Inbound | Update]] = []
        for update in updates:
            staff_chat = self.staff.owns(update) if self.staff is not None else None
            if staff_chat is not None:
                mine.append((staff_chat, update))
                continue
            inbound = map_update(update)
            if inbound is not None:  # not for us: nothing to do, and confirmed with the batch
                mine.append((inbound.chat_id, inbound))

        async def run(item: tuple[int, Inbound | Update]) -> None:
            with log_context(channel=CHANNEL, update_id=item[1].update_id):
                if isinstance(item[1], Inbound):
                    await self.answer(item[1])
                elif self.staff is not None:
                    await self.staff.handle(item[1])

        await one_by_one(mine, lambda item: item[0], run)

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
            body = loads_json(await request.read())  # over-deep JSON stops here, before pydantic
            update = Update.model_validate(body, context={"bot": channel.bot})
        except TooDeep:
            return error(400, "too deeply nested")
        except (ValueError, ValidationError):
            return error(400, "not a Telegram update")
        if not within_64_bits(update):  # an id no Telegram update has, nor any column could keep
            return error(400, "not a Telegram update")
        try:
            press = await channel.process(update, in_response=True)
        except Exception as exc:
            if not storage_unavailable(exc):
                raise  # the web server's middleware logs it and answers 500
            log.warning("storage unavailable; asking Telegram to deliver update %s again", update.update_id)
            return try_again()
        if press is not None:  # Telegram answers the press itself, as the Bot API allows a webhook
            return web.json_response({"method": press.__api_method__, **press.model_dump(exclude_none=True)})
        return web.json_response({"ok": True})

    return handle


def _stored(message: Outgoing) -> dict[str, Any]:
    """An answer as the outbox keeps it, to be sent as it is (`TelegramNotifier`, kind `reply`)."""
    markup = message.markup.model_dump(mode="json", exclude_none=True) if message.markup else None
    return {"text": message.text, "markup": markup}
