"""Known outages and duplicates from the department's group: /outages, /outage, /outage_close, /link.

Staff type the commands in their Telegram group (the real aiogram client against the fake Bot API, the
real database on SQLite and PostgreSQL, a test clock); the desk does what `isiqbot outages` and
`isiqbot applications link` do, with the same storage, and answers each refusal in one line.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlmodel import col, select

from bot.channels.telegram import CHANNEL
from bot.staff.outage_until import UntilError, parse_until
from dialogs.lifecycle import Status
from dialogs.state import Step
from locales import Msg, translate
from storage import outages
from storage.db import Database
from storage.models import Application, ApplicationFollower, Outage, StaffAction, StatusChange
from tests.chat import BOTH, LANDLORD, PLAIN, Chat, choose_account, identify
from tests.conftest import Clock
from tests.fake_telegram import FakeTelegram, StaffMember
from tests.test_staff_chat import BAKI, GENCE, SUBSCRIBER, Desk, make_desk, t

# 09:00 UTC on 27.11.2026 (the test clock) is 13:00 in Baku: 18:00 Baku today is 14:00 UTC.
AT_SIX = datetime(2026, 11, 27, 14, 0, tzinfo=UTC)


@pytest.fixture
async def desk(fake: FakeTelegram, sample_db: Database, clock: Clock) -> AsyncIterator[Desk]:
    async for made in make_desk(fake, sample_db, clock):
        yield made


def answer(desk: Desk, chat_id: int = BAKI) -> str:
    """The bot's last message in the group."""
    last: dict[str, Any] = desk.fake.sent_to(chat_id)[-1]
    assert "parse_mode" not in last  # plain text: what staff typed is shown as typed
    return str(last["text"])


async def audit(desk: Desk) -> list[tuple[str, bool, str]]:
    return [(a.action, a.allowed, a.user_name) for a in await desk.rows(StaffAction)]


async def no_power(desk: Desk, lang: str, user: int = SUBSCRIBER) -> Chat:
    """A Telegram subscriber in Yasamal reports no power."""
    chat = Chat(desk.service, user=str(user), channel=CHANNEL)
    await chat.start(hint=lang)
    await identify(chat, PLAIN)
    await choose_account(chat)
    await chat.press("reason:no_power")
    return chat


# ---- outages ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("lang", ["az", "ru", "en"])
async def test_an_outage_declared_in_the_group_is_told_and_its_close_reaches_the_waiting_chat(
    desk: Desk, lang: str
) -> None:
    rauf = StaffMember(desk.fake, 100001, BAKI, "Rauf")
    await rauf.text("/outages")
    assert answer(desk) == t("staff.outages_empty")

    await rauf.text("/outage yasamal 18:00")  # the registry's spelling is found in any case
    assert answer(desk) == t("staff.outage_declared", id=1, region="Yasamal", until=AT_SIX)
    assert "27.11.2026 18:00" in answer(desk)  # Baku time
    [outage] = await desk.rows(Outage)
    assert (outage.region, outage.points, outage.declared_by) == ("Yasamal", [], "Rauf")

    chat = await no_power(desk, lang)
    assert await chat.step() == Step.KNOWN_OUTAGE
    assert translate(Msg("outage.known", {"until": AT_SIX}), lang) in chat.text
    await chat.press("outage:watch")

    await rauf.text("/outages@isiqbot_test_bot")
    listed = answer(desk).splitlines()
    assert listed[0] == t("staff.outages_title", count=1)
    where = Msg("staff.outage_region", {"region": "Yasamal"})
    assert listed[1] == t("staff.outages_line", id=1, where=where, until=AT_SIX, waiting=1, name="Rauf")

    await rauf.text("/outage_close 1")
    assert answer(desk) == t("staff.outage_closed", id=1, count=1)
    await desk.worker.drain()
    assert translate(Msg("outage.over"), lang) in desk.to_subscriber()
    await rauf.text("/outage_close 1")  # closed once: the second is refused, nobody is told twice
    assert answer(desk) == t("staff.outage_close_unknown", id=1)
    await desk.worker.drain()
    assert desk.to_subscriber().count(translate(Msg("outage.over"), lang)) == 1

    assert await audit(desk) == [
        ("/outages", True, "Rauf"),
        ("/outage", True, "Rauf"),
        ("/outages", True, "Rauf"),
        ("/outage_close", True, "Rauf"),
        ("/outage_close", False, "Rauf"),
    ]


