"""What the dialog needs from the rest of the service, as protocols and small frozen records."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from dialogs import lifecycle
from locales import Msg


@dataclass(frozen=True, slots=True)
class Holder:
    """A person on file in the registry."""

    full_name: str
    fin: str


@dataclass(frozen=True, slots=True)
class AccountView:
    id: int
    code: str
    kind: str  # "residential" | "non_residential"
    address: str | None
    region: str | None
    company: str | None = None  # a non-residential account's holder, as the registry names it
    voen: str | None = None  # its tax number (VÖEN), 10 digits


@dataclass(frozen=True, slots=True)
class MeteringPointView:
    id: int
    code: str
    address: str
    region: str


@dataclass(frozen=True, slots=True)
class StatusEntry:
    status: str
    at: datetime
    note: str | None


Window = tuple[datetime, datetime]  # a visit's start and end, UTC


@dataclass(frozen=True, slots=True)
class VisitView:
    """The visit times staff proposed, and what the subscriber made of them."""

    proposal: int  # names the proposal on its buttons: the second it was made
    windows: tuple[Window, ...]
    chosen: int | None = None
    declined: bool = False


@dataclass(frozen=True, slots=True)
class VisitChoice:
    """What became of a pick (or of "none of these"), as storage saw it."""

    outcome: str  # "ok" | "declined" | anything else: refused, `dialogs.visits.why_not` says why
    window: Window | None = None


@dataclass(frozen=True, slots=True)
class ApplicationView:
    id: int
    number: str
    kind: str
    account_code: str
    metering_point_code: str | None
    reason: str
    status: str
    created_at: datetime
    result: str | None
    history: tuple[StatusEntry, ...] = ()
    due_at: datetime | None = None  # by when a result is due, while it is open
    stars: int | None = None  # the subscriber's rating, once given
    reopen_until: datetime | None = None  # a completed one: the subscriber may reopen it until then
    visit: VisitView | None = None  # visit times staff proposed, while it is open

    # What the status means for the subscriber, so the dialog never spells a status itself.

    @property
    def open(self) -> bool:
        """Still to be done: a due date means something only then."""
        return lifecycle.is_open(self.status)

    @property
    def cancellable(self) -> bool:
        """The lifecycle lets the subscriber cancel it from where it stands now."""
        return lifecycle.cancellable(self.status)

    @property
    def reopened(self) -> bool:
        """It was reopened once already: a second time it is a new application."""
        return any(entry.status == lifecycle.Status.REOPENED for entry in self.history)

    def reopenable(self, now: datetime) -> bool:
        """The subscriber may reopen it now: completed, within the window, and never reopened before."""
        return (
            lifecycle.reopenable(self.status)
            and not self.reopened
            and self.reopen_until is not None
            and now < self.reopen_until
        )

    @property
    def rateable(self) -> bool:
        """The work is done and not rated yet: the subscriber is asked how it went."""
        return lifecycle.rateable(self.status) and self.stars is None


@dataclass(frozen=True, slots=True)
class Subscriber:
    """Who is talking: the channel and the user's id on it."""

    channel: str
    user_key: str


@dataclass(frozen=True, slots=True)
class ApplicationDraft:
    """A complete application as the subscriber confirmed it on the review card."""

    number: str
    subscriber: Subscriber
    applicant_phone: str
    lang: str
    account_id: int
    metering_point_id: int | None
    reason: str
    description: str
    photo_ref: str | None
    latitude: float | None
    longitude: float | None
    mobile: str
    extra_phones: tuple[str, ...]
    email: str | None
    # Photos, a voice note, a document: `dialogs.attachments` says their shape; `photo_ref` is the
    # first photo, as applications had it before there were several.
    attachments: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True, slots=True)
class Registered:
    number: str
    created: bool  # false: this number was registered before (a repeated "Send")


class Registry(Protocol):
    async def holders_by_phone(self, phone: str) -> Sequence[Holder]: ...

    async def accounts_by_phone(self, phone: str) -> Sequence[AccountView]: ...

    async def phone_for_code(self, code: str) -> str | None:
        """The phone on file for the owner of a subscriber code or main code."""
        ...

    async def metering_points(self, account_id: int) -> Sequence[MeteringPointView]: ...


