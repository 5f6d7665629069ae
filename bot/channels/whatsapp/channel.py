"""The WhatsApp channel: the webhook (verified, signed, each message once, each user in order), sends.

`GET /whatsapp/webhook` answers Meta's verification handshake. `POST /whatsapp/webhook` checks
`X-Hub-Signature-256` over the raw body with `WHATSAPP_APP_SECRET` before anything is parsed (401
otherwise), reads the payload with typed models (400 for what is not one), and answers 200 once every
message in it is stored (the answers are sent after that); 503 while the database is unreachable, so
Meta delivers it again.
Sends go to `{WHATSAPP_API_URL}/{WHATSAPP_PHONE_NUMBER_ID}/messages`.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import aiohttp
from aiohttp import web
from pydantic import ValidationError

from bot.channels.port import HeldAnswers, Sent, answer_within, one_by_one
from bot.channels.whatsapp import CHANNEL
from bot.channels.whatsapp.mapping import Inbound, map_message
from bot.channels.whatsapp.payload import Status, Webhook
from bot.channels.whatsapp.render import Body, render
from bot.core import metrics
from bot.core.context import log_context
from bot.core.links import PublicLinks
from bot.core.policy import StaffPolicy
from bot.core.service import Conversations
from bot.notify.outbox import Permanent, Temporary, chat_text, staff_file
from bot.web.server import Handler, try_again
from dialogs.events import Command, Text
from dialogs.ports import Subscriber
from dialogs.validate import mask_phone
from locales import Msg, payload_msg, translate
from storage import conversations, outbox, staff
from storage.db import storage_unavailable
from storage.models import Notification

log = logging.getLogger(__name__)
SIGNATURE_HEADER = "X-Hub-Signature-256"
RATE_LIMITED = {130429, 131056, 80007, 4, 80008}  # throughput, pair rate, account rate: back off, retry
WINDOW = timedelta(hours=24)
MAX_BODY = 3 * 1024 * 1024
CAPTION_LIMIT = 1024  # characters of a media message's caption
MEDIA_TYPES = {"photo": "image", "voice": "audio", "document": "document"}  # the Cloud API's word for each
MEDIA_EXTENSIONS = {
    "image/jpeg": "jpg",
    "image/png": "png",
    "audio/ogg": "ogg",
    "audio/mpeg": "mp3",
    "application/pdf": "pdf",
}


class Pacer:
    """At most `per_second` messages a second in all, and one a second to each person (bursts of 3)."""

    def __init__(self, per_second: float, per_user: float = 1.0, burst: float = 3.0) -> None:
        self.interval = 1.0 / per_second
        self.per_user = per_user
        self.burst = burst
        self.next_free = 0.0
        self.users: dict[str, tuple[float, float]] = {}  # user → (tokens, stamp)
        self.lock = asyncio.Lock()

    async def acquire(self, user: str) -> None:
        while True:
            async with self.lock:
                now = time.monotonic()
                tokens, stamp = self.users.get(user, (self.burst, now))
                tokens = min(self.burst, tokens + (now - stamp) * self.per_user)
                wait = max(self.next_free - now, (1 - tokens) / self.per_user if tokens < 1 else 0.0)
                if wait <= 0:
                    self.users[user] = (tokens - 1, now)
                    self.next_free = max(self.next_free, now) + self.interval
                    if len(self.users) > 10_000:
                        self.users = {u: v for u, v in self.users.items() if now - v[1] < 10}
                    return
            await asyncio.sleep(wait)


class GraphClient:
    """The Cloud API: send a message, read a media file."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        api_url: str,
        phone_number_id: str,
        token: str,
        mps: float = 80.0,
        per_user: float = 1.0,
    ) -> None:
        self.session = session
        self.api_url = api_url.rstrip("/")
        self.phone_number_id = phone_number_id
        self.headers = {"Authorization": f"Bearer {token}"}
        self.pacer = Pacer(mps, per_user)
        self.timeout = aiohttp.ClientTimeout(total=20)

    async def send(self, to: str, body: Body) -> str:
        """One message; its wamid. Raises Temporary (retry later) or Permanent."""
        await self.pacer.acquire(to)
        message = {"messaging_product": "whatsapp", "recipient_type": "individual", "to": to, **body}
        status, answer = await self._call("POST", f"{self.phone_number_id}/messages", json=message)
        if status < 300 and isinstance(answer, dict) and answer.get("messages"):
            return str(answer["messages"][0].get("id", ""))
        raise _refusal("WhatsApp", status, answer)

    async def upload(self, data: bytes, mime: str, filename: str = "photo.jpg") -> str:
        """Put a file in WhatsApp's media store; its media id."""
        form = aiohttp.FormData()
        form.add_field("messaging_product", "whatsapp")
        form.add_field("type", mime)
        form.add_field("file", data, filename=filename, content_type=mime)
        status, answer = await self._call("POST", f"{self.phone_number_id}/media", data=form)
        if status < 300 and isinstance(answer, dict) and answer.get("id"):
            return str(answer["id"])
        raise _refusal("WhatsApp media upload", status, answer)

    async def media(self, media_id: str) -> tuple[bytes, str]:
        """A media file's bytes and type: first its address, then the file, both with the token."""
        status, info = await self._call("GET", media_id)
        if status >= 300 or not isinstance(info, dict) or "url" not in info:
            raise _refusal(f"WhatsApp media {media_id}", status, info)
        try:
            async with self.session.get(info["url"], headers=self.headers, timeout=self.timeout) as r:
                if r.status >= 300:
                    raise _refusal("WhatsApp media download", r.status, None)
                data = await r.read()
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise Temporary(f"WhatsApp media download: {type(exc).__name__}") from exc
        return data, str(info.get("mime_type") or "image/jpeg")

    async def _call(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        """A Graph API call: its status and JSON answer; a network failure is Temporary."""
        url = f"{self.api_url}/{path}"
        try:
            async with self.session.request(
                method, url, headers=self.headers, timeout=self.timeout, **kwargs
            ) as r:
                return r.status, await r.json(content_type=None)
        except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
            raise Temporary(f"Graph API unreachable: {type(exc).__name__}") from exc


def _refusal(what: str, status: int, answer: Any) -> Temporary | Permanent:
    """Rate limits, 429 and 5xx may work later; any other refusal will not."""
    error = answer.get("error", {}) if isinstance(answer, dict) else {}
    code = int(error.get("code") or 0) if isinstance(error, dict) else 0
    message = error.get("message", "") if isinstance(error, dict) else ""
    reason = f"{what} {status} ({code}): {message}"[:200]
    if code in RATE_LIMITED or status == 429:
        metrics.RATE_LIMITED.labels(CHANNEL).inc()
        return Temporary(reason)
    if status >= 500:
        return Temporary(reason)
    return Permanent(reason)


class WhatsAppChannel:
    def __init__(
        self,
        service: Conversations,
        client: GraphClient,
        app_secret: str,
        verify_token: str,
        policy: StaffPolicy,
        links: PublicLinks,
        held: HeldAnswers,
        template: str | None = None,
        template_language: Callable[[str], str] | None = None,
        files: Callable[[str], Awaitable[tuple[bytes, str]]] | None = None,
    ) -> None:
        self.service = service
        self.db = service.db
        self.clock = service.clock
        self.wake = held.wake
        self.links = links
        self.client = client
        self.app_secret = app_secret.encode()
        self.verify_token = verify_token
        self.policy = policy
        self.held = held  # answers that wait in the outbox because WhatsApp was slow
        self.template = template
        self.template_language = template_language or (lambda lang: lang)
        self._replies: dict[str, asyncio.Task[None]] = {}
        self.files = files  # a staff member's photo or file another channel keeps (`Channels.media`)

    # ---- the webhook --------------------------------------------------------------------------------

    async def verify(self, request: web.Request) -> web.Response:
        query = request.query
        given = query.get("hub.verify_token", "")
        if query.get("hub.mode") == "subscribe" and hmac.compare_digest(
            given.encode(), self.verify_token.encode()
        ):
            return web.Response(text=query.get("hub.challenge", ""))
        return web.Response(status=403, text="verification failed")

    async def receive(self, request: web.Request) -> web.Response:
        if request.content_length is not None and request.content_length > MAX_BODY:
            return web.json_response({"error": "too large"}, status=413)
        raw = await request.read()
        given = request.headers.get(SIGNATURE_HEADER, "")
        expected = "sha256=" + hmac.new(self.app_secret, raw, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(given.encode(), expected.encode()):
            return web.json_response({"error": "bad signature"}, status=401)
        try:
            payload = Webhook.model_validate_json(raw)
        except ValidationError:
            return web.json_response({"error": "not a WhatsApp webhook"}, status=400)
        try:
            with log_context(channel=CHANNEL):  # each message and status adds its id (`process`)
                await self.process(payload)
        except Exception as exc:
            if not storage_unavailable(exc):
                raise
            log.warning("storage unavailable; asking Meta to deliver the webhook again")
            return try_again()
        return web.json_response({"ok": True})

    async def process(self, payload: Webhook) -> None:
        """Every message of a user one after another (in the order given); users and statuses alongside."""
        messages: list[Inbound] = []
        statuses: list[Status] = []
        for entry in payload.entry:
            for change in entry.changes:
                for message in change.value.messages:
                    inbound = map_message(change.value, message)
                    if inbound is None:
                        log.warning("a WhatsApp message without a sender was ignored (%s)", message.type)
                        continue
                    messages.append(inbound)
                statuses.extend(change.value.statuses)
                for error in change.value.errors:
                    log.warning("WhatsApp reported an error: %s %s", error.code, error.title)

        async def run(inbound: Inbound) -> None:
            # on every line logged while it is handled, and while its answers are sent (`_reply`'s task)
            with log_context(channel=CHANNEL, update_id=log_ref(inbound.message_id)):
                bodies, lang = await self.answer(inbound)
                self._reply(inbound.user_key, bodies, lang)

        await one_by_one(messages, lambda inbound: inbound.user_key, run)
        for status in statuses:
            with log_context(channel=CHANNEL, update_id=log_ref(status.id)):
                await self.status(status)

    def _reply(self, user_key: str, bodies: list[Body], lang: str) -> None:
        """Send the answers after the webhook is acknowledged; each person's in order, behind the last."""
        if not bodies:
            return
        previous = self._replies.get(user_key)

        async def send() -> None:
            if previous is not None:
                await asyncio.gather(previous, return_exceptions=True)

            async def send_now(body: Body) -> Sent:
                return await self._send_now(user_key, body)

            await self.held.send(user_key, bodies, lang, send_now, lambda body: {"body": body})

        task = asyncio.create_task(send())
        self._replies[user_key] = task

        def forget(done: asyncio.Task[None]) -> None:
            if self._replies.get(user_key) is done:
                del self._replies[user_key]

        task.add_done_callback(forget)

    async def settle(self) -> None:
        """Wait for the answers still being sent (tests; a clean stop)."""
        while self._replies:
            await asyncio.gather(*list(self._replies.values()), return_exceptions=True)

    async def answer(self, inbound: Inbound) -> tuple[list[Body], str]:
        """Store the message's effect; the answer to send, and its language."""
        subscriber = Subscriber(CHANNEL, inbound.user_key)
        event, more_from = inbound.event, 0
        if event is None:  # "More": the same question, the next rows
            handled, new = await self.service.receive(subscriber, None, inbound.message_id, inbound=True)
            if new and handled is not None and inbound.rev != handled.outcome.rev:
                handled = await self.service.handle(subscriber, None)  # a "More" of an older question
            elif new:
                more_from = inbound.more_from
        else:
            if isinstance(event, Text) and await self.service.language(subscriber) is None:
                event = Command("start")  # a first "Salam" is how people start in WhatsApp: welcome them
            handled, _ = await self.service.receive(subscriber, event, inbound.message_id, inbound=True)
        if handled is None:
            return [], "az"
        return render(handled.outcome, handled.lang, inbound.phone, more_from), handled.lang

    async def _send_now(self, to: str, body: Body) -> Sent:
        """An answer to what the person just wrote, by the channels' shared rule (`answer_within`)."""
        try:
            wamid = await answer_within(lambda: self.client.send(to, body))
        except Permanent as exc:
            log.error("WhatsApp refused an answer to %s (%s)", mask_phone("+" + to), exc.reason.split(":")[0])
            return Sent.UNREACHABLE
        return Sent.SENT if wamid is not None else Sent.LATER

    async def status(self, status: Status) -> None:
        """sent, delivered, read or failed, for a message we sent: the notification's state follows it."""
        now = self.clock()
        async with self.db.transaction() as session:
            row = await outbox.by_provider_id(session, CHANNEL, status.id)
            if row is None or row.id is None or row.state == outbox.FAILED:
                return  # not ours, or a failure already acted on (Meta re-delivers statuses)
            if status.status in ("delivered", "read"):
                outbox.mark_delivered(row, now)
            elif status.status == "failed":
                error = status.errors[0] if status.errors else None
                reason = f"WhatsApp failed ({error.code}): {error.title}" if error else "WhatsApp failed"
                await outbox.mark_failed(session, row.id, reason[:200], now)
                await outbox.fallback_to_sms(session, row.id, now)
                if row.application_id is not None:
                    await staff.to_thread(session, row.application_id, "card_refresh", {}, now)
        if status.status == "failed":
            self.wake()

    def _template(self, notification: Notification) -> Body:
        """A status change after the 24-hour window: the approved template, with the status page link."""
        assert self.template is not None and notification.application_id is not None
        params = payload_msg(notification.payload).params
        status = params.get("status")
        words = translate(status, notification.lang) if isinstance(status, Msg) else str(status or "")
        link = self.links.status_page(notification.application_id)
        language = self.template_language(notification.lang)
        return _template_body(self.template, language, str(params.get("number", "")), words, link)

    # ---- the outbox's sender for WhatsApp subscribers ------------------------------------------------

    async def deliver(self, notification: Notification) -> str | None:
        """In the 24-hour window, free text; outside it, the approved template, or else SMS (by failing)."""
        if notification.kind == outbox.REPLY:  # an answer that could not leave at once, as it was
            return await self.client.send(notification.user_key, notification.payload["body"])
        async with self.db.transaction() as session:
            last = await conversations.last_inbound(session, CHANNEL, notification.user_key)
        now = self.clock()
        text = chat_text(notification, self.policy.departments, self.policy.reopen_within)
        if last is not None and now - last < WINDOW:
            wamids = [
                await self.client.send(notification.user_key, body)
                for body in await self._bodies(notification, text)
            ]
            if notification.application_id is not None:  # the person's reply to it goes to the thread
                async with self.db.transaction() as session:
                    for wamid in wamids:
                        await staff.link(
                            session,
                            CHANNEL,
                            notification.user_key,
                            wamid,
                            notification.application_id,
                            "to_subscriber",
                            now,
                        )
            return wamids[-1]
        if self.template and notification.kind == "status" and notification.application_id is not None:
            return await self.client.send(notification.user_key, self._template(notification))
        raise Permanent("outside WhatsApp's 24-hour window and no template for it")

    async def _bodies(self, notification: Notification, text: str) -> list[Body]:
        """The messages a notification takes: its text; or a staff member's photo, voice note or
        document (another channel's file: fetched and uploaded) with the text as its caption where it
        fits, else before it (a voice note has no caption in WhatsApp)."""
        text_body: Body = {"type": "text", "text": {"body": text[:4096]}}
        file = staff_file(notification)
        if file is None:
            return [text_body]
        if self.files is None:
            raise Permanent("a staff member's file, and no way to read it")
        data, fetched = await self.files(str(file["ref"]))
        kind = str(file["kind"])
        # The platform's word for a voice note's or a document's type; a photo's is the one fetched.
        mime = str(file.get("mime") or fetched) if kind != "photo" else fetched
        name = str(file.get("name") or "") or f"{kind}.{MEDIA_EXTENSIONS.get(mime.split(';')[0], 'bin')}"
        media: dict[str, str] = {"id": await self.client.upload(data, mime, name)}
        captioned = kind != "voice" and len(text) <= CAPTION_LIMIT
        if captioned:
            media["caption"] = text
        if kind == "document":
            media["filename"] = name
        shown = MEDIA_TYPES[kind]
        return [{"type": shown, shown: media}] if captioned else [text_body, {"type": shown, shown: media}]


def log_ref(wamid: str) -> str:
    """A message in the log: a digest of its wamid, which holds the person's number (in base64)."""
    return "wa." + hashlib.sha256(wamid.encode()).hexdigest()[:16]


def _template_body(name: str, language: str, number: str, status: str, link: str) -> Body:
    """The approved status template, its body's parameters in order: number, status, link."""
    parameters = [{"type": "text", "text": text} for text in (number, status, link)]
    return {
        "type": "template",
        "template": {
            "name": name,
            "language": {"code": language},
            "components": [{"type": "body", "parameters": parameters}],
        },
    }


def routes(channel: WhatsAppChannel) -> list[tuple[str, str, Handler]]:
    return [("GET", "/whatsapp/webhook", channel.verify), ("POST", "/whatsapp/webhook", channel.receive)]
