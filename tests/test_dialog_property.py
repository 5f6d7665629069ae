"""Property test: any sequence of events a person (or a confused platform) can send keeps the dialog sound.

Hypothesis draws up to 40 events one at a time, each from what is on the screen now: mostly the buttons
of the current question, sometimes a stale or made-up button, free or meaningful text, commands, contacts,
locations (NaN and infinity included) and photos, with the clock moving forward in between. After every
event the update must have been handled (no exception, no apology), the stored state must be a real step
that survives a JSON round trip exactly, the dialog must have said something, and what it asked must be
the question of the stored state. Applications filed on the way must start with exactly one change to
'registered', one per confirmation shown. SQLite only: one database, a fresh chat per example.
"""

from __future__ import annotations

import itertools
import json

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import event as statistic
from hypothesis import strategies as st
from sqlalchemy import delete
from sqlmodel import col, select

from bot.core.service import Conversations
from dialogs.events import Command, Contact, Event, Location, Photo, Pressed, Text
from dialogs.lifecycle import Status
from dialogs.state import State, Step
from locales import LANGUAGES
from storage import conversations
from storage.db import Database
from storage.models import Application, ApplicationCounter, Notification, OtpRequest, StatusChange
from tests.chat import (
    BOTH,
    CHAIN,
    CHAIN_CODE,
    LANDLORD,
    PLAIN,
    PLAIN_CODE,
    SHOP,
    SHOP_CODE,
    Chat,
    SmsRecorder,
)
from tests.conftest import Clock

MAX_EVENTS = 40
STEPS = {step.value for step in Step}
_users = itertools.count(1)


@pytest.fixture
def backend() -> str:
    """Overrides the conftest parameter: this test runs on SQLite only (`sample_db` is then SQLite)."""
    return "sqlite"


# ---- what a person can send -----------------------------------------------------------------------

MEANINGFUL_TEXT = (
    "Mənzildə səhərdən işıq yoxdur, qonşularda var.",
    "+994 55 111 22 33",
    "+994 99 651 00 79",
    "012 498 76 54",
    "elcin.m@example.az",
    PLAIN_CODE,
    CHAIN_CODE,
    SHOP_CODE,
    "999999999999999",
    "Müraciəti göndər",
    "⬅️ Geri",
    "'; DROP TABLE application;--",
    "<b>x</b><script>alert(1)</script>",
    "\u202eSəhərdən işıq yoxdur",
    "",
)
PHONES = (PLAIN, BOTH, SHOP, CHAIN, LANDLORD, "+994501112233", "+994124987654", "+79161234567", "")
OTHER_CHOICES = (
    "new",
    "send",
    "reason:no_power",
    "acc:1",
    "mp:1",
    "app:1",
    "page:1",
    "page:-1",
    "edit:contacts",
    "edit:nothing",
    "edit:attachments",
    "lang:ru",
    "lang:xx",
    "resume",
    "cancel_yes",
    "keep",
    "done",
    "ok",
    "fresh",
    "another_phone",
    "phone_add",
)
COMMAND_NAMES = ("start", "new", "my", "cancel", "lang", "help", "START", "Lang", "foo", "")
LANG_ARGS = ("", "ru", "en", "az", "RU ", "xx", "ru-RU")

digits6 = st.text(alphabet="0123456789", min_size=6, max_size=6)
floats = st.floats(allow_nan=True, allow_infinity=True)
in_azerbaijan = st.tuples(st.floats(38.4, 41.9), st.floats(44.8, 50.8))

# Weighted kinds: what moves the application on is what people do most; the rest is noise around it.
KINDS = (
    ("forward",) * 12 + ("press",) * 3 + ("text",) * 3 + ("stale", "command", "contact", "location", "photo")
)
DESCRIPTIONS = (
    "Mənzildə səhərdən işıq yoxdur, qonşularda var.",
    "No power since the morning in the flat.",
    "Нет света с утра, у соседей есть.",
    "'; DROP TABLE application;--",
    "<b>x</b><script>alert(1)</script>",
)
EXTRA_PHONES = ("+994 70 444 55 66", "012 498 76 54", "+994 77 444 55 67", PLAIN)
ACCOUNT_CODES = (PLAIN_CODE, CHAIN_CODE, SHOP_CODE)
REGISTRY_PHONES = (PLAIN, BOTH, SHOP, CHAIN, LANDLORD)
PROGRESS = frozenset({"new", "resume", "done", "ok", "keep", "skip", "send"})


