"""Telegram as the service sees it (the channel port): built from its settings, started, checked, closed.

One bot serves the subscribers' private chats and the department staff chats, by long polling or by
webhook (`TELEGRAM_WEBHOOK_URL`). It sends its subscribers' messages (`TelegramNotifier`) and the
staff chats' cards and notes (`StaffChat`), and keeps the photos people send it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine, Mapping, Sequence
from typing import Any

import aiohttp
from aiogram.exceptions import TelegramAPIError

from bot.channels.port import Parts, StartError
from bot.channels.telegram import CHANNEL, holds
from bot.channels.telegram.channel import ALLOWED_UPDATES, TelegramChannel, webhook_handler
from bot.channels.telegram.client import TelegramClient, make_bot
from bot.channels.telegram.limits import Limits, SendingBudget, storage_for
from bot.channels.telegram.notify import TelegramNotifier
from bot.channels.telegram.staffchat import StaffChat
from bot.core.links import ChatLink
from bot.core.settings import TelegramSettings
from bot.notify.outbox import Sender
from bot.web.server import Route
from locales import Msg
from storage import outbox

log = logging.getLogger("isiqbot")
WEBHOOK_CHECK_SECONDS = 60.0  # /readyz asks Telegram about the webhook at most this often


class Telegram:
    name = CHANNEL
    label = "Telegram"
    photos = True

    def __init__(
        self,
        client: TelegramClient,
        channel: TelegramChannel,
        staff_chat: StaffChat | None,
        notifier: TelegramNotifier,
        webhook: tuple[str, str] | None,
        username: str | None,
    ) -> None:
        self.client = client
        self.channel = channel
        self.staff_chat = staff_chat
        self.notifier = notifier
        self.webhook = webhook  # (url, secret) in webhook mode; None: long polling
        self.username = username
        self.webhook_checked: tuple[float, str | None] = (0.0, None)  # (when, the problem found then)

    def routes(self) -> Sequence[Route]:
        if self.webhook is None:
            return []
        return [("POST", "/telegram/webhook", webhook_handler(self.channel, self.webhook[1]))]

    def senders(self) -> Mapping[str, Sender]:
        senders: dict[str, Sender] = {CHANNEL: self.notifier}
        if self.staff_chat is not None:
            senders[outbox.STAFF] = self.staff_chat
        return senders

    def background(self, stop: asyncio.Event) -> Mapping[str, Coroutine[Any, Any, None]]:
        return {} if self.webhook is not None else {"telegram polling": self.channel.poll(stop)}

    async def start(self) -> None:
        try:
            await self.channel.set_commands()
            if self.staff_chat is not None:
                await self.staff_chat.set_commands()
            if self.webhook is not None:
                url, secret = self.webhook
                await self.client.bot.set_webhook(url, secret_token=secret, allowed_updates=ALLOWED_UPDATES)
                log.info("Telegram: webhook registered")
        except (TelegramAPIError, aiohttp.ClientError) as exc:
            raise StartError(f"Telegram refused to start: {type(exc).__name__}: {exc}") from exc
        if self.webhook is None:
            log.info("Telegram: long polling")

    async def problem(self) -> str | None:
        """Whether Telegram still calls our webhook (asked at most once a minute)."""
        if self.webhook is None:
            return None
        when, problem = self.webhook_checked
        if time.monotonic() - when < WEBHOOK_CHECK_SECONDS:
            return problem
        try:
            info = await self.client.bot.get_webhook_info()
        except (TelegramAPIError, aiohttp.ClientError) as exc:
            problem = f"telegram webhook: not known ({type(exc).__name__})"
        else:
            problem = None if info.url == self.webhook[0] else "telegram webhook: no longer registered"
        self.webhook_checked = (time.monotonic(), problem)
        return problem

    async def settle(self) -> None:
        return None  # answers leave before the update is confirmed, or wait in the outbox

    async def close(self) -> None:
        await self.client.close()

    def holds(self, ref: str) -> bool:
        return holds(ref)

    async def media(self, ref: str) -> tuple[bytes, str]:
        return await self.client.photo(ref)

    def chat_link(self, token: str, number: str) -> ChatLink | None:
        return chat_link(self.username, token) if self.username else None


def chat_link(username: str, token: str) -> ChatLink:
    """Opens the bot with the application's token: /start <token> shows the application in the chat."""
    return ChatLink(CHANNEL, f"https://t.me/{username}?start={token}", Msg("page.open_telegram"))


async def connect(
    settings: TelegramSettings, parts: Parts, limits: Limits, redis_url: str | None
) -> Telegram | None:
    """Telegram, when a bot token is set. Raises StartError when Telegram refuses the token.

    Its sending budget is shared through Redis by every process of the same bot when `redis_url`
    is set."""
    if settings.bot_token is None:
        return None
    bot = make_bot(settings.bot_token.get_secret_value(), settings.api_url)
    budget = SendingBudget(str(bot.id), storage_for(redis_url), limits, settings.paid_broadcast_mps)
    client = TelegramClient(bot, parts.db, parts.clock, budget)
    staff_chat = None
    if parts.desk.policy.departments.chats:
        staff_chat = StaffChat(client, parts.db, parts.clock, parts.desk, parts.wake, parts.channels.media)
    channel = TelegramChannel(client, parts.conversations, parts.held(CHANNEL), staff_chat)
    notifier = TelegramNotifier(client, parts.db, parts.clock, parts.desk.policy)
    try:
        username = (await client.bot.me()).username
    except (TelegramAPIError, aiohttp.ClientError) as exc:
        await client.close()
        raise StartError(
            f"Telegram refused to start (check TELEGRAM_BOT_TOKEN and TELEGRAM_API_URL): {type(exc).__name__}"
        ) from exc
    webhook = None
    if settings.webhook_url and settings.webhook_secret:
        webhook = (settings.webhook_url, settings.webhook_secret.get_secret_value())
    return Telegram(client, channel, staff_chat, notifier, webhook, username)