class Applications(Protocol):
    async def reserve_number(self) -> str: ...

    async def register(self, draft: ApplicationDraft) -> Registered: ...

    async def list_mine(self, subscriber: Subscriber, phones: Sequence[str]) -> Sequence[ApplicationView]: ...

    async def get_mine(
        self, subscriber: Subscriber, phones: Sequence[str], application_id: int
    ) -> ApplicationView | None: ...

    async def open_on(self, account_id: int, point_id: int | None) -> ApplicationView | None:
        """The newest open application on this account (metering point), whoever filed it."""
        ...

    async def follow(self, subscriber: Subscriber, application_id: int, lang: str) -> None:
        """This chat gets the application's news from now on, as if it had filed it."""
        ...

    async def cancel(self, application_id: int, actor: str) -> None:
        """Cancel on the subscriber's behalf; raises `dialogs.errors.DialogError` when too late."""
        ...

    async def rate(
        self, subscriber: Subscriber, application_id: int, stars: int, comment: str | None
    ) -> bool:
        """Store the rating of a completed application; False when it was rated before (it stands).
        Raises `dialogs.errors.DialogError` when it may not be rated (not completed)."""
        ...

    async def reopen(self, application_id: int, reason: str, actor: str) -> None:
        """Reopen a completed application with the subscriber's reason; raises
        `dialogs.errors.DialogError` when it may not be (not completed, too late, reopened before)."""
        ...

    async def choose_visit(self, application_id: int, proposal: int, index: int | None) -> VisitChoice:
        """Pick window `index` of that proposal (None: none of them suits), once, with the staff
        thread told; refused (outcome not "ok"/"declined") when closed, replaced, past or decided."""
        ...

    async def replied_to(self, subscriber: Subscriber, message_ref: str) -> int | None:
        """The application a message we sent to this chat was about (the subscriber answers it)."""
        ...

    async def message_staff(
        self, application_id: int, text: str, photo_ref: str | None, attachment: dict[str, Any] | None = None
    ) -> bool:
        """Queue the subscriber's message (with a photo, or a voice note or document as
        `dialogs.attachments` keeps one) for the application's staff thread; False when it has none."""
        ...


class Sms(Protocol):
    async def send(self, phone: str, text: Msg, lang: str) -> None:
        """Queue an SMS; it leaves only once the update's transaction is committed."""
        ...


class CodeLog(Protocol):
    """Which one-time codes were sent: the limits must survive /cancel, /new and a second chat."""

    async def sent_to(self, phone: str, since: datetime) -> Sequence[datetime]: ...

    async def count_by(self, subscriber: Subscriber, since: datetime) -> int: ...

    async def record(self, phone: str, subscriber: Subscriber, at: datetime) -> None: ...

    def refused(self) -> None:
        """A code was refused by the limits (counted for the operators)."""


@dataclass(frozen=True, slots=True)
class OutageView:
    """A known outage: power is expected back by `until`."""

    id: int
    until: datetime


class Outages(Protocol):
    """Known outages, so that "no power" where one is known is answered before it is filed."""

    async def affecting(self, account_id: int, point_id: int | None) -> OutageView | None:
        """The open outage that covers this account or metering point, if one does."""
        ...

    async def watch(self, outage_id: int, lang: str) -> None:
        """Tell this chat when the outage is over."""
        ...


class Links(Protocol):
    """Reads the signed tokens of application links (`/start <token>`, the status page)."""

    def application_id(self, token: str) -> int | None:
        """The application a token names; None for anything forged, damaged or not a token."""
        ...


@dataclass(frozen=True, slots=True)
class Context:
    """The ports one event may use, and the time it happens at."""

    subscriber: Subscriber
    registry: Registry
    applications: Applications
    sms: Sms
    codes: CodeLog
    links: Links
    outages: Outages
    now: datetime
