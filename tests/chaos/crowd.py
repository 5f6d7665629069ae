"""A crowd of subscribers who file an application each, however the service behaves, as people would.

A person does not follow a script: they look at the last question the bot showed and do what it
asks. A question that never came (the process died before answering) is simply not there, so they
act on the one they see; a stale button gets "no longer valid" and the current question. After a
"Send" that got no answer they look under "My applications" before they try anything else.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from tests.fake_telegram import FakeTelegram, TelegramUser
from tests.running import t

REGIONS = ("Yasamal", "Gəncə", "Quba", "Lənkəran")  # one for each department of the example file
FIN_LETTERS = "0123456789ABCDEFGHJKLMNPQRSTUVWXYZ"
SECRET = "chaos-webhook-secret"
DESCRIPTION = "Səhərdən işıq yoxdur, qonşularda var."


@dataclass(frozen=True, slots=True)
class Person:
    user_id: int
    phone: str
    code: str
    email: str


def people(count: int) -> list[Person]:
    return [
        Person(9_000_000 + i, f"+99450{3_000_000 + i:07d}", f"7{i:014d}", f"abonent{i}@example.az")
        for i in range(count)
    ]


def registry_csv(crowd: Sequence[Person], path: Path) -> Path:
    """A billing export with one residential account for each person, spread over the departments."""
    lines = ["fin,full_name,phone,kind,code,metering_point,address,region"]
    for i, person in enumerate(crowd):
        fin = "".join(FIN_LETTERS[(i // 34**k) % 34] for k in range(5)) + "Z9"
        region = REGIONS[i % len(REGIONS)]
        lines.append(
            f'{fin},Abonent {i},{person.phone},residential,{person.code},,"{region}, ev {i}",{region}'
        )
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


Deliver = Callable[[dict[str, Any]], Awaitable[None]]


class Webhooks:
    """Telegram's side of a webhook: each update is posted until one of the processes answers 200."""

    def __init__(self, urls: Sequence[str]) -> None:
        self.urls = list(urls)
        self.ids = itertools.count(500_000)
        self.refused = 0  # answers other than 200 (503 while the database is away, none while down)
        self._http: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Webhooks:
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._http is not None
        await self._http.close()

    async def deliver(self, update: dict[str, Any]) -> None:
        assert self._http is not None
        update = {"update_id": next(self.ids), **update}
        headers = {"X-Telegram-Bot-Api-Secret-Token": SECRET}
        deadline = time.monotonic() + 180
        for attempt in itertools.count():
            url = self.urls[attempt % len(self.urls)]
            try:
                async with self._http.post(url, json=update, headers=headers) as response:
                    if response.status == 200:
                        return
                    self.refused += 1
            except (aiohttp.ClientError, TimeoutError):
                pass  # the process is down: Telegram tries again later
            if time.monotonic() > deadline:
                raise TimeoutError(f"update {update['update_id']} was never taken")
            await asyncio.sleep(0.2)


THINK = 0.5  # seconds between a person's actions


@dataclass
class Subscriber:
    """One person filing one application; `deliver` is None when the bot polls."""

    fake: FakeTelegram
    person: Person
    deliver: Deliver | None = None
    sends: int = 0  # how often they pressed "Send"
    steps: int = 0
    done: bool = False
    seen: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.user = TelegramUser(self.fake, self.person.user_id)

    async def act(self, update: dict[str, Any]) -> None:
        if self.deliver is None:
            uid = self.fake.push(update)
            await self.fake.processed(uid, within=180)
        else:
            await self.deliver(update)
        await asyncio.sleep(0.05)  # the answers of a webhook update leave right after the 200
        await asyncio.sleep(THINK)  # a person reads, then taps: the crowd files for as long as the kills take

    def _question(self) -> dict[str, Any] | None:
        for message in reversed(self.fake.sent_to(self.person.user_id)):
            markup = message.get("reply_markup") or {}
            if "inline_keyboard" in markup or "keyboard" in markup:
                return message
        return None

    async def file(self) -> None:
        """Act on what the bot shows until the application is registered (at most 80 actions)."""
        await self.act(self.user._message(text="/start"))
        registered = t("review.registered", number="TX").split("TX")[0][:20]
        while not self.done and self.steps < 80:
            self.steps += 1
            texts = [str(m.get("text", "")) for m in self.fake.sent_to(self.person.user_id)]
            question = self._question()
            markup = (question or {}).get("reply_markup") or {}
            ids = [
                str(b.get("callback_data", "")).partition("|")[2]
                for row in markup.get("inline_keyboard", [])
                for b in row
            ]
            data = {
                str(b.get("callback_data", "")).partition("|")[2]: b["callback_data"]
                for row in markup.get("inline_keyboard", [])
                for b in row
            }
            if self.sends and (
                any(registered in x for x in texts[-3:]) or any(i.startswith("app:") for i in ids)
            ):
                self.done = True  # the bot said so, or "My applications" shows it
            elif "keyboard" in markup or "by_code" in ids:  # "share your number" (and "or choose:")
                await self.act(self.user._message(contact=self._contact()))
            elif "send" in ids:
                self.sends += 1
                await self.press(data["send"])
                if not any(registered in x for x in self.texts()[-3:]):
                    await self.act(self.user._message(text="/my"))  # no answer: look before trying again
            elif "dup:open" in ids:  # their own application, sent before: the bot found it, as they did
                self.done = True
            elif accounts := [i for i in ids if i.startswith("acc:")]:
                await self.press(data[accounts[0]])
            elif "reason:no_power" in ids:
                await self.press(data["reason:no_power"])
            elif "ok" in ids:  # the contacts: the e-mail typed there, then "Correct"
                if self.person.email in str((question or {}).get("text", "")):
                    await self.press(data["ok"])
                else:
                    await self.act(self.user._message(text=self.person.email))
            elif "done" in ids:  # the description's screen: the description typed there, then "Continue"
                if any(DESCRIPTION in x for x in texts[-3:]):
                    await self.press(data["done"])
                else:
                    await self.act(self.user._message(text=DESCRIPTION))
            elif "resume" in ids:
                await self.press(data["resume"])
            elif "new" in ids and not self.sends:
                await self.press(data["new"])
            elif "new" in ids:
                await self.act(self.user._message(text="/my"))
            elif set(ids) <= {"back", "cancel"} and question is not None:  # a question to answer in words
                await self.act(self.user._message(text=DESCRIPTION))
            else:
                await self.act(self.user._message(text="/start"))
            await asyncio.sleep(random.uniform(0, 0.05))

    def texts(self) -> list[str]:
        return [str(m.get("text", "")) for m in self.fake.sent_to(self.person.user_id)]

    def _contact(self) -> dict[str, Any]:
        return {"phone_number": self.person.phone, "first_name": "Abonent", "user_id": self.person.user_id}

    async def press(self, data: str) -> None:
        callback = {
            "callback_query": {
                "id": f"cb-{self.person.user_id}-{time.monotonic_ns()}",
                "from": self.user._sender(),
                "chat_instance": str(self.person.user_id),
                "message": {
                    "message_id": 1,
                    "date": int(time.time()),
                    "chat": {"id": self.person.user_id, "type": "private"},
                },
                "data": data,
            }
        }
        await self.act(callback)