def _forward(data: st.DataObject, chat: Chat, step: Step, otp: str | None) -> Event:
    """What a person who wants to file an application would send at `step`."""
    shown = chat.choice_ids if chat.messages else []
    buttons = [c for c in shown if c not in ("back", "cancel", "help", "remove", "clear")]
    buttons += [c for c in shown if c in PROGRESS] * 3
    typed: list[Event] = []
    if step == Step.ASK_PHONE:
        typed = [Contact(p, own=True) for p in REGISTRY_PHONES] + [Text("+994 99 651 00 79")]
    elif step == Step.ASK_CODE:
        typed = [Text(code) for code in ACCOUNT_CODES]
    elif step == Step.ASK_OTP and otp is not None:
        typed = [Text(otp)] * 3
    elif step == Step.DESCRIPTION:  # the description, a photo and the location, on one screen
        lat, lon = data.draw(in_azerbaijan, label="place")
        typed = [Text(d) for d in DESCRIPTIONS] + [Photo("file-1"), Location(lat, lon)]
    elif step == Step.CONTACTS:
        typed = [Text("+994 55 111 22 33"), Text("012 498 76 54"), Text("elcin.m@example.az")]
    elif step == Step.MOBILE:
        typed = [Text("+994 55 111 22 33"), Contact("+994501112233", own=True)]
    elif step == Step.EXTRA_PHONES:
        typed = [Text(p) for p in EXTRA_PHONES]
    elif step == Step.EMAIL:
        typed = [Text("elcin.m@example.az"), Text("ünvan@example.az")]
    elif step == Step.REVIEW:
        buttons += ["send"] * 8
    options: list[Event] = typed + [Pressed(b, chat.rev) for b in buttons]
    return data.draw(st.sampled_from(options or [Command("new")]), label="forward")


def event_for(data: st.DataObject, chat: Chat, step: Step, otp: str | None) -> Event:
    """One event, drawn with the screen the person has in front of them."""
    kind = data.draw(st.sampled_from(KINDS), label="kind")
    choices = chat.choice_ids if chat.messages else []
    if kind == "forward":
        return _forward(data, chat, step, otp)
    if kind == "press" and choices:
        return Pressed(data.draw(st.sampled_from(choices), label="choice"), chat.rev)
    if kind in ("press", "stale"):
        choice = data.draw(
            st.one_of(
                st.sampled_from(choices or ["new"]), st.sampled_from(OTHER_CHOICES), st.text(max_size=12)
            ),
            label="any choice",
        )
        rev = data.draw(
            st.one_of(st.none(), st.just(chat.rev), st.integers(chat.rev - 3, chat.rev + 1)), label="rev"
        )
        return Pressed(choice, rev)
    if kind == "text":
        text = data.draw(
            st.one_of(st.sampled_from(MEANINGFUL_TEXT), st.text(max_size=60), digits6), label="text"
        )
        return Text(text)
    if kind == "command":
        name = data.draw(st.one_of(st.sampled_from(COMMAND_NAMES), st.text(max_size=8)), label="command")
        arg = data.draw(st.one_of(st.sampled_from(LANG_ARGS), st.text(max_size=6)), label="arg")
        return Command(name, arg)
    if kind == "contact":
        phone = data.draw(st.one_of(st.sampled_from(PHONES), st.text(max_size=20)), label="phone")
        return Contact(phone, own=data.draw(st.booleans(), label="own"))
    if kind == "location":
        lat, lon = data.draw(st.one_of(in_azerbaijan, st.tuples(floats, floats)), label="location")
        return Location(lat, lon)
    ref = data.draw(st.one_of(st.just("file-1"), st.text(max_size=20), st.just("x" * 600)), label="photo")
    return Photo(ref)


