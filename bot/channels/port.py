"""The channel port: what every messaging platform gives the service, and the rules they all keep.

A channel (Telegram, WhatsApp, the terminal; Viber next) lives in its own folder under `channels/`
and imports no other. It turns its platform's updates into the dialog's neutral events, runs them
through `Conversations.receive` (the update is stored, then answered; a re-delivered update changes
nothing and gets the current question once), renders the neutral reply in its platform's terms, and
sends the outbox's messages for its subscribers. Everything else reaches a channel through
`Channels`, the registry the composition root fills: a card's channel name, whether a chat shows
photos, a photo another channel holds, the links that open a chat with us.

The rules every channel shares are here, once:
- an answer is tried on the spot for at most `ANSWER_WITHIN` seconds (`answer_within`), then handed
  to the outbox, which retries it in the person's lane (`HeldAnswers`), and later answers go behind it;
- the updates of one person are handled one after another, different people at the same time
  (`one_by_one`).
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import aiohttp

from bot.core.clock import Clock
from bot.core.links import ChatLink, PublicLinks
from bot.core.service import Conversations
from bot.notify.outbox import Permanent, Sender, Temporary
from bot.staff.desk import StaffDesk
from bot.web.server import Route
from storage import outbox
from storage.db import Database

log = logging.getLogger(__name__)
T = TypeVar("T")
K = TypeVar("K", bound=Hashable)
# How long an answer may hold its update (the webhook's request, or the polled batch) before it is
# handed to the outbox, which retries it in order like every other message.
ANSWER_WITHIN = 3.0
FIRST_PAUSE = 0.25  # seconds before the first retry on the spot; doubled each time …
MAX_PAUSE = 2.0  # … up to this


class Sent(enum.Enum):
    """What became of an answer sent on the spot."""

    SENT = "sent"
    UNREACHABLE = "unreachable"  # blocked, gone, or refused: the next answers would fare no better
    LATER = "later"  # the platform did not take it in time: the outbox will


class StartError(Exception):
    """The service cannot start (a platform refused the credentials); the message says which."""


@dataclass(frozen=True, slots=True)
class Parts:
    """What the composition root hands each channel it builds: the service's shared parts."""

    db: Database
    clock: Clock
    conversations: Conversations
    desk: StaffDesk
    links: PublicLinks
    http: aiohttp.ClientSession
    wake: Callable[[], None]  # the outbox worker: something was queued
    channels: Channels  # the registry, for a photo another channel keeps

    def held(self, channel: str) -> HeldAnswers:
        return HeldAnswers(channel, self.db, self.clock, self.wake)


class Channel(Protocol):
    """One messaging platform, as the rest of the service sees it."""

    name: str  # stored with each conversation, application and outbox row: "telegram"
    label: str  # as staff read it on a card: "Telegram"
    photos: bool  # shows a staff member's photo to the subscriber

    def routes(self) -> Sequence[Route]:
        """Its webhooks on the service's web server."""
        ...

    def senders(self) -> Mapping[str, Sender]:
        """The outbox's senders it provides: its subscribers' messages (and, for Telegram, staff chats)."""
        ...

    def background(self, stop: asyncio.Event) -> Mapping[str, Coroutine[Any, Any, None]]:
        """Work that runs while the service does (long polling); each ends when `stop` is set."""
        ...

    async def start(self) -> None:
        """Register with the platform (commands, webhook). Raises StartError when it refuses."""
        ...

    async def problem(self) -> str | None:
        """Why the channel is not ready (for /readyz), or None."""
        ...

    async def settle(self) -> None:
        """Wait for the answers still being sent (at the stop)."""
        ...

    async def close(self) -> None: ...

    def holds(self, ref: str) -> bool:
        """Whether a stored photo reference is a file this platform keeps."""
        ...

    async def media(self, ref: str) -> tuple[bytes, str]:
        """A photo it keeps: its bytes and MIME type. Raises Temporary or Permanent."""
        ...

    def chat_link(self, token: str, number: str) -> ChatLink | None:
        """Where a subscriber opens a chat with us about an application, or None."""
        ...


