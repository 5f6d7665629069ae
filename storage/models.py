"""The tables. Times are UTC; IDs and JSON primitives only, so every row reads back the same."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, DateTime, Index, Text, UniqueConstraint, text
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)


def _ts(**kwargs: Any) -> Any:
    return Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False, **kwargs))


def _ts_or_none(**kwargs: Any) -> Any:
    return Field(default=None, sa_column=Column(DateTime(timezone=True), nullable=True, **kwargs))


def _big(nullable: bool = False, **kwargs: Any) -> Any:
    """Telegram ids exceed 32 bits."""
    return Field(default=None, sa_column=Column(BigInteger, nullable=nullable, **kwargs))


class Person(SQLModel, table=True):
    """A person on file in the billing registry (FİN is unique)."""

    __tablename__ = "person"
    id: int | None = Field(default=None, primary_key=True)
    fin: str = Field(max_length=7, unique=True)
    full_name: str = Field(max_length=200)
    phone: str = Field(max_length=16, index=True)


class Account(SQLModel, table=True):
    """A subscriber code (residential) or a main code (non-residential)."""

    __tablename__ = "account"
    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(max_length=20, unique=True)
    kind: str = Field(max_length=20)
    person_id: int = Field(foreign_key="person.id", index=True)
    address: str | None = Field(default=None, max_length=300)
    region: str | None = Field(default=None, max_length=100)
    # A non-residential account's holder as the registry names it, and its tax number (VÖEN, 10 digits).
    company: str | None = Field(default=None, max_length=200)
    voen: str | None = Field(default=None, max_length=10)
    active: bool = True


class MeteringPoint(SQLModel, table=True):
    """A metering point of a non-residential account."""

    __tablename__ = "metering_point"
    __table_args__ = (UniqueConstraint("account_id", "code", name="uq_metering_point_account_code"),)
    id: int | None = Field(default=None, primary_key=True)
    account_id: int = Field(foreign_key="account.id", index=True)
    code: str = Field(max_length=40)
    address: str = Field(max_length=300)
    region: str = Field(max_length=100)
    active: bool = True


class ApplicationCounter(SQLModel, table=True):
    """The last number given out in a year: numbers are never reused, even for abandoned drafts."""

    __tablename__ = "application_counter"
    year: int = Field(primary_key=True)
    last: int = 0


class Application(SQLModel, table=True):
    """A registered application, with a snapshot of the account as it was when it was sent."""

    __tablename__ = "application"
    __table_args__ = (
        Index("ix_application_subscriber", "channel", "user_key"),
        Index("ix_application_account_status", "account_id", "status"),  # an open one on this account?
    )
    id: int | None = Field(default=None, primary_key=True)
    number: str = Field(max_length=16, unique=True)
    channel: str = Field(max_length=16)
    user_key: str = Field(max_length=64)
    applicant_phone: str = Field(max_length=16, index=True)
    lang: str = Field(max_length=2)
    person_id: int | None = Field(default=None, foreign_key="person.id")
    account_id: int | None = Field(default=None, foreign_key="account.id")
    kind: str = Field(max_length=20)
    account_code: str = Field(max_length=20, index=True)
    metering_point_id: int | None = Field(default=None, foreign_key="metering_point.id")
    metering_point_code: str | None = Field(default=None, max_length=40)
    address: str | None = Field(default=None, max_length=300)
    region: str | None = Field(default=None, max_length=100)
    reason: str = Field(max_length=32)
    description: str = Field(sa_column=Column(Text, nullable=False))
    photo_ref: str | None = Field(default=None, max_length=512)  # the first photo, as it was before
    # Photos, a voice note, a document: [{kind, ref, mime, size, name}] (`dialogs.attachments`);
    # NULL on rows registered before there were several (`dialogs.attachments.of_application`).
    attachments: list[dict[str, Any]] | None = Field(
        default_factory=list, sa_column=Column(JSON, nullable=True)
    )
    latitude: float | None = None
    longitude: float | None = None
    mobile: str = Field(max_length=16)
    extra_phones: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    email: str | None = Field(default=None, max_length=254)
    status: str = Field(max_length=16, index=True)
    result: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    created_at: datetime = _ts()
    updated_at: datetime = _ts()
    # The staff side: which department handles it, who took it, and which deadline was flagged.
    department: str | None = Field(default=None, max_length=32, index=True)
    assignee_id: int | None = _big(nullable=True)
    assignee_name: str | None = Field(default=None, max_length=128)
    taken_at: datetime | None = _ts_or_none()
    take_flagged_at: datetime | None = _ts_or_none()
    done_flagged_at: datetime | None = _ts_or_none()
    # When its deadlines started again (its reopening); NULL: they run from `created_at`.
    deadlines_from: datetime | None = _ts_or_none()


class StatusChange(SQLModel, table=True):
    """One change of an application's status: who, when, and why. The audit trail."""

    __tablename__ = "status_change"
    id: int | None = Field(default=None, primary_key=True)
    application_id: int = Field(foreign_key="application.id", index=True)
    old_status: str | None = Field(default=None, max_length=16)
    new_status: str = Field(max_length=16)
    actor: str = Field(max_length=64)
    note: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    created_at: datetime = _ts()