async def test_an_outage_until_a_day_and_time_and_a_listing_of_points(desk: Desk) -> None:
    rauf = StaffMember(desk.fake, 100002, BAKI, "Aynur")
    await rauf.text("/outage  Yasamal   28.11  09:30")
    until = datetime(2026, 11, 28, 5, 30, tzinfo=UTC)
    assert answer(desk) == t("staff.outage_declared", id=1, region="Yasamal", until=until)
    await rauf.text("/outage Yasamal 10:00")  # 10:00 Baku has passed today: tomorrow's
    assert answer(desk) == t(
        "staff.outage_declared", id=2, region="Yasamal", until=datetime(2026, 11, 28, 6, tzinfo=UTC)
    )
    async with desk.db.transaction() as session:  # declared from the shell, for metering points
        session.add(Outage(points=["UN-0001"], until=until, declared_by="cli", created_at=desk.clock()))
    await rauf.text("/outages")
    shown = answer(desk)
    assert t("staff.outage_points", points="UN-0001") in shown and shown.count("\n") == 3


def refusals() -> list[tuple[str, Msg]]:
    usage, close_usage = Msg("staff.outage_usage"), Msg("staff.outage_close_usage")
    return [
        ("/outage", usage),
        ("/outage Yasamal", usage),
        ("/outage 18:00", usage),
        ("/outage " + "Yasamal " * 400 + "18:00", usage),
        ("/outage Yasamal tomorrow", Msg("staff.outage_until_format", {"until": "tomorrow"})),
        ("/outage Yasamal 25:00", Msg("staff.outage_until_format", {"until": "25:00"})),
        ("/outage Yasamal 31.02 10:00", Msg("staff.outage_until_format", {"until": "31.02 10:00"})),
        ("/outage Yasamal 01.11 10:00", Msg("staff.outage_until_past", {"until": "01.11 10:00"})),
        (
            "/outage Yasamal 2026-12-31 10:00",
            Msg("staff.outage_until_far", {"until": "2026-12-31 10:00", "days": 14}),
        ),
        ("/outage <b>x</b> 18:00", Msg("staff.outage_region_unknown", {"region": "<b>x</b>", "known": "…"})),
        ("/outage Atlantis 18:00", Msg("staff.outage_region_unknown", {"region": "Atlantis", "known": "…"})),
        ("/outage Gəncə 18:00", Msg("staff.outage_other_department", {"region": "Gəncə", "department": "…"})),
        ("/outage_close", close_usage),
        ("/outage_close one", close_usage),
        ("/outage_close <b>1</b>", close_usage),
        ("/outage_close -1", close_usage),
        ("/outage_close " + "9" * 40, close_usage),
        ("/outage_close 42", Msg("staff.outage_close_unknown", {"id": 42})),
        ("/link", Msg("staff.link_usage")),
        ("/link 1", Msg("staff.link_usage")),
        ("/link 1 2 3", Msg("staff.link_usage")),
        ("/link <b>1</b> 2", Msg("staff.link_usage")),
        ("/link " + "1" * 5000 + " 1", Msg("staff.link_usage")),
        ("/link TX-2026-999999 1", Msg("staff.link_not_found", {"number": "TX-2026-999999"})),
        ("/link 1 tx-2026-000777", Msg("staff.link_not_found", {"number": "TX-2026-000777"})),
    ]


@pytest.mark.parametrize(("typed", "said"), refusals(), ids=lambda v: str(v)[:40])
async def test_bad_arguments_are_refused_in_one_line_and_change_nothing(
    desk: Desk, typed: str, said: Msg
) -> None:
    application = await desk.file()
    assert application.number == "TX-2026-000001"
    rauf = StaffMember(desk.fake, 100001, BAKI, "Rauf")
    await rauf.text(typed)
    shown = answer(desk)
    params = dict(said.params)
    if said.key == "staff.outage_region_unknown":  # the registry's regions are suggested
        async with desk.db.transaction() as session:
            params["known"] = ", ".join((await outages.regions(session))[:30])
        assert "Yasamal" in params["known"] and "Nəsimi" in params["known"]
    if said.key == "staff.outage_other_department":
        gence = desk.policy.departments.by_key("gence")
        assert gence is not None
        params["department"] = gence.name("az")
    assert shown == t(said.key, **params) and "\n" not in shown
    assert await desk.rows(Outage) == []
    assert (await desk.app(application.id or 0)).status == Status.REGISTERED
    name = typed.split()[0].lstrip("/")
    assert await audit(desk) == [(f"/{name}", False, "Rauf")]


async def test_a_stranger_and_another_department_are_refused(desk: Desk) -> None:
    stranger = StaffMember(desk.fake, 777, BAKI, "Kənar")
    for typed in ("/outage Yasamal 18:00", "/outages", "/outage_close 1", "/link 2 1"):
        await stranger.text(typed)
        assert answer(desk) == t("staff.refused_not_staff")
    ganja = StaffMember(desk.fake, 100003, GENCE, "Gəncəli")
    await ganja.text("/outage Yasamal 18:00")  # Yasamal is Baku's
    assert answer(desk, GENCE).startswith("Yasamal ")
    await StaffMember(desk.fake, 100001, BAKI).text("/outage Yasamal 18:00")
    await ganja.text("/outage_close 1")  # nor may Ganja close Baku's outage
    assert answer(desk, GENCE).startswith("Yasamal ")
    [outage] = await desk.rows(Outage)
    assert outage.closed_at is None
    assert [(action, ok) for action, ok, _ in await audit(desk)] == [
        ("/outage", False),
        ("/outages", False),
        ("/outage_close", False),
        ("/link", False),
        ("/outage", False),
        ("/outage", True),
        ("/outage_close", False),
    ]


