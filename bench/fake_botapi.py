"""A minimal local Bot API server for the benchmarks (aiohttp), counting what the bots ask of it.

It answers what a webhook bot calls (getMe, setWebhook, deleteWebhook, getWebhookInfo, setMyCommands,
sendMessage, sendPhoto, sendLocation, editMessageText, editMessageReplyMarkup, answerCallbackQuery,
createForumTopic, getChat, getChatAdministrators; anything else with `true`), with results the
aiogram client accepts. It counts the calls by method and the messages put in chats ("sends":
sendMessage, sendPhoto, sendLocation; "edits": editMessageText, editMessageReplyMarkup), keeps for
each chat the time of each message, its last inline keyboard and whether the last answer asked for a
contact, so that a load generator in the same process can press the buttons a person would see.

`limit_per_second` (0: none) is Telegram's limit of about 30 messages a second per bot: above it, in
any sliding second, a message call is answered 429 with retry_after=1, and counted.

    .venv/bin/python -m bench.fake_botapi --port 8081 --limit-per-second 30
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import time
from collections import Counter, defaultdict, deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

SENDS = frozenset({"sendmessage", "sendphoto", "sendlocation"})
EDITS = frozenset({"editmessagetext", "editmessagereplymarkup"})
MESSAGES = SENDS | EDITS  # the calls that put a message in a chat, and count against the limit


@dataclass(slots=True)
class Shown:
    """One message as the chat shows it."""

    at: float  # time.monotonic() when the fake received it
    method: str
    text: str
    keyboard: list[str] | None  # the callback data of its inline keyboard, if it has one
    asks_contact: bool  # a reply keyboard with a "share my contact" button


@dataclass(slots=True)
class ChatLog:
    messages: list[Shown] = field(default_factory=list)
    keyboard: list[str] = field(default_factory=list)  # the last inline keyboard the chat was shown
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def times(self) -> list[float]:
        return [m.at for m in self.messages]


@dataclass(slots=True)
class Counts:
    calls: Counter[str] = field(default_factory=Counter)  # by method, as called
    sends: int = 0
    edits: int = 0
    to_private: int = 0  # sends and edits to people's chats (positive ids) …
    to_groups: int = 0  # … and to group chats (the staff chats)
    too_many: int = 0  # 429s answered because of the limit

    @property
    def messages(self) -> int:
        return self.sends + self.edits


class FakeBotApi:
    def __init__(self, limit_per_second: float = 0) -> None:
        self.limit = limit_per_second
        self.counts = Counts()
        self.chats: dict[int, ChatLog] = defaultdict(ChatLog)
        self.webhooks: dict[str, str] = {}  # token → the URL setWebhook left
        self._window: dict[str, deque[float]] = defaultdict(deque)  # token → times of accepted messages
        self._message_ids = itertools.count(1)
        self._thread_ids = itertools.count(5001)
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        app = web.Application(client_max_size=8 * 1024 * 1024)
        app.router.add_post("/bot{token}/{method}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        bound = self._runner.addresses[0][1]
        self.url = f"http://{host}:{bound}"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def reset(self) -> None:
        """Forget the counts and the chats (between two bots of one run); webhooks stay."""
        self.counts = Counts()
        self.chats = defaultdict(ChatLog)
        self._window.clear()

    def chat(self, chat_id: int) -> ChatLog:
        return self.chats[chat_id]

    async def wait_message(self, chat_id: int, seen: int, within: float) -> bool:
        """Whether the chat has more than `seen` messages, waiting at most `within` seconds."""
        log = self.chats[chat_id]
        deadline = time.monotonic() + within
        while len(log.messages) <= seen:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            log.arrived.clear()
            try:
                await asyncio.wait_for(log.arrived.wait(), left)
            except TimeoutError:
                return len(log.messages) > seen
        return True

    # ---- the Bot API -----------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.Response:
        token = request.match_info["token"]
        method = request.match_info["method"]
        key = method.lower()
        params = await _params(request)
        self.counts.calls[method] += 1
        if key in MESSAGES and self.limit > 0 and not self._admit(token):
            self.counts.too_many += 1
            return web.json_response(
                {
                    "ok": False,
                    "error_code": 429,
                    "description": "Too Many Requests: retry after 1",
                    "parameters": {"retry_after": 1},
                },
                status=429,
            )
        handler = getattr(self, f"_{key}", None)
        result = handler(token, params) if handler is not None else True
        return web.json_response({"ok": True, "result": result})

    def _admit(self, token: str) -> bool:
        """Whether one more message fits this token's last second."""
        now = time.monotonic()
        window = self._window[token]
        while window and now - window[0] >= 1.0:
            window.popleft()
        if len(window) >= self.limit:
            return False
        window.append(now)
        return True

    def _show(self, method: str, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """Record a message put in a chat; its chat id and the markup to echo (inline keyboards only)."""
        chat_id = int(params.get("chat_id") or 0)
        markup = params.get("reply_markup")
        markup = markup if isinstance(markup, dict) else {}
        keyboard = None
        echo: dict[str, Any] = {}
        if "inline_keyboard" in markup:
            keyboard = [
                str(button.get("callback_data", "")) for row in markup["inline_keyboard"] for button in row
            ]
            echo = {"reply_markup": markup}  # a Message carries only an inline keyboard
        asks_contact = any(
            button.get("request_contact") for row in markup.get("keyboard", []) for button in row
        )
        if method.lower() in SENDS:
            self.counts.sends += 1
        else:
            self.counts.edits += 1
        if chat_id > 0:
            self.counts.to_private += 1
        else:
            self.counts.to_groups += 1
        log = self.chats[chat_id]
        text = str(params.get("text") or params.get("caption") or "")
        log.messages.append(Shown(time.monotonic(), method, text, keyboard, asks_contact))
        if keyboard is not None:
            log.keyboard = keyboard
        log.arrived.set()
        return chat_id, echo

    def _message(self, chat_id: int, message_id: int | None = None, **content: Any) -> dict[str, Any]:
        return {
            "message_id": message_id if message_id is not None else next(self._message_ids),
            "date": int(time.time()),
            "chat": {"id": chat_id, "type": "private" if chat_id > 0 else "supergroup"},
            "from": {"id": 1, "is_bot": True, "first_name": "Bench"},
            **content,
        }

    def _sendmessage(self, token: str, params: dict[str, Any]) -> dict[str, Any]:
        chat_id, echo = self._show("sendMessage", params)
        return self._message(chat_id, text=str(params.get("text", "")), **echo)

    def _sendphoto(self, token: str, params: dict[str, Any]) -> dict[str, Any]:
        chat_id, echo = self._show("sendPhoto", params)
        photo = [{"file_id": str(params.get("photo")), "file_unique_id": "p1", "width": 90, "height": 90}]
        content: dict[str, Any] = {"photo": photo, **echo}
        if params.get("caption"):
            content["caption"] = str(params["caption"])
        return self._message(chat_id, **content)

    def _sendlocation(self, token: str, params: dict[str, Any]) -> dict[str, Any]:
        chat_id, echo = self._show("sendLocation", params)
        location = {"latitude": float(params["latitude"]), "longitude": float(params["longitude"])}
        return self._message(chat_id, location=location, **echo)

    def _editmessagetext(self, token: str, params: dict[str, Any]) -> dict[str, Any] | bool:
        if params.get("inline_message_id"):
            return True
        chat_id, echo = self._show("editMessageText", params)
        message_id = int(params["message_id"])
        return self._message(chat_id, message_id, text=str(params.get("text", "")), **echo)

    def _editmessagereplymarkup(self, token: str, params: dict[str, Any]) -> dict[str, Any] | bool:
        if params.get("inline_message_id"):
            return True
        chat_id, echo = self._show("editMessageReplyMarkup", params)
        return self._message(chat_id, int(params["message_id"]), text="…", **echo)

    def _getme(self, token: str, params: dict[str, Any]) -> dict[str, Any]:
        bot_id = int(token.split(":", 1)[0]) if token.split(":", 1)[0].isdigit() else 1
        return {"id": bot_id, "is_bot": True, "first_name": "Bench", "username": f"bench_{bot_id}_bot"}

    def _setwebhook(self, token: str, params: dict[str, Any]) -> bool:
        self.webhooks[token] = str(params.get("url") or "")
        return True

    def _deletewebhook(self, token: str, params: dict[str, Any]) -> bool:
        self.webhooks.pop(token, None)
        return True

    def _getwebhookinfo(self, token: str, params: dict[str, Any]) -> dict[str, Any]:
        url = self.webhooks.get(token, "")
        return {"url": url, "has_custom_certificate": False, "pending_update_count": 0}

    def _createforumtopic(self, token: str, params: dict[str, Any]) -> dict[str, Any]:
        return {
            "message_thread_id": next(self._thread_ids),
            "name": params.get("name"),
            "icon_color": 7322096,
        }

    def _getchat(self, token: str, params: dict[str, Any]) -> dict[str, Any]:
        chat_id = int(params["chat_id"])
        return {
            "id": chat_id,
            "type": "private" if chat_id > 0 else "supergroup",
            "is_forum": False,
            "accent_color_id": 0,
            "max_reaction_count": 11,
            "accepted_gift_types": {
                "unlimited_gifts": False,
                "limited_gifts": False,
                "unique_gifts": False,
                "premium_subscription": False,
                "gifts_from_channels": False,
            },
        }

    def _getchatadministrators(self, token: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        return []


async def _params(request: web.Request) -> dict[str, Any]:
    """The call's parameters, from JSON or a form (aiogram's: complex values are JSON strings)."""
    if request.content_type == "application/json":
        return dict(await request.json())
    params: dict[str, Any] = {}
    for key, value in (await request.post()).items():
        text = str(value)
        if key in (
            "reply_markup",
            "entities",
            "allowed_updates",
            "commands",
            "scope",
            "link_preview_options",
        ):
            try:
                params[key] = json.loads(text)
                continue
            except ValueError:
                pass
        params[key] = text
    return params


async def serve(port: int, limit: float) -> None:
    fake = FakeBotApi(limit)
    url = await fake.start(port=port)
    print(
        f"fake Bot API on {url} (limit {limit or 'none'} messages/s per token); Ctrl-C stops it", flush=True
    )
    try:
        while True:
            await asyncio.sleep(10)
            counts = fake.counts
            print(
                f"calls {sum(counts.calls.values())}, sends {counts.sends}, edits {counts.edits}, "
                f"429s {counts.too_many}",
                flush=True,
            )
    finally:
        await fake.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument(
        "--limit-per-second", type=float, default=0, help="messages a second per token (0: none)"
    )
    args = parser.parse_args()
    try:
        asyncio.run(serve(args.port, args.limit_per_second))
    except KeyboardInterrupt:
        pass
