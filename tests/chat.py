"""A fake channel that types and taps through the dialog and reads what was shown, as a person would."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from bot.core.service import Conversations
from dialogs.events import Command, Contact, Event, Location, Photo, Pressed, Text
from dialogs.ports import Subscriber
from dialogs.replies import Message
from dialogs.state import State, Step
from locales import Msg, translate
from storage import conversations

_update_ids = itertools.count(1)

# Sample registry people (fake numbers from storage/sample_registry.csv).
PLAIN = "+994996510079"  # one residential account
PLAIN_CODE = "168808605066007"
LANDLORD = "+994993491065"  # ten residential accounts
BOTH = "+994998406430"  # two residential accounts and a main code with three metering points
CHAIN = "+994778604692"  # a main code with twelve metering points
CHAIN_CODE = "5412017015"
SHOP = "+994774167885"  # a main code with two metering points
SHOP_CODE = "8177578199"


# The settings DESIGN.md fixes, by their environment names.
DESIGN_SETTINGS = tuple(
    """
    DATABASE_URL TELEGRAM_BOT_TOKEN TELEGRAM_API_URL TELEGRAM_WEBHOOK_URL TELEGRAM_WEBHOOK_SECRET
    STAFF_CHAT_ID DEPARTMENTS_FILE WHATSAPP_TOKEN WHATSAPP_PHONE_NUMBER_ID WHATSAPP_APP_SECRET
    WHATSAPP_VERIFY_TOKEN WHATSAPP_API_URL SMS_GATEWAY_URL SMS_GATEWAY_TOKEN SMS_SENDER
    SMTP_HOST SMTP_PORT SMTP_USER SMTP_PASSWORD SMTP_FROM PUBLIC_BASE_URL HTTP_HOST HTTP_PORT LOG_LEVEL
    """.split()
)
# The settings the issues added beyond DESIGN.md (each is named in an issue note).
ADDED_SETTINGS = (
    "LINK_SECRET",
    "SLA_TAKE_HOURS",
    "SLA_DONE_DAYS",
    "SMS_GATEWAY_TIMEOUT",
    "SMTP_SECURITY",
    "WHATSAPP_PUBLIC_NUMBER",
    "WHATSAPP_MPS",
    "WHATSAPP_TEMPLATE",
    "WHATSAPP_TEMPLATE_LANGUAGES",
    "DEADLINE_CHECK_SECONDS",
    "READYZ_OUTBOX_MAX_AGE",
    "TRUSTED_PROXIES",
    "REDIS_URL",
    "TELEGRAM_PAID_BROADCAST_MPS",
    "RETENTION_DAYS",
    "LOG_FORMAT",
    "METRICS_PORT",
    "METRICS_TOKEN",
    "REOPEN_DAYS",
)
ALL_SETTINGS = DESIGN_SETTINGS + ADDED_SETTINGS


class SmsRecorder:
    """Stands where the SMS gateway would: keeps what would have been sent."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, Msg, str]] = []

    async def send(self, phone: str, text: Msg, lang: str) -> None:
        self.sent.append((phone, text, lang))


class Chat:
    def __init__(self, service: Conversations, user: str = "u1", channel: str = "test") -> None:
        self.service = service
        self.subscriber = Subscriber(channel, user)
        self.messages: tuple[Message, ...] = ()
        self.rev = 0
        self.lang = "az"
        self.history: list[str] = []

    async def send(self, event: Event, update_id: str | None = None, hint: str | None = None) -> str:
        uid = update_id if update_id is not None else f"chat-{next(_update_ids)}"  # never a platform id
        handled = await self.service.handle(self.subscriber, event, update_id=uid, language_hint=hint)
        if handled is None:
            return ""
        self.lang = handled.lang
        self.messages = handled.outcome.messages
        if handled.outcome.rev >= 0:
            self.rev = handled.outcome.rev
        self.history.append(self.text)
        return self.text

    @property
    def text(self) -> str:
        """Everything shown for the last event, as the person reads it."""
        return "\n\n".join(self.render(m) for m in self.messages)

    def render(self, message: Message) -> str:
        lines = [translate(p, self.lang) for p in message.parts]
        lines += [f"[{translate(c.label, self.lang)}]" for c in message.choices]
        return "\n".join(lines)

    @property
    def question(self) -> Message:
        return self.messages[-1]

    @property
    def choice_ids(self) -> list[str]:
        return [c.id for c in self.question.choices]

    def labels(self) -> list[str]:
        return [translate(c.label, self.lang) for c in self.question.choices]

    async def start(self, hint: str | None = None) -> str:
        return await self.send(Command("start"), hint=hint)

    async def type(self, text: str) -> str:
        return await self.send(Text(text))

    async def command(self, name: str, arg: str = "") -> str:
        return await self.send(Command(name, arg))

    async def contact(self, phone: str, own: bool = True) -> str:
        return await self.send(Contact(phone, own))

    async def photo(self, ref: str = "file-1") -> str:
        return await self.send(Photo(ref))

    async def location(self, lat: float, lon: float) -> str:
        return await self.send(Location(lat, lon))

    async def press(self, which: str) -> str:
        """Press a button of the last question, by its id or by a part of its label."""
        for choice in self.question.choices:
            if choice.id == which or which in translate(choice.label, self.lang):
                return await self.send(Pressed(choice.id, self.rev))
        raise AssertionError(f"no button {which!r} among {self.labels()} / {self.choice_ids}")

    async def press_id(self, choice_id: str, rev: int | None = None) -> str:
        return await self.send(Pressed(choice_id, self.rev if rev is None else rev))

    async def state(self) -> State:
        async with self.service.db.transaction() as session:
            row = await conversations.get(session, self.subscriber.channel, self.subscriber.user_key)
            assert row is not None
            return State.from_json(row.state)

    async def step(self) -> Step:
        return (await self.state()).step

    async def stored_raw(self) -> str:
        async with self.service.db.transaction() as session:
            row = await conversations.get(session, self.subscriber.channel, self.subscriber.user_key)
            return row.state if row else ""


async def identify(chat: Chat, phone: str = PLAIN) -> str:
    """A fresh chat shares its own number on file; what the bot answered to it."""
    await chat.start()
    await chat.press("new")
    return await chat.contact(phone)


async def describe_and_finish(chat: Chat, description: str) -> str:
    """From the description step to the review card: no attachments, the contacts as they are."""
    await chat.type(description)
    await chat.press("done")
    return await chat.press("ok")


async def choose_account(chat: Chat, account: str | None = None) -> None:
    """Press the account when the dialog asks (a phone with one account is not asked)."""
    if chat.question.choices and any(c.startswith("acc:") for c in chat.choice_ids):
        await chat.press(account or next(c for c in chat.choice_ids if c.startswith("acc:")))
    else:
        assert account is None or account.removeprefix("acc:").isdigit(), account


async def fill_residential(chat: Chat, phone: str = PLAIN, account: str | None = None) -> None:
    """From a fresh chat to the review card of a residential application."""
    await identify(chat, phone)
    await choose_account(chat, account)
    await chat.press("reason:no_power")
    if "dup:new" in chat.choice_ids:  # one is open on this account already: this is another problem
        await chat.press("dup:new")
    await describe_and_finish(chat, "Mənzildə səhərdən işıq yoxdur, qonşularda var.")


def reviewed_fields(text: str) -> Sequence[str]:
    return [line for line in text.splitlines() if ":" in line]
