"""SMS: the gateway port, its HTTP adapter and the log sink, and the texts with their links.

The HTTP adapter POSTs `{"from": SMS_SENDER, "to": "+994…", "text": "…"}` as JSON to `SMS_GATEWAY_URL`
(bearer `SMS_GATEWAY_TOKEN` when set; basic authentication when the URL carries `user:password@`) and
reads the provider's message id from `{"id": "…"}`. A timeout, a 5xx or a 429 may work later; any
other refusal will not. An SMS of the outbox carries an `Idempotency-Key` header, the same at every
attempt: an SMS the gateway took but whose answer was lost (a timeout, a killed worker) is sent
again with it, and a gateway that honours the key answers the first id instead of sending twice.
"""

from __future__ import annotations

import hmac
import logging
import math
from typing import Any, Protocol

import aiohttp
from aiohttp import web
from yarl import URL

from bot.core.clock import Clock
from bot.core.links import PublicLinks
from bot.notify.outbox import Permanent, Temporary, delivery_key
from bot.web.server import Handler
from dialogs.validate import mask_phone
from locales import Msg, payload_msg, translate
from storage import outbox, staff
from storage.db import Database
from storage.models import Notification

log = logging.getLogger(__name__)
GSM_BASIC = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ ÆæßÉ!\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM_EXTENDED = set("^{}\\[~]|€")


def sms_parts(text: str) -> int:
    """How many SMS parts a text takes: GSM-7 (160, or 153 a part) or else UCS-2 (70, or 67 a part)."""
    if all(ch in GSM_BASIC or ch in GSM_EXTENDED for ch in text):
        septets = sum(2 if ch in GSM_EXTENDED else 1 for ch in text)
        return 1 if septets <= 160 else math.ceil(septets / 153)
    units = len(text.encode("utf-16-le")) // 2
    return 1 if units <= 70 else math.ceil(units / 67)


class SmsGateway(Protocol):
    async def send(self, phone: str, text: str, key: str | None = None) -> str | None:
        """Hand one SMS over (`key`: the same at each attempt); the provider's id. Raises Temporary or
        Permanent."""
        ...


class HttpSmsGateway:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        url: str,
        sender: str,
        token: str | None = None,
        timeout: float = 10.0,
    ) -> None:
        parsed = URL(url)
        self.auth = aiohttp.BasicAuth(parsed.user or "", parsed.password or "") if parsed.user else None
        self.url = parsed.with_user(None) if parsed.user else parsed
        self.session = session
        self.sender = sender
        self.token = token
        self.timeout = aiohttp.ClientTimeout(total=timeout)

    async def send(self, phone: str, text: str, key: str | None = None) -> str | None:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        if key is not None:
            headers["Idempotency-Key"] = key
        body = {"from": self.sender, "to": phone, "text": text}
        try:
            async with self.session.post(
                self.url, json=body, headers=headers, auth=self.auth, timeout=self.timeout
            ) as response:
                if response.status == 429 or response.status >= 500:
                    retry_after = _seconds(response.headers.get("Retry-After"))
                    raise Temporary(f"SMS gateway {response.status}", retry_after)
                if response.status >= 400:
                    reason = (await response.text())[:200]
                    raise Permanent(f"SMS gateway refused ({response.status}): {reason}")
                answer: Any = await response.json(content_type=None)
        except TimeoutError as exc:
            raise Temporary("SMS gateway timed out") from exc
        except aiohttp.ClientError as exc:
            raise Temporary(f"SMS gateway unreachable: {type(exc).__name__}") from exc
        except ValueError as exc:  # 2xx without JSON: handed over, but without an id
            log.warning("the SMS gateway's answer to an SMS for %s was not JSON", mask_phone(phone))
            raise Permanent("SMS gateway answered without JSON; it may have been sent") from exc
        provider_id = answer.get("id") if isinstance(answer, dict) else None
        log.info("SMS to %s handed over (%s)", mask_phone(phone), provider_id)
        return str(provider_id) if provider_id is not None else None


class LogSmsGateway:
    """No gateway configured: the SMS is written to the log, with the number masked."""

    async def send(self, phone: str, text: str, key: str | None = None) -> str | None:
        log.info(
            "SMS to %s (no SMS_GATEWAY_URL, so only logged): %s parts", mask_phone(phone), sms_parts(text)
        )
        return None


class GatewaySms:
    """The dialog's `Sms` port (one-time codes) over a gateway, once the update is committed."""

    def __init__(self, gateway: SmsGateway) -> None:
        self.gateway = gateway

    async def send(self, phone: str, text: Msg, lang: str) -> None:
        try:
            await self.gateway.send(phone, translate(text, lang))
        except (Temporary, Permanent) as exc:
            # Not the gateway's reason: a gateway may echo the number in it.
            log.warning("a one-time code SMS to %s failed (%s)", mask_phone(phone), type(exc).__name__)


class SmsSender:
    """The outbox's sender for SMS: the notification's text in the subscriber's language, with its link."""

    def __init__(self, gateway: SmsGateway, links: PublicLinks) -> None:
        self.gateway = gateway
        self.links = links

    def text(self, notification: Notification) -> str:
        params: dict[str, Any] = dict(payload_msg(notification.payload).params)
        if notification.application_id is not None:
            params["link"] = self.links.status_page(notification.application_id)
        return translate(Msg(str(notification.payload.get("key", "")), params), notification.lang)

    async def deliver(self, notification: Notification) -> str | None:
        return await self.gateway.send(
            notification.user_key, self.text(notification), delivery_key(notification)
        )


def _seconds(value: str | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None


DELIVERY_STATES = {"delivered", "failed", "undelivered", "expired", "rejected"}


def delivery_handler(db: Database, token: str | None, clock: Clock) -> Handler:
    """POST /sms/delivery: the gateway's delivery report, `{"id": "…", "status": "delivered" | "failed", …}`.

    The report must carry `Authorization: Bearer SMS_GATEWAY_TOKEN`; without that setting, reports are
    refused (401), as every webhook here is authenticated.
    """

    async def handle(request: web.Request) -> web.Response:
        given = request.headers.get("Authorization", "")
        if token is None or not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            # Every webhook is authenticated: without SMS_GATEWAY_TOKEN there is nothing to check, so no.
            return web.json_response({"error": "unauthorized"}, status=401)
        try:
            report = await request.json()
        except ValueError:
            return web.json_response({"error": "the body is not JSON"}, status=400)
        if (
            not isinstance(report, dict)
            or not isinstance(report.get("id"), str | int)
            or not 0 < len(str(report["id"])) <= 128
            or str(report.get("status", "")).lower() not in DELIVERY_STATES
        ):
            return web.json_response({"error": "expected {id, status}"}, status=400)
        state = str(report["status"]).lower()
        async with db.transaction() as session:
            row = await outbox.by_provider_id(session, outbox.SMS, str(report["id"]))
            if row is None:
                return web.json_response({"error": "unknown message id"}, status=404)
            if row.state in (outbox.DELIVERED, outbox.FAILED):
                return web.json_response({"ok": True})  # reported before: nothing changes twice
            if state == "delivered":
                outbox.mark_delivered(row, clock())
            else:
                assert row.id is not None
                reason = str(report.get("error") or report.get("reason") or state)[:200]
                await outbox.mark_failed(session, row.id, f"operator: {reason}", clock())
                if row.application_id is not None:  # staff see it on the card: they may need to phone
                    await staff.to_thread(session, row.application_id, "card_refresh", {}, clock())
        return web.json_response({"ok": True})

    return handle
