"""A local Bot API server for tests: the real aiogram client talks HTTP to it, it records what it is sent.

It speaks the methods the bot uses (getMe, getUpdates, sendMessage, answerCallbackQuery, setWebhook,
deleteWebhook, setMyCommands) and can answer with a failure (429 with retry_after, 500) on demand.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections import defaultdict
from typing import Any

from aiohttp import web

BOT_ID = 7000001
TOKEN = "7000001:test-token"


class FakeTelegram:
    def __init__(self) -> None:
        self.updates: list[dict[str, Any]] = []
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.sent: list[dict[str, Any]] = []
        self.confirmed_offset = 0
        self.polls_after: dict[int, int] = {}  # update id → getUpdates calls since it was queued
        self.failures: dict[str, list[tuple[int, dict[str, Any]]]] = defaultdict(list)
        self.stalled: set[str] = set()  # methods that never answer, as a hung network would
        self.stalled_calls = 0
        self._release = asyncio.Event()
        self._update_ids = itertools.count(1)
        self._message_ids = itertools.count(1)
        self._arrived = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/bot{token}/{method}", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    async def stop(self) -> None:
        self._release.set()
        if self._runner is not None:
            await self._runner.cleanup()

    # ---- what a test does ------------------------------------------------------------------------

    def push(self, update: dict[str, Any], update_id: int | None = None) -> int:
        """Queue an update for getUpdates; the same id again is a re-delivery."""
        update = {"update_id": update_id if update_id is not None else next(self._update_ids), **update}
        self.updates.append(update)
        if self.confirmed_offset > int(update["update_id"]):  # a re-delivery: count the polls after it
            self.polls_after[int(update["update_id"])] = 0
        self._arrived.set()
        return int(update["update_id"])

    def fail_next(self, method: str, status: int, body: dict[str, Any]) -> None:
        self.failures[method].append((status, body))

    def sent_to(self, chat_id: int) -> list[dict[str, Any]]:
        return [m for m in self.sent if int(m["chat_id"]) == chat_id]

    async def processed(self, update_id: int, within: float = 15) -> None:
        """Wait until the bot confirmed the update (asked for a later offset): it is stored and answered."""
        deadline = time.monotonic() + within
        # Confirmed past it, and (for a re-delivery of an old id) fetched and confirmed once more since.
        while self.confirmed_offset <= update_id or self.polls_after.get(update_id, 2) < 2:
            if time.monotonic() > deadline:
                raise TimeoutError(f"update {update_id} was not confirmed")
            await asyncio.sleep(0.01)

    # ---- the Bot API -----------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        if request.match_info["token"] != TOKEN:
            return web.json_response(
                {"ok": False, "error_code": 401, "description": "Unauthorized"}, status=401
            )
        params = await self._params(request)
        self.calls.append((method, params))
        if method.lower() in self.stalled:
            self.stalled_calls += 1
            await self._release.wait()  # until the server is stopped
            return web.json_response(
                {"ok": False, "error_code": 502, "description": "Bad Gateway"}, status=502
            )
        if self.failures[method.lower()]:
            status, body = self.failures[method.lower()].pop(0)
            return web.json_response(body, status=status)
        result = await getattr(self, f"_{method.lower()}", self._true)(params)
        return web.json_response({"ok": True, "result": result})

    @staticmethod
    async def _params(request: web.Request) -> dict[str, Any]:
        if request.content_type == "application/json":
            return dict(await request.json())
        params: dict[str, Any] = {}
        for key, value in (await request.post()).items():
            text = str(value)
            try:
                params[key] = json.loads(text) if text[:1] in "[{" else text
            except ValueError:
                params[key] = text
        return params

    async def _true(self, params: dict[str, Any]) -> bool:
        return True

    async def _getme(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"id": BOT_ID, "is_bot": True, "first_name": "İşıq", "username": "isiqbot_test_bot"}

    async def _getupdates(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        offset = int(params.get("offset") or 0)
        for queued in self.polls_after:
            self.polls_after[queued] += 1
        if offset:
            self.confirmed_offset = max(self.confirmed_offset, offset)
            self.updates = [u for u in self.updates if u["update_id"] >= offset]
        waiting = min(float(params.get("timeout") or 0), 1.0)
        if not self.updates and waiting:
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), waiting)
            except TimeoutError:
                pass
        return list(self.updates)

    async def _sendmessage(self, params: dict[str, Any]) -> dict[str, Any]:
        message_id = next(self._message_ids)
        self.sent.append({**params, "message_id": message_id})
        chat_id = int(params["chat_id"])
        return {
            "message_id": message_id,
            "date": int(time.time()),
            "chat": {"id": chat_id, "type": "private"},
            "from": {"id": BOT_ID, "is_bot": True, "first_name": "İşıq"},
            "text": params.get("text", ""),
        }


class TelegramUser:
    """A person in a private chat with the bot, typing and tapping through the fake server."""

    def __init__(self, fake: FakeTelegram, user_id: int, language: str = "az") -> None:
        self.fake = fake
        self.id = user_id
        self.language = language
        self._message_ids = itertools.count(1)
        self.seen = 0

    def _sender(self) -> dict[str, Any]:
        return {"id": self.id, "is_bot": False, "first_name": "Elçin", "language_code": self.language}

    def _message(self, **content: Any) -> dict[str, Any]:
        return {
            "message": {
                "message_id": next(self._message_ids),
                "date": int(time.time()),
                "chat": {"id": self.id, "type": "private"},
                "from": self._sender(),
                **content,
            }
        }

    async def _do(self, update: dict[str, Any], update_id: int | None = None) -> str:
        uid = self.fake.push(update, update_id)
        await self.fake.processed(uid)
        return self.replies()

    def replies(self) -> str:
        """The text of what the bot sent since the last look."""
        sent = self.fake.sent_to(self.id)
        new, self.seen = sent[self.seen :], len(sent)
        return "\n".join(m.get("text", "") for m in new)

    async def text(self, text: str) -> str:
        return await self._do(self._message(text=text))

    async def contact(self, phone: str, owner: int | None = None) -> str:
        contact = {
            "phone_number": phone,
            "first_name": "Elçin",
            "user_id": owner if owner is not None else self.id,
        }
        return await self._do(self._message(contact=contact))

    async def sticker(self) -> str:
        sticker = {
            "file_id": "s1",
            "file_unique_id": "s1",
            "type": "regular",
            "width": 512,
            "height": 512,
            "is_animated": False,
            "is_video": False,
        }
        return await self._do(self._message(sticker=sticker))

    def buttons(self) -> list[tuple[str, str]]:
        """(label, callback data) of the inline keyboard of the last message that has one."""
        for message in reversed(self.fake.sent_to(self.id)):
            markup = message.get("reply_markup") or {}
            if "inline_keyboard" in markup:
                return [(b["text"], b["callback_data"]) for row in markup["inline_keyboard"] for b in row]
        return []

    async def press(self, label: str) -> str:
        for text, data in self.buttons():
            if label in text:
                return await self.press_data(data)
        raise AssertionError(f"no button {label!r} among {[t for t, _ in self.buttons()]}")

    async def press_data(self, data: str, update_id: int | None = None) -> str:
        callback = {
            "callback_query": {
                "id": f"cb-{self.id}-{time.monotonic_ns()}",
                "from": self._sender(),
                "chat_instance": str(self.id),
                "message": {
                    "message_id": 1,
                    "date": int(time.time()),
                    "chat": {"id": self.id, "type": "private"},
                },
                "data": data,
            }
        }
        return await self._do(callback, update_id)