class Conversation(SQLModel, table=True):
    """One subscriber's conversation on one channel: the dialog state, written at every transition."""

    __tablename__ = "conversation"
    __table_args__ = (UniqueConstraint("channel", "user_key", name="uq_conversation_channel_user"),)
    id: int | None = Field(default=None, primary_key=True)
    channel: str = Field(max_length=16)
    user_key: str = Field(max_length=64)
    step: str = Field(default="menu", max_length=32)
    lang: str = Field(default="az", max_length=2)
    state: str = Field(default="", sa_column=Column(Text, nullable=False))
    updated_at: datetime = _ts()
    # Set when the platform refused a message (blocked, chat gone): notifications then go by SMS.
    unreachable_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True)
    )
    unreachable_reason: str | None = Field(default=None, max_length=32)
    # The person's last message: WhatsApp allows free-form messages for 24 hours after it.
    last_inbound_at: datetime | None = _ts_or_none()


class ProcessedUpdate(SQLModel, table=True):
    """A platform update already handled: a re-delivery of it is acknowledged and ignored."""

    __tablename__ = "processed_update"
    __table_args__ = (Index("ix_processed_update_created_at", "created_at"),)  # retention, oldest first
    channel: str = Field(primary_key=True, max_length=16)
    update_id: str = Field(primary_key=True, max_length=128)
    created_at: datetime = _ts()
    # When a re-delivery of it was answered with the current question: that happens once, so a
    # replayed webhook cannot make the bot write to the person again and again.
    reshown_at: datetime | None = _ts_or_none()


class OtpRequest(SQLModel, table=True):
    """A one-time code sent: limits hold per target phone and per chat, whatever the chat's state says."""

    __tablename__ = "otp_request"
    __table_args__ = (Index("ix_otp_request_created_at", "created_at"),)  # retention, oldest first
    id: int | None = Field(default=None, primary_key=True)
    phone: str = Field(max_length=16, index=True)
    requester: str = Field(max_length=96, index=True)
    created_at: datetime = _ts()


class StaffThread(SQLModel, table=True):
    """Where an application is discussed in its department's staff chat: its topic and its card."""

    __tablename__ = "staff_thread"
    __table_args__ = (Index("ix_staff_thread_topic", "chat_id", "topic_id"),)
    application_id: int = Field(foreign_key="application.id", primary_key=True)
    chat_id: int = _big()
    topic_id: int | None = _big(nullable=True)  # the forum topic, in a forum group
    card_message_id: int | None = _big(nullable=True)
    created_at: datetime = _ts()


class LinkedMessage(SQLModel, table=True):
    """A message the bot sent about an application: a reply to it belongs to that application."""

    __tablename__ = "linked_message"
    channel: str = Field(primary_key=True, max_length=16)
    chat_id: str = Field(primary_key=True, max_length=32)
    message_id: str = Field(primary_key=True, max_length=64)
    application_id: int = Field(foreign_key="application.id", index=True)
    kind: str = Field(max_length=16)  # card | relay | prompt | note | to_subscriber
    action: str | None = Field(default=None, max_length=16)  # a prompt's pending action
    user_id: int | None = _big(nullable=True)  # a prompt's staff member: only their reply counts
    created_at: datetime = _ts()


class StaffAction(SQLModel, table=True):
    """Everything staff did or tried in a staff chat, refused attempts included: the audit trail."""

    __tablename__ = "staff_action"
    id: int | None = Field(default=None, primary_key=True)
    application_id: int | None = Field(default=None, foreign_key="application.id", index=True)
    chat_id: int = _big()
    user_id: int = _big()
    user_name: str = Field(default="", max_length=128)
    action: str = Field(max_length=32)
    allowed: bool
    detail: str | None = Field(default=None, max_length=500)
    created_at: datetime = _ts()