# ---- the properties -------------------------------------------------------------------------------


async def forget_applications(db: Database) -> None:
    """Remove what earlier examples left (the registry stays): ids, numbers and code limits start over."""
    async with db.transaction() as session:
        for table in (Notification, StatusChange, Application, ApplicationCounter, OtpRequest):
            await session.execute(delete(table))


async def check_stored_state(chat: Chat) -> Step:
    async with chat.service.db.transaction() as session:
        row = await conversations.get(session, chat.subscriber.channel, chat.subscriber.user_key)
    assert row is not None and row.state, "no state stored after an update"
    raw = row.state
    stored = json.loads(raw)
    assert stored["step"] in STEPS
    state = State.from_json(raw)
    assert state.step.value == stored["step"] == row.step  # read as stored, not reset to a fresh menu
    assert state.lang in LANGUAGES and state.lang == row.lang == chat.lang
    assert state.to_json() == raw
    assert State.from_json(state.to_json()) == state
    assert chat.rev == state.rev
    return state.step


async def check_applications(chat: Chat, registered: int) -> None:
    async with chat.service.db.transaction() as session:
        apps = (
            await session.scalars(select(Application).where(Application.user_key == chat.subscriber.user_key))
        ).all()
        changes = (
            await session.scalars(
                select(StatusChange)
                .where(col(StatusChange.application_id).in_([a.id for a in apps]))
                .order_by(col(StatusChange.id))
            )
        ).all()
    assert len(apps) == registered, "an application was filed without 'registered' being shown, or not filed"
    for app in apps:
        trail = [(c.old_status, c.new_status) for c in changes if c.application_id == app.id]
        assert trail and trail[0] == (None, Status.REGISTERED.value), (app.number, trail)
        assert sum(1 for old, _ in trail if old is None) == 1, (app.number, trail)
        for (_, previous), (old, _) in itertools.pairwise(trail):
            assert old == previous, (app.number, trail)
        assert app.status == trail[-1][1] and app.status in {s.value for s in Status}
        assert app.mobile and app.reason
        assert app.description or app.reason != "other", "'other' was filed without a description"


@settings(
    max_examples=60,
    deadline=None,
    phases=(Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink),  # "explain" re-runs for minutes
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
async def test_any_sequence_of_events_keeps_the_dialog_sound(
    sample_db: Database, data: st.DataObject
) -> None:
    # Every example starts from the same world, so that Hypothesis can replay and shrink it.
    await forget_applications(sample_db)
    sms, clock = SmsRecorder(), Clock()
    service = Conversations(sample_db, sms, clock=clock)
    chat = Chat(service, user=f"prop-{next(_users)}")
    registered = 0
    reached: set[Step] = set()
    step = Step.MENU
    for _ in range(data.draw(st.integers(1, MAX_EVENTS), label="length")):
        otp = str(sms.sent[-1][1].params["code"]) if sms.sent else None
        event = event_for(data, chat, step, otp)
        await chat.send(event)  # must not raise

        every_key = [part.key for message in chat.messages for part in message.parts]
        assert "error.internal" not in every_key, f"{event!r} ended in the apology"
        assert chat.messages and chat.question.parts, f"nothing said after {event!r}"
        assert chat.text.strip()  # every message renders in the chat's language
        registered += every_key.count("review.registered")
        step = await check_stored_state(chat)
        reached.add(step)
        # What the person now sees is the question of the stored state (as re-asked after a restart).
        again = await service.handle(chat.subscriber, None)
        assert again is not None and again.outcome.messages == (chat.question,)

        seconds = data.draw(st.one_of(st.integers(0, 90), st.integers(0, 3 * 86_400)), label="wait")
        clock.advance(seconds=seconds)
    await check_applications(chat, registered)
    # Shown by --hypothesis-show-statistics: how deep the random walks get.
    for seen in reached:
        statistic(f"reached {seen.value}")
    statistic(f"registered {registered}")