class Channels:
    """The channels the service runs, by name: what the rest of the service asks of them."""

    def __init__(self, channels: Iterable[Channel] = ()) -> None:
        self._by_name: dict[str, Channel] = {}
        for channel in channels:
            self.add(channel)

    def add(self, channel: Channel) -> None:
        if channel.name in self._by_name:
            raise ValueError(f"two channels named {channel.name!r}")
        self._by_name[channel.name] = channel

    def __iter__(self) -> Any:
        return iter(list(self._by_name.values()))

    def __len__(self) -> int:
        return len(self._by_name)

    def __getitem__(self, name: str) -> Channel:
        return self._by_name[name]

    def get(self, name: str) -> Channel | None:
        return self._by_name.get(name)

    def label(self, name: str) -> str:
        """A channel's name as staff read it; a channel this process does not run, as it is stored."""
        channel = self._by_name.get(name)
        return channel.label if channel is not None else name

    def takes_photos(self, name: str) -> bool:
        channel = self._by_name.get(name)
        return channel is not None and channel.photos

    async def media(self, ref: str) -> tuple[bytes, str]:
        """A photo from whichever channel keeps it (a WhatsApp photo for a Telegram staff chat …)."""
        for channel in self._by_name.values():
            if channel.holds(ref):
                return await channel.media(ref)
        raise Permanent("a photo no running channel keeps")

    def chat_links(self, token: str, number: str) -> list[ChatLink]:
        links = (channel.chat_link(token, number) for channel in self._by_name.values())
        return [link for link in links if link is not None]


async def answer_within(send: Callable[[], Awaitable[T]], within: float = ANSWER_WITHIN) -> T | None:
    """Send an answer on the spot: retried until the platform takes it or `within` seconds are over.

    A pause a 429 asks for is waited out when it fits in the time left; other temporary failures are
    retried after 0.25, 0.5, 1, 2 s. None when the time ran out: the caller hands the answer to the
    outbox rather than hold the update any longer. `Permanent` propagates.
    """
    deadline = time.monotonic() + within
    attempt = 0
    while True:
        try:
            return await asyncio.wait_for(send(), max(deadline - time.monotonic(), 0.1))
        except Temporary as exc:
            pause = exc.retry_after if exc.retry_after is not None else _pause(attempt)
        except TimeoutError:
            pause = _pause(attempt)
        attempt += 1
        if time.monotonic() + pause >= deadline:
            return None
        await asyncio.sleep(pause)


def _pause(attempt: int) -> float:
    return min(FIRST_PAUSE * 2**attempt, MAX_PAUSE)


async def one_by_one(
    items: Iterable[T], key: Callable[[T], K], handle: Callable[[T], Awaitable[None]]
) -> None:
    """The items of one key (a person, a chat) one after another, in the order given; keys at once."""
    lanes: dict[K, list[T]] = {}
    for item in items:
        lanes.setdefault(key(item), []).append(item)

    async def lane(queue: list[T]) -> None:
        for item in queue:
            await handle(item)

    await asyncio.gather(*(lane(queue) for queue in lanes.values()))


class HeldAnswers:
    """Answers that could not leave on the spot wait in the outbox, in the person's lane.

    While one waits, the person's next answers go behind it (through the outbox too), so nothing is
    answered out of order. `waiting` is this process's memory of who has answers held, checked against
    the outbox before it is trusted.
    """

    def __init__(self, channel: str, db: Database, clock: Clock, wake: Callable[[], None]) -> None:
        self.channel = channel
        self.db = db
        self.clock = clock
        self.wake = wake
        self.waiting: set[str] = set()

    async def behind(self, user_key: str) -> bool:
        """Whether answers to this person still wait in the outbox (a new one must go behind them)."""
        if user_key not in self.waiting:
            return False
        async with self.db.transaction() as session:
            left = await outbox.unsent(session, self.channel, user_key, outbox.REPLY)
        if not left:
            self.waiting.discard(user_key)
        return bool(left)

    async def hold(self, user_key: str, payloads: Sequence[dict[str, Any]], lang: str) -> None:
        async with self.db.transaction() as session:
            for payload in payloads:
                outbox.enqueue(
                    session,
                    channel=self.channel,
                    user_key=user_key,
                    kind=outbox.REPLY,
                    payload=payload,
                    now=self.clock(),
                    lang=lang,
                )
        self.waiting.add(user_key)
        log.info("%s is slow: %s answer(s) handed to the outbox", self.channel, len(payloads))
        self.wake()

    async def send(
        self,
        user_key: str,
        answers: Sequence[T],
        lang: str,
        send_now: Callable[[T], Awaitable[Sent]],
        stored: Callable[[T], dict[str, Any]],
    ) -> None:
        """Send the answers in order; from the first that cannot leave in time, hold the rest."""
        if await self.behind(user_key):
            await self.hold(user_key, [stored(answer) for answer in answers], lang)
            return
        for index, answer in enumerate(answers):
            sent = await send_now(answer)
            if sent is Sent.LATER:
                await self.hold(user_key, [stored(a) for a in answers[index:]], lang)
                return
            if sent is Sent.UNREACHABLE:
                return
