"""A local Graph API for tests: records the messages the bot sends, serves media, fails on demand.

And a WhatsApp user who posts webhooks in the Cloud API's exact shapes, signed like Meta signs them.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp import web

PHONE_NUMBER_ID = "106540352242922"
GRAPH_TOKEN = "EAAG-test-token"
APP_SECRET = "whatsapp-app-secret-for-tests"
VERIFY_TOKEN = "verify-token-for-tests"
IMAGE = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


class FakeGraph:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.failures: list[tuple[int, dict[str, Any]]] = []
        self.media_requests: list[str] = []
        self.uploads: list[dict[str, Any]] = []
        self._ids = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/{phone_id}/messages", self._messages)
        app.router.add_post("/{phone_id}/media", self._upload)
        app.router.add_get("/files/{media_id}", self._file)
        app.router.add_get("/{media_id}", self._media)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def sent_to(self, to: str) -> list[dict[str, Any]]:
        return [m for m in self.sent if m["to"] == to]

    def fail_next(self, status: int, code: int, message: str = "failed") -> None:
        self.failures.append(
            (status, {"error": {"message": message, "type": "OAuthException", "code": code}})
        )

    def _authorised(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == f"Bearer {GRAPH_TOKEN}"

    async def _messages(self, request: web.Request) -> web.Response:
        if not self._authorised(request) or request.match_info["phone_id"] != PHONE_NUMBER_ID:
            return web.json_response(
                {"error": {"message": "Invalid OAuth access token", "code": 190}}, status=401
            )
        body = await request.json()
        if self.failures:
            status, error = self.failures.pop(0)
            return web.json_response(error, status=status)
        wamid = f"wamid.OUT{next(self._ids):06d}"
        self.sent.append({**body, "id": wamid})
        return web.json_response(
            {
                "messaging_product": "whatsapp",
                "contacts": [{"input": body["to"], "wa_id": body["to"]}],
                "messages": [{"id": wamid}],
            }
        )

    async def _upload(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return web.json_response(
                {"error": {"message": "Invalid OAuth access token", "code": 190}}, status=401
            )
        form = await request.post()
        upload = form["file"]
        data = upload.file.read() if hasattr(upload, "file") else bytes(str(upload), "utf-8")
        self.uploads.append(
            {
                "messaging_product": form.get("messaging_product"),
                "type": form.get("type"),
                "data": data,
                "filename": getattr(upload, "filename", None),
            }
        )
        return web.json_response({"id": f"media-up-{len(self.uploads)}"})

    async def _media(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return web.json_response(
                {"error": {"message": "Invalid OAuth access token", "code": 190}}, status=401
            )
        media_id = request.match_info["media_id"]
        self.media_requests.append(media_id)
        return web.json_response(
            {
                "url": f"{self.url}/files/{media_id}",
                "mime_type": "image/png",
                "sha256": "x",
                "file_size": len(IMAGE),
                "id": media_id,
                "messaging_product": "whatsapp",
            }
        )

    async def _file(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return web.Response(status=401)
        return web.Response(body=IMAGE, content_type="image/png")


def sign(body: bytes, secret: str = APP_SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class WaUser:
    """A person in WhatsApp: each action is a webhook POST shaped as the Cloud API documents it."""

    def __init__(
        self,
        graph: FakeGraph,
        webhook: str,
        wa_id: str | None,
        user_id: str | None = None,
        name: str = "Elçin",
        settle: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.settle = settle  # waits for the answers the bot sends after acknowledging the webhook
        self.graph = graph
        self.webhook = webhook
        self.wa_id = wa_id
        self.user_id = user_id
        self.name = name
        self._ids = itertools.count(1)
        self.seen = 0
        self.last_status = 0

    @property
    def key(self) -> str:
        return self.user_id or self.wa_id or ""

    def envelope(self, **message: Any) -> dict[str, Any]:
        contact: dict[str, Any] = {"profile": {"name": self.name}}
        sender: dict[str, Any] = {}
        if self.wa_id:
            contact["wa_id"] = self.wa_id
            sender["from"] = self.wa_id
        if self.user_id:
            contact["user_id"] = self.user_id
            sender["from_user_id"] = self.user_id
        wamid = message.pop("id", None) or f"wamid.IN{self.key}{next(self._ids):05d}"
        sent = {**sender, "id": wamid, "timestamp": str(int(time.time())), **message}
        return webhook({"contacts": [contact], "messages": [sent]})

    async def post(self, payload: dict[str, Any], signature: str | None = None) -> int:
        body = json.dumps(payload).encode()
        headers = {"Content-Type": "application/json", "X-Hub-Signature-256": signature or sign(body)}
        async with aiohttp.ClientSession() as http, http.post(self.webhook, data=body, headers=headers) as r:
            self.last_status = r.status
            return r.status

    def replies(self) -> list[dict[str, Any]]:
        sent = self.graph.sent_to(self.key)
        new, self.seen = sent[self.seen :], len(sent)
        return new

    async def _do(self, payload: dict[str, Any]) -> str:
        status = await self.post(payload)
        assert status == 200, status
        if self.settle is not None:
            await self.settle()
        return text_of(self.replies())

    async def text(self, body: str, reply_to: str | None = None, wamid: str | None = None) -> str:
        message: dict[str, Any] = {"type": "text", "text": {"body": body}}
        if reply_to:
            message["context"] = {"from": "994125551234", "id": reply_to}
        if wamid:
            message["id"] = wamid
        return await self._do(self.envelope(**message))

    def options(self) -> list[tuple[str, str]]:
        """(id, title) of the buttons or list rows of the last interactive message to this user."""
        for message in reversed(self.graph.sent_to(self.key)):
            if message.get("type") != "interactive":
                continue
            interactive = message["interactive"]
            if interactive["type"] == "button":
                return [(b["reply"]["id"], b["reply"]["title"]) for b in interactive["action"]["buttons"]]
            return [(r["id"], r["title"]) for s in interactive["action"]["sections"] for r in s["rows"]]
        return []

    async def press(self, label: str) -> str:
        for option_id, title in self.options():
            if label in title or option_id.endswith(f"|{label}"):
                return await self.press_id(option_id, title)
        raise AssertionError(f"no option {label!r} among {self.options()}")

    async def press_id(self, option_id: str, title: str = "x") -> str:
        kind = "button_reply"
        for message in reversed(self.graph.sent_to(self.key)):
            if message.get("type") == "interactive":
                kind = "button_reply" if message["interactive"]["type"] == "button" else "list_reply"
                break
        reply = {"type": kind, kind: {"id": option_id, "title": title}}
        return await self._do(self.envelope(type="interactive", interactive=reply))

    async def location(self, latitude: float, longitude: float) -> str:
        place = {"latitude": latitude, "longitude": longitude, "name": "Ev", "address": "Bakı"}
        return await self._do(self.envelope(type="location", location=place))

    async def image(self, media_id: str, caption: str = "", reply_to: str | None = None) -> str:
        image = {"caption": caption, "mime_type": "image/jpeg", "sha256": "abc", "id": media_id}
        context = {"context": {"from": "994125551234", "id": reply_to}} if reply_to else {}
        return await self._do(self.envelope(type="image", image=image, **context))

    async def sticker(self) -> str:
        return await self._do(
            self.envelope(
                type="sticker",
                sticker={"mime_type": "image/webp", "sha256": "x", "id": "s1", "animated": False},
            )
        )


def text_of(messages: list[dict[str, Any]]) -> str:
    out: list[str] = []
    for message in messages:
        if message.get("type") == "text":
            out.append(message["text"]["body"])
        elif message.get("type") == "interactive":
            out.append(message["interactive"]["body"]["text"])
        elif message.get("type") == "template":
            out.append("[template " + message["template"]["name"] + "]")
    return "\n".join(out)


def webhook(value: dict[str, Any]) -> dict[str, Any]:
    """The envelope Meta posts: one entry, one change of the `messages` field, with this value."""
    metadata = {"display_phone_number": "994125551234", "phone_number_id": PHONE_NUMBER_ID}
    change = {"value": {"messaging_product": "whatsapp", "metadata": metadata, **value}, "field": "messages"}
    return {"object": "whatsapp_business_account", "entry": [{"id": "102290129340398", "changes": [change]}]}


def status_payload(wamid: str, status: str, recipient: str, error: int | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "id": wamid,
        "status": status,
        "timestamp": str(int(time.time())),
        "recipient_id": recipient,
    }
    if error is not None:
        entry["errors"] = [
            {"code": error, "title": "Message undeliverable", "message": "Message undeliverable"}
        ]
    return webhook({"statuses": [entry]})
