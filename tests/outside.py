"""What stands outside the service at the network boundary, besides the Bot API and the Graph API:
a local HTTP SMS gateway and a real SMTP server (aiosmtpd)."""

from __future__ import annotations

import asyncio
import email
import email.policy
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from aiohttp import web
from aiosmtpd.controller import Controller

from tests.processes import free_port


@dataclass
class Gateway:
    """A local HTTP SMS gateway: records each POST, and fails, hangs or answers as told.

    It honours `Idempotency-Key` as gateways that offer one do: a POST whose key it has taken before
    sends nothing and is answered the first one's id (`replayed` counts them).
    """

    received: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    posted: list[dict[str, Any]] = field(default_factory=list)  # every SMS posted, replays too
    keys: dict[str, str] = field(default_factory=dict)  # Idempotency-Key -> the id answered first
    replayed: int = 0
    failures: list[int] = field(default_factory=list)
    hang_next: int = 0
    delay: float = 0.0  # a slow gateway: it takes the SMS at once and answers this much later
    down_until: float = 0.0  # until then (time.monotonic()), every POST gets a 503
    refused: int = 0  # the 503s answered while down
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.headers.append(dict(request.headers))
        if time.monotonic() < self.down_until:
            self.refused += 1
            return web.json_response({"error": "unavailable"}, status=503)
        if self.hang_next:
            self.hang_next -= 1
            await asyncio.sleep(5)
        if self.failures:
            return web.json_response({"error": "busy"}, status=self.failures.pop(0))
        body = await request.json()
        self.posted.append(body)
        key = request.headers.get("Idempotency-Key")
        if key is not None and key in self.keys:
            self.replayed += 1
            return web.json_response({"id": self.keys[key]})
        self.received.append(body)
        number = len(self.received)
        if key is not None:
            self.keys[key] = f"sms-{number}"
        if self.delay:
            await asyncio.sleep(self.delay)
        return web.json_response({"id": f"sms-{number}"})

    def texts_to(self, phone: str) -> list[str]:
        return [str(m["text"]) for m in self.received if m["to"] == phone]


@asynccontextmanager
async def sms_gateway() -> AsyncIterator[Gateway]:
    recorder = Gateway()
    app = web.Application()
    app.router.add_post("/send", recorder.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    recorder.url = f"http://127.0.0.1:{port}/send"
    try:
        yield recorder
    finally:
        await runner.cleanup()


class Mailbox:
    """An aiosmtpd handler: keeps each message; refuses the next ones with 451 when told to (`refuse`
    messages, or every message until `refuse_until`, a time.monotonic())."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.refuse = 0
        self.refuse_until = 0.0
        self.refused = 0  # the 451s answered
        self.drop_answer = 0  # the next ones are kept, but the connection drops before the 250
        self.port = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.refuse or time.monotonic() < self.refuse_until:
            self.refuse = max(self.refuse - 1, 0)
            self.refused += 1
            return "451 4.3.0 Try again later"
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        self.messages.append(parsed)
        if self.drop_answer:  # the message is in; the sender never learns it
            self.drop_answer -= 1
            server.transport.close()
        return "250 OK"

    def to(self, address: str) -> list[EmailMessage]:
        return [m for m in self.messages if str(m["To"]) == address]

    def distinct(self) -> list[EmailMessage]:
        """The messages as the recipients' mailboxes show them: a copy with a Message-ID seen before
        (sent again after its answer was lost) is the same message."""
        seen: set[str] = set()
        shown = []
        for message in self.messages:
            if str(message["Message-ID"]) not in seen:
                seen.add(str(message["Message-ID"]))
                shown.append(message)
        return shown


@contextmanager
def smtp_server() -> Iterator[Mailbox]:
    mailbox = Mailbox()
    mailbox.port = free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=mailbox.port)
    controller.start()
    try:
        yield mailbox
    finally:
        controller.stop()
