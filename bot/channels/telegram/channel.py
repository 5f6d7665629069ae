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

from bot.channels.telegram import CHANNEL
from bot.channels.telegram.client import Sent, TelegramClient
from bot.channels.telegram.mapping import Inbound, map_update, within_64_bits
from bot.channels.telegram.render import Outgoing, render
from bot.core.service import Conversations, storage_unavailable
from bot.web.server import Handler, TooDeep, error, loads_json, try_again
from dialogs.events import COMMANDS
from locales import LANGUAGES, Msg, translate
from storage import outbox

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
        self._held: set[int] = set()  # chats whose answers wait in the outbox (Telegram was slow)

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
        messages = render(handled.outcome, handled.lang)
        chat_id = inbound.chat_id
        if chat_id in self._held and await self._still_held(chat_id):
            await self._hold(chat_id, messages, handled.lang)  # behind the answers already waiting
            return
        for index, message in enumerate(messages):
            sent = await self.client.send(chat_id, message)
            if sent is Sent.LATER:  # Telegram is slow or down: the outbox retries it, in order
                await self._hold(chat_id, messages[index:], handled.lang)
                break
            if sent is Sent.UNREACHABLE:
                break

    async def _hold(self, chat_id: int, messages: Sequence[Outgoing], lang: str) -> None:
        """Answers that could not leave in time go through the outbox, in the chat's lane."""
        now = self.service.clock()
        async with self.service.db.transaction() as session:
            for message in messages:
                markup = message.markup.model_dump(mode="json", exclude_none=True) if message.markup else None
                outbox.enqueue(
                    session,
                    channel=CHANNEL,
                    user_key=str(chat_id),
                    kind=outbox.REPLY,
                    payload={"text": message.text, "markup": markup},
                    now=now,
                    lang=lang,
                )
        self._held.add(chat_id)
        log.info("Telegram is slow: %s answer(s) handed to the outbox", len(messages))
        if self.service.on_commit is not None:
            self.service.on_commit()

    async def _still_held(self, chat_id: int) -> bool:
        """Whether answers to this chat still wait in the outbox (a new one must go behind them)."""
        async with self.service.db.transaction() as session:
            waiting = await outbox.unsent(session, CHANNEL, str(chat_id), outbox.REPLY)
        if not waiting:
            self._held.discard(chat_id)
        return bool(waiting)

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
            body = loads_json(await request.read())  # over-deep JSON stops here, before pydantic
            update = Update.model_validate(body, context={"bot": channel.bot})
        except TooDeep:
            return error(400, "too deeply nested")
        except (ValueError, ValidationError):
            return error(400, "not a Telegram update")
        if not within_64_bits(update):  # an id no Telegram update has, nor any column could keep
            return error(400, "not a Telegram update")
        try:
            await channel.process(update)
        except Exception as exc:
            if not storage_unavailable(exc):
                raise  # the web server's middleware logs it and answers 500
            log.warning("storage unavailable; asking Telegram to deliver update %s again", update.update_id)
            return try_again()
        return web.json_response({"ok": True})

    return handle
