"""WhatsApp as the service sees it (the channel port): built from its settings when they are complete.

The Cloud API calls our webhook (`/whatsapp/webhook`); we answer on the Graph API, keep to its pace,
and send the outbox's WhatsApp messages: free text in the 24-hour window, the approved template after.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Mapping, Sequence
from typing import Any
from urllib.parse import quote

from bot.channels.port import Parts
from bot.channels.whatsapp import CHANNEL
from bot.channels.whatsapp.channel import GraphClient, WhatsAppChannel, routes
from bot.channels.whatsapp.mapping import MEDIA_PREFIX
from bot.core.links import ChatLink
from bot.core.settings import WhatsAppSettings
from bot.notify.outbox import Sender
from bot.web.server import Route
from locales import Msg

log = logging.getLogger("isiqbot")


class WhatsApp:
    name = CHANNEL
    label = "WhatsApp"
    photos = True

    def __init__(self, graph: GraphClient, channel: WhatsAppChannel, public_number: str | None) -> None:
        self.graph = graph
        self.channel = channel
        self.public_number = public_number

    def routes(self) -> Sequence[Route]:
        return routes(self.channel)

    def senders(self) -> Mapping[str, Sender]:
        return {CHANNEL: self.channel}

    def background(self, stop: asyncio.Event) -> Mapping[str, Coroutine[Any, Any, None]]:
        return {}

    async def start(self) -> None:
        log.info("WhatsApp: webhook at /whatsapp/webhook")

    async def problem(self) -> str | None:
        return None

    async def settle(self) -> None:
        await self.channel.settle()

    async def close(self) -> None:
        return None  # its HTTP session is the service's

    def holds(self, ref: str) -> bool:
        return ref.startswith(MEDIA_PREFIX)

    async def media(self, ref: str) -> tuple[bytes, str]:
        return await self.graph.media(ref.removeprefix(MEDIA_PREFIX))

    def chat_link(self, token: str, number: str) -> ChatLink | None:
        return chat_link(self.public_number, number) if self.public_number else None


def chat_link(public_number: str, number: str) -> ChatLink:
    """Opens a chat with our number, the application's number already typed."""
    return ChatLink(CHANNEL, f"https://wa.me/{public_number}?text={quote(number)}", Msg("page.open_whatsapp"))


def connect(settings: WhatsAppSettings, parts: Parts, mps: float | None, per_user: float) -> WhatsApp | None:
    """WhatsApp, when its token, app secret and verify token are all set."""
    if not (settings.token and settings.app_secret and settings.verify_token):
        return None
    graph = GraphClient(
        parts.http,
        settings.api_url,
        settings.phone_number_id or "",
        settings.token.get_secret_value(),
        mps or settings.mps,
        per_user,
    )
    channel = WhatsAppChannel(
        parts.conversations,
        graph,
        settings.app_secret.get_secret_value(),
        settings.verify_token.get_secret_value(),
        parts.desk.policy,
        parts.links,
        parts.held(CHANNEL),
        settings.template,
        settings.template_language,
        files=parts.channels.media,
    )
    return WhatsApp(graph, channel, settings.public_number)
