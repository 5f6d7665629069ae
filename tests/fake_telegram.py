"""A local Bot API server for tests: the real aiogram client talks HTTP to it, it records what it is sent.

It speaks the methods the bot uses (getMe, getUpdates, sendMessage, sendPhoto, sendMediaGroup,
sendVoice, sendDocument, sendLocation,
editMessageText, editMessageCaption, answerCallbackQuery, getChat, createForumTopic,
getChatAdministrators, setMessageReaction, setWebhook, deleteWebhook, setMyCommands) and can answer
with a failure (429 with
retry_after, 500, 403) on demand, or for every send* call during a time window (`down_until`: 502,
`throttled_until`: 429 with `retry_after`).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections import Counter, defaultdict
from typing import Any

from aiohttp import web

BOT_ID = 7000001
TOKEN = "7000001:test-token"
PHOTO = b"\xff\xd8\xff\xe0" + b"telegram-photo" * 8  # what a staff member's photo downloads as


class FakeTelegram:
    def __init__(self) -> None:
        self.updates: list[dict[str, Any]] = []
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.sent: list[dict[str, Any]] = []
        self.confirmed_offset = 0
        self.polls_after: dict[int, int] = {}  # update id → getUpdates calls since it was queued
        self.failures: dict[str, list[tuple[int, dict[str, Any]]]] = defaultdict(list)
        self.stalled: set[str] = set()  # methods that never answer, as a hung network would
        self.blocked: set[int] = set()  # private chats whose person blocked the bot
        self.webhook_url = ""  # as setWebhook left it
        self.down_until = 0.0  # until then (time.monotonic()), every send* call gets a 502
        self.throttled_until = 0.0  # until then, every send* call gets a 429 with `retry_after`
        self.retry_after = 5
        self.refused: Counter[int] = Counter()  # the statuses of the send* calls refused by those two
        self.stalled_calls = 0
        self._release = asyncio.Event()
        self._update_ids = itertools.count(1)
        self._message_ids = itertools.count(1)
        self._arrived = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.url = ""
        self.forums: set[int] = set()  # group chats that are forums
        self.topics: dict[int, list[tuple[int, str]]] = defaultdict(list)  # chat → (thread id, name)
        self.admins: dict[int, list[int]] = defaultdict(list)
        self.edits: list[dict[str, Any]] = []
        self.reactions: list[dict[str, Any]] = []
        self._thread_ids = itertools.count(5001)

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/bot{token}/{method}", self._handle)
        app.router.add_get("/file/bot{token}/{path:.+}", self._file)
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
        if method.lower().startswith("send") and time.monotonic() < self.down_until:
            self.refused[502] += 1
            return web.json_response(
                {"ok": False, "error_code": 502, "description": "Bad Gateway"}, status=502
            )
        if method.lower().startswith("send") and time.monotonic() < self.throttled_until:
            self.refused[429] += 1
            too_many = {
                "ok": False,
                "error_code": 429,
                "description": f"Too Many Requests: retry after {self.retry_after}",
                "parameters": {"retry_after": self.retry_after},
            }
            return web.json_response(too_many, status=429)
        if method.lower().startswith("send") and int(params.get("chat_id") or 0) in self.blocked:
            blocked = {
                "ok": False,
                "error_code": 403,
                "description": "Forbidden: bot was blocked by the user",
            }
            return web.json_response(blocked, status=403)
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
                params[key] = json.loads(text) if text[:1] in "[{" or text in ("true", "false") else text
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

    def _record(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        message_id = next(self._message_ids)
        self.sent.append({**params, "method": method, "message_id": message_id})
        chat_id = int(params["chat_id"])
        message: dict[str, Any] = {
            "message_id": message_id,
            "date": int(time.time()),
            "chat": {"id": chat_id, "type": "private" if chat_id > 0 else "supergroup"},
            "from": {"id": BOT_ID, "is_bot": True, "first_name": "İşıq"},
        }
        if params.get("message_thread_id"):
            message["message_thread_id"] = int(params["message_thread_id"])
            message["is_topic_message"] = True
        return message

    async def _sendmessage(self, params: dict[str, Any]) -> dict[str, Any]:
        return {**self._record("sendMessage", params), "text": params.get("text", "")}

    async def _sendphoto(self, params: dict[str, Any]) -> dict[str, Any]:
        photo = [{"file_id": str(params["photo"]), "file_unique_id": "u1", "width": 90, "height": 90}]
        return {**self._record("sendPhoto", params), "photo": photo, "caption": params.get("caption")}

    async def _sendmediagroup(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        """An album: one recorded call (as Telegram counts it against a group's limit), a message per item."""
        media = params["media"] if isinstance(params["media"], list) else json.loads(str(params["media"]))
        first = self._record("sendMediaGroup", params)
        messages = [first] + [{**first, "message_id": next(self._message_ids)} for _ in media[1:]]
        for message, item in zip(messages, media, strict=True):
            file_id = str(item["media"])
            message["photo"] = [{"file_id": file_id, "file_unique_id": file_id, "width": 90, "height": 90}]
        return messages

    async def _sendvoice(self, params: dict[str, Any]) -> dict[str, Any]:
        voice = {"file_id": str(params["voice"]), "file_unique_id": "v1", "duration": 1}
        return {**self._record("sendVoice", params), "voice": voice}

    async def _senddocument(self, params: dict[str, Any]) -> dict[str, Any]:
        document = {"file_id": str(params["document"]), "file_unique_id": "d1"}
        return {**self._record("sendDocument", params), "document": document}

    async def _sendlocation(self, params: dict[str, Any]) -> dict[str, Any]:
        location = {"latitude": float(params["latitude"]), "longitude": float(params["longitude"])}
        return {**self._record("sendLocation", params), "location": location}

    async def _editmessagetext(self, params: dict[str, Any]) -> dict[str, Any]:
        self.edits.append(params)
        chat_id = int(params["chat_id"])
        return {
            "message_id": int(params["message_id"]),
            "date": int(time.time()),
            "chat": {"id": chat_id, "type": "supergroup"},
            "text": params.get("text", ""),
        }

    async def _editmessagecaption(self, params: dict[str, Any]) -> dict[str, Any]:
        self.edits.append(params)
        chat_id = int(params["chat_id"])
        photo = [{"file_id": "edited", "file_unique_id": "u1", "width": 90, "height": 90}]
        return {
            "message_id": int(params["message_id"]),
            "date": int(time.time()),
            "chat": {"id": chat_id, "type": "supergroup"},
            "photo": photo,
            "caption": params.get("caption", ""),
        }

    async def _getchat(self, params: dict[str, Any]) -> dict[str, Any]:
        chat_id = int(params["chat_id"])
        kind = "private" if chat_id > 0 else "supergroup"
        return {
            "id": chat_id,
            "type": kind,
            "is_forum": chat_id in self.forums,
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

    async def _createforumtopic(self, params: dict[str, Any]) -> dict[str, Any]:
        thread_id = next(self._thread_ids)
        self.topics[int(params["chat_id"])].append((thread_id, str(params["name"])))
        return {"message_thread_id": thread_id, "name": params["name"], "icon_color": 7322096}

    async def _getchatadministrators(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        # The creator's record is the smallest the client accepts; what matters here is who is in it.
        return [
            {
                "status": "creator",
                "user": {"id": user_id, "is_bot": False, "first_name": "Admin"},
                "is_anonymous": False,
            }
            for user_id in self.admins[int(params["chat_id"])]
        ]

    async def _getfile(self, params: dict[str, Any]) -> dict[str, Any]:
        file_id = str(params["file_id"])
        return {
            "file_id": file_id,
            "file_unique_id": file_id,
            "file_size": len(PHOTO),
            "file_path": f"photos/{file_id}.jpg",
        }

    async def _file(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != TOKEN:
            return web.Response(status=401)
        return web.Response(body=PHOTO, content_type="image/jpeg")

    async def _setwebhook(self, params: dict[str, Any]) -> bool:
        self.webhook_url = str(params.get("url") or "")
        return True

    async def _deletewebhook(self, params: dict[str, Any]) -> bool:
        self.webhook_url = ""
        return True

    async def _getwebhookinfo(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"url": self.webhook_url, "has_custom_certificate": False, "pending_update_count": 0}

    async def _setmessagereaction(self, params: dict[str, Any]) -> bool:
        self.reactions.append(params)
        return True


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

    async def text(self, text: str, reply_to: int | None = None) -> str:
        if reply_to is None:
            return await self._do(self._message(text=text))
        return await self._do(self._message(text=text, reply_to_message=self._replied(reply_to)))

    async def photo(self, file_id: str, caption: str = "", reply_to: int | None = None) -> str:
        content: dict[str, Any] = {
            "photo": [{"file_id": file_id, "file_unique_id": file_id, "width": 90, "height": 90}]
        }
        if caption:
            content["caption"] = caption
        if reply_to is not None:
            content["reply_to_message"] = self._replied(reply_to)
        return await self._do(self._message(**content))

    async def voice(self, file_id: str, mime: str = "audio/ogg", size: int = 4096) -> str:
        voice = {"file_id": file_id, "file_unique_id": file_id, "duration": 4, "mime_type": mime}
        return await self._do(self._message(voice={**voice, "file_size": size}))

    async def document(
        self, file_id: str, name: str, mime: str, size: int = 20480, reply_to: int | None = None
    ) -> str:
        document = {"file_id": file_id, "file_unique_id": file_id, "file_name": name, "mime_type": mime}
        content: dict[str, Any] = {"document": {**document, "file_size": size}}
        if reply_to is not None:
            content["reply_to_message"] = self._replied(reply_to)
        return await self._do(self._message(**content))

    def _replied(self, message_id: int) -> dict[str, Any]:
        return {
            "message_id": message_id,
            "date": int(time.time()),
            "chat": {"id": self.id, "type": "private"},
        }

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

    def keyboard(self) -> list[str]:
        """The text buttons of the reply keyboard, when the last message with buttons shows one."""
        for message in reversed(self.fake.sent_to(self.id)):
            markup = message.get("reply_markup") or {}
            if "inline_keyboard" in markup:
                return []
            if "keyboard" in markup:
                return [b["text"] for row in markup["keyboard"] for b in row if not b.get("request_contact")]
        return []

    async def press(self, label: str) -> str:
        """An inline button, or a reply keyboard's text button (it sends its text)."""
        for text in self.keyboard():
            if label in text:
                return await self.text(text)
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


class StaffMember:
    """A person in a department's staff group: writes, replies, sends photos and presses card buttons."""

    def __init__(self, fake: FakeTelegram, user_id: int, chat_id: int, first_name: str = "Rauf") -> None:
        self.fake = fake
        self.id = user_id
        self.chat_id = chat_id
        self.first_name = first_name
        self._message_ids = itertools.count(100_000 + user_id % 1000 * 1000)

    def _chat(self) -> dict[str, Any]:
        return {
            "id": self.chat_id,
            "type": "supergroup",
            "title": "Şöbə",
            "is_forum": self.chat_id in self.fake.forums,
        }

    def _sender(self) -> dict[str, Any]:
        return {"id": self.id, "is_bot": False, "first_name": self.first_name, "language_code": "az"}

    async def _do(self, update: dict[str, Any]) -> None:
        uid = self.fake.push(update)
        await self.fake.processed(uid)

    def _message(self, reply_to: int | None, topic: int | None, **content: Any) -> dict[str, Any]:
        message: dict[str, Any] = {
            "message_id": next(self._message_ids),
            "date": int(time.time()),
            "chat": self._chat(),
            "from": self._sender(),
            **content,
        }
        if topic is not None:
            message["message_thread_id"] = topic
            message["is_topic_message"] = True
        if reply_to is not None or topic is not None:
            message["reply_to_message"] = {
                "message_id": reply_to if reply_to is not None else topic,
                "date": int(time.time()),
                "chat": self._chat(),
            }
        return {"message": message}

    async def text(self, text: str, reply_to: int | None = None, topic: int | None = None) -> None:
        await self._do(self._message(reply_to, topic, text=text))

    async def photo(
        self, file_id: str, caption: str = "", reply_to: int | None = None, topic: int | None = None
    ) -> None:
        photo = [{"file_id": file_id, "file_unique_id": file_id, "width": 90, "height": 90}]
        extra = {"caption": caption} if caption else {}
        await self._do(self._message(reply_to, topic, photo=photo, **extra))

    async def voice(self, file_id: str, reply_to: int, mime: str = "audio/ogg", size: int = 4096) -> None:
        voice = {"file_id": file_id, "file_unique_id": file_id, "duration": 4, "mime_type": mime}
        await self._do(self._message(reply_to, None, voice={**voice, "file_size": size}))

    async def document(
        self, file_id: str, name: str, mime: str, reply_to: int, caption: str = "", size: int = 20480
    ) -> None:
        document = {"file_id": file_id, "file_unique_id": file_id, "file_name": name, "mime_type": mime}
        extra = {"caption": caption} if caption else {}
        await self._do(self._message(reply_to, None, document={**document, "file_size": size}, **extra))

    async def audio(self, file_id: str, name: str, reply_to: int, mime: str = "audio/mpeg") -> None:
        audio = {"file_id": file_id, "file_unique_id": file_id, "duration": 180, "mime_type": mime}
        await self._do(
            self._message(reply_to, None, audio={**audio, "file_name": name, "file_size": 4_000_000})
        )

    async def sticker(self, reply_to: int) -> None:
        sticker = {"file_id": "CAAD-sticker", "file_unique_id": "s", "type": "regular", "width": 512}
        sticker |= {"height": 512, "is_animated": False, "is_video": False}
        await self._do(self._message(reply_to, None, sticker=sticker))

    async def press(self, data: str, message_id: int = 1) -> None:
        callback = {
            "callback_query": {
                "id": f"cb-{self.id}-{time.monotonic_ns()}",
                "from": self._sender(),
                "chat_instance": str(self.chat_id),
                "message": {"message_id": message_id, "date": int(time.time()), "chat": self._chat()},
                "data": data,
            }
        }
        await self._do(callback)