class Notification(SQLModel, table=True):
    """A message owed to someone (the outbox): written in the transaction of the event that causes it.

    `channel` says how it goes: a subscriber's chat ("telegram", "terminal", …) or "staff" (a staff chat,
    `user_key` being its chat id). States: queued → sending → sent (→ delivered) | failed.
    """

    __tablename__ = "notification"
    __table_args__ = (
        Index("ix_notification_recipient_state", "channel", "user_key", "state"),
        Index("ix_notification_state_id", "state", "id"),
        Index("ix_notification_provider", "channel", "provider_id"),
        # The outbox's claim (storage.outbox.claim): the queued rows of a channel in the order they fall
        # due, and the unsent rows of a lane (a chat; a staff chat's application thread) by age.
        # Partial: sent and failed rows, most of the table, are in none of them.
        Index(
            "ix_notification_due",
            "channel",
            "next_attempt_at",
            "id",
            postgresql_where=text("state = 'queued'"),
            sqlite_where=text("state = 'queued'"),
        ),
        Index(
            "ix_notification_lane",
            "channel",
            "user_key",
            "id",
            postgresql_where=text("state IN ('queued', 'sending') AND channel <> 'staff'"),
            sqlite_where=text("state IN ('queued', 'sending') AND channel <> 'staff'"),
        ),
        Index(
            "ix_notification_staff_lane",
            "user_key",
            "application_id",
            "id",
            postgresql_where=text("state IN ('queued', 'sending') AND channel = 'staff'"),
            sqlite_where=text("state IN ('queued', 'sending') AND channel = 'staff'"),
        ),
    )
    id: int | None = Field(default=None, primary_key=True)
    application_id: int | None = Field(default=None, foreign_key="application.id", index=True)
    channel: str = Field(max_length=16)
    user_key: str = Field(max_length=64)
    lang: str = Field(max_length=2)
    kind: str = Field(max_length=32)
    payload: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    state: str = Field(default="queued", max_length=16)
    attempts: int = 0
    last_error: str | None = Field(default=None, max_length=500)
    created_at: datetime = _ts()
    sent_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True), nullable=True))
    next_attempt_at: datetime | None = _ts_or_none()
    claimed_at: datetime | None = _ts_or_none()  # when a worker took it to send: a lease
    provider_id: str | None = Field(default=None, max_length=128)


class Lease(SQLModel, table=True):
    """A duty that one process of several holds at a time (the database-wide metrics, the pruning),
    for as long as it renews the lease before `expires_at`; then any process may take it over."""

    __tablename__ = "lease"
    name: str = Field(primary_key=True, max_length=32)
    holder: str = Field(max_length=96)
    expires_at: datetime = _ts()


class Outage(SQLModel, table=True):
    """A known power outage: a region of the registry, or listed metering points, until it is closed.

    A subscriber who reports "no power" for an account it covers is told so before filing."""

    __tablename__ = "outage"
    id: int | None = Field(default=None, primary_key=True)
    region: str | None = Field(default=None, max_length=100)  # as `account.region` names it
    points: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    until: datetime = _ts()  # when power is expected back
    note: str | None = Field(default=None, max_length=300)
    declared_by: str = Field(max_length=64)
    created_at: datetime = _ts()
    closed_at: datetime | None = _ts_or_none(index=True)


class OutageWatch(SQLModel, table=True):
    """A chat to be told when an outage is over."""

    __tablename__ = "outage_watch"
    outage_id: int = Field(foreign_key="outage.id", primary_key=True)
    channel: str = Field(primary_key=True, max_length=16)
    user_key: str = Field(primary_key=True, max_length=64)
    lang: str = Field(default="az", max_length=2)
    created_at: datetime = _ts()


class ApplicationFollower(SQLModel, table=True):
    """A chat that follows an application it did not file (the same problem on the same account):
    it gets the application's news as its own chat would."""

    __tablename__ = "application_follower"
    application_id: int = Field(foreign_key="application.id", primary_key=True)
    channel: str = Field(primary_key=True, max_length=16)
    user_key: str = Field(primary_key=True, max_length=64)
    lang: str = Field(default="az", max_length=2)
    created_at: datetime = _ts()


class Broadcast(SQLModel, table=True):
    """One message staff sent to every chat with an open application in a region, or on an outage.

    `texts` holds it by language ({"az": …, "ru": …}): each chat gets its own language's, else the
    Azerbaijani one. The copies are outbox rows of kind `broadcast`, queued with this row."""

    __tablename__ = "broadcast"
    id: int | None = Field(default=None, primary_key=True)
    region: str | None = Field(default=None, max_length=100)
    outage_id: int | None = Field(default=None, foreign_key="outage.id")
    texts: dict[str, str] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    actor: str = Field(max_length=64)
    recipients: int = 0
    created_at: datetime = _ts(index=True)


class Rating(SQLModel, table=True):
    """How the subscriber rated a completed application: 1–5 stars and an optional comment, once."""

    __tablename__ = "rating"
    application_id: int = Field(foreign_key="application.id", primary_key=True)
    stars: int
    comment: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    channel: str = Field(max_length=16)  # the chat that rated it
    user_key: str = Field(max_length=64)
    created_at: datetime = _ts(index=True)


class Visit(SQLModel, table=True):
    """The visit times staff proposed for an application, and the one the subscriber picked.

    One row an application: a new proposal replaces the last one (and its pick and reminders)."""

    __tablename__ = "visit"
    application_id: int = Field(foreign_key="application.id", primary_key=True)
    windows: list[list[str]] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))  # UTC ISO
    proposed_by: str = Field(max_length=128)  # the staff member's name, as the thread shows it
    proposed_at: datetime = _ts()
    chosen: int | None = None  # index into windows
    chosen_start: datetime | None = _ts_or_none(index=True)  # the picked window's start: for reminders
    chosen_at: datetime | None = _ts_or_none()
    declined_at: datetime | None = _ts_or_none()  # "none of these suit me"
    reminded_subscriber_at: datetime | None = _ts_or_none()
    reminded_staff_at: datetime | None = _ts_or_none()