# ---- duplicates ------------------------------------------------------------------------------------


async def test_a_duplicate_linked_in_the_group_is_closed_and_its_chat_follows_the_main_one(
    desk: Desk,
) -> None:
    main = await desk.file(SUBSCRIBER, PLAIN)
    duplicate = await desk.file(502, LANDLORD)
    rauf = StaffMember(desk.fake, 100001, BAKI, "Rauf")

    await rauf.text(f"/link {duplicate.number.lower()} 1")  # a number in any case, or the serial
    assert answer(desk) == t("staff.linked", duplicate=duplicate.number, main=main.number)
    closed = await desk.app(duplicate.id or 0)
    assert closed.status == Status.REJECTED
    assert closed.result == t("duplicate.linked", number=main.number)
    async with desk.db.transaction() as session:
        change = (
            await session.scalars(select(StatusChange).where(StatusChange.application_id == duplicate.id))
        ).all()[-1]
        followers = (await session.scalars(select(ApplicationFollower))).all()
    assert change.actor == "staff:100001" and change.new_status == Status.REJECTED
    assert [(f.application_id, f.user_key) for f in followers] == [(main.id, "502")]
    [action] = await desk.rows(StaffAction)
    assert (action.action, action.allowed, action.user_name, action.application_id) == (
        "/link",
        True,
        "Rauf",
        duplicate.id,
    )

    await desk.worker.drain()
    told = len(desk.to_subscriber(502))
    await rauf.press(f"s:{main.id}:work")  # the main one's news reach the duplicate's chat too
    await desk.worker.drain()
    news = desk.to_subscriber(502)[told:]
    assert any(main.number in text for text in news), news

    # The same rules as the shell's: a closed duplicate, itself, a closed main one.
    await rauf.text(f"/link {duplicate.number} {main.number}")
    assert answer(desk) == translate(
        Msg(
            "status.error_transition",
            {"current": Msg("status.rejected"), "new": Msg("status.rejected")},
        ),
        "az",
    )
    await rauf.text(f"/link {main.number} {main.number}")
    assert answer(desk) == t("duplicate.error_same")
    third = await desk.file(503, LANDLORD)
    await rauf.text(f"/link {third.number} {duplicate.number}")
    assert answer(desk) == t("duplicate.error_main_closed", number=duplicate.number)
    assert (await desk.app(third.id or 0)).status == Status.REGISTERED
    assert [ok for _, ok, _ in await audit(desk)][-3:] == [False, False, False]


async def test_another_departments_application_is_not_linked(desk: Desk) -> None:
    baku = await desk.file(SUBSCRIBER, PLAIN)
    ganja = await desk.file(502, BOTH)
    assert ganja.department == "gence"
    rauf = StaffMember(desk.fake, 100001, BAKI, "Rauf")
    await rauf.text(f"/link {ganja.number} {baku.number}")
    assert answer(desk) == t("staff.link_department", number=ganja.number)
    await rauf.text(f"/link {baku.number} {ganja.number}")
    assert answer(desk) == t("staff.link_department", number=ganja.number)
    async with desk.db.transaction() as session:
        statuses = (await session.scalars(select(Application.status).order_by(col(Application.id)))).all()
    assert statuses == ["registered", "registered"]


async def test_each_staff_chat_menu_has_the_new_commands(desk: Desk) -> None:
    await desk.chat.set_commands()
    calls = [p for m, p in desk.fake.calls if m == "setMyCommands"]
    commands = {c["command"]: c["description"] for c in calls[0]["commands"]}
    assert list(commands) == ["open", "find", "stats", "outages", "outage", "outage_close", "link"]
    assert commands["link"] == t("staff.command_link")


# ---- the expected end, as typed --------------------------------------------------------------------


def test_a_day_without_a_year_is_the_nearest_one() -> None:
    new_year_eve = datetime(2026, 12, 30, 8, 0, tzinfo=UTC)
    assert parse_until("02.01 10:00", new_year_eve) == datetime(2027, 1, 2, 6, 0, tzinfo=UTC)
    assert parse_until("31.12 23:00", new_year_eve) == datetime(2026, 12, 31, 19, 0, tzinfo=UTC)
    with pytest.raises(UntilError) as past:
        parse_until("29.12 10:00", new_year_eve)
    assert past.value.reason == "past"
    with pytest.raises(UntilError) as unreadable:
        parse_until("29.02 10:00", new_year_eve)  # no 29 February near 2026
    assert unreadable.value.reason == "format"
