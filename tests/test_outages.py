"""Known outages: "no power" where staff declared an outage is answered before it is filed.

The subscriber is told the expected time, and may ask to be told when power is back (the draft goes)
or file anyway. Closing the outage queues the news for every chat that asked, once each, in its
language. The conversation runs on a real database; `isiqbot outages` is run as a process.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlmodel import select

from dialogs.state import Step
from locales import Msg, translate
from storage import outages, registry
from storage.models import Application, Notification, OutageWatch
from tests.chat import PLAIN, SHOP, Chat, choose_account, describe_and_finish, identify
from tests.conftest import Clock
from tests.processes import isiqbot_env, run_isiqbot


async def declare(
    chat: Chat, clock: Clock, region: str | None = "Yasamal", points: tuple[str, ...] = ()
) -> int:
    async with chat.service.db.transaction() as session:
        outage = await outages.declare(
            session,
            region=region,
            points=points,
            until=clock() + timedelta(hours=3),
            note=None,
            declared_by="test",
            now=clock(),
        )
        assert outage.id is not None
        return outage.id


async def to_reason(chat: Chat, phone: str = PLAIN, lang: str = "az", step: Step = Step.REASON) -> None:
    await chat.start(hint=lang)
    await identify(chat, phone)
    await choose_account(chat)
    assert await chat.step() == step


async def news(chat: Chat) -> list[Notification]:
    async with chat.service.db.transaction() as session:
        query = select(Notification).where(Notification.kind == outages.NEWS)
        return list((await session.scalars(query)).all())


@pytest.mark.parametrize("lang", ["az", "ru", "en"])
async def test_no_power_where_an_outage_is_known_is_told_and_the_news_follows(
    chat: Chat, clock: Clock, lang: str
) -> None:
    outage_id = await declare(chat, clock)
    await to_reason(chat, lang=lang)
    assert chat.lang == lang
    shown = await chat.press("reason:no_power")
    until = clock() + timedelta(hours=3)
    assert translate(Msg("outage.known", {"until": until}), lang) in shown
    assert "16:00" in shown  # 09:00 UTC + 3 h = 12:00 UTC = 16:00 in Baku
    assert await chat.step() == Step.KNOWN_OUTAGE
    assert chat.choice_ids[:2] == ["outage:watch", "outage:file"]

    shown = await chat.press("outage:watch")
    assert translate(Msg("outage.watching"), lang) in shown
    state = await chat.state()
    assert state.step == Step.MENU and not state.draft  # nothing to file: the draft is gone
    await chat.press("new")  # asking again later is one watch, not two
    await chat.press("reason:no_power")
    await chat.press("outage:watch")

    async with chat.service.db.transaction() as session:
        watchers = (await session.scalars(select(OutageWatch))).all()
        assert [(w.outage_id, w.user_key, w.lang) for w in watchers] == [(outage_id, "u1", lang)]
        assert (await session.scalars(select(Application))).all() == []
        assert await outages.close(session, outage_id, clock()) == 1
        assert await outages.close(session, outage_id, clock()) is None  # closed once
    [sent] = await news(chat)
    assert (sent.channel, sent.user_key, sent.lang, sent.application_id) == ("test", "u1", lang, None)
    assert translate(Msg("outage.over"), lang).startswith("💡")

    # Closed: "no power" is an application again.
    await chat.press("new")
    await chat.press("reason:no_power")
    assert await chat.step() == Step.DESCRIPTION


async def test_filing_anyway_goes_on_and_registers_it(chat: Chat, clock: Clock) -> None:
    await declare(chat, clock)
    await to_reason(chat)
    await chat.press("reason:no_power")
    await chat.press("outage:file")
    assert await chat.step() == Step.DESCRIPTION
    await describe_and_finish(chat, "Bizim binada işıq yoxdur.")
    assert await chat.step() == Step.REVIEW
    await chat.press("send")
    async with chat.service.db.transaction() as session:
        [application] = (await session.scalars(select(Application))).all()
        assert application.reason == "no_power"
        assert (await session.scalars(select(OutageWatch))).all() == []


async def test_back_returns_to_the_reasons_and_another_reason_is_not_held(chat: Chat, clock: Clock) -> None:
    await declare(chat, clock)
    await to_reason(chat)
    await chat.press("reason:no_power")
    await chat.press("back")
    assert await chat.step() == Step.REASON
    await chat.press("reason:low_voltage")  # not "no power": nothing to tell
    assert await chat.step() == Step.DESCRIPTION


async def test_only_an_open_outage_of_that_area_is_told(chat: Chat, clock: Clock) -> None:
    other = await declare(chat, clock, region="Nəsimi")
    await to_reason(chat)
    await chat.press("reason:no_power")
    assert await chat.step() == Step.DESCRIPTION  # another region's outage

    await declare(chat, clock)
    clock.advance(hours=4)  # past its expected end: not told as if it were still coming
    await chat.press("back")
    await chat.press("reason:no_power")
    assert await chat.step() == Step.DESCRIPTION
    async with chat.service.db.transaction() as session:
        assert await outages.close(session, other, clock()) == 0


async def test_an_outage_of_metering_points_is_told_for_those_points_only(chat: Chat, clock: Clock) -> None:
    await declare(chat, clock, region=None, points=("un-0002",))
    await to_reason(chat, SHOP, step=Step.METERING_POINT)  # a main code: its metering point first
    await chat.press("UN-0001")
    await chat.press("reason:no_power")
    assert await chat.step() == Step.DESCRIPTION  # UN-0001 is not out

    await chat.command("cancel")
    await chat.press("new")
    await choose_account(chat)
    await chat.press("UN-0002")
    await chat.press("reason:no_power")
    assert await chat.step() == Step.KNOWN_OUTAGE


# ---- `isiqbot outages`, as staff run it ----------------------------------------------------------


def outages_cli(tmp_path: Path, *args: str) -> tuple[int, str, str]:
    result = run_isiqbot(tmp_path, "outages", *args, env=isiqbot_env(tmp_path))
    return result.returncode, result.stdout, result.stderr


@pytest.fixture
def registry_file(tmp_path: Path) -> Path:
    result = run_isiqbot(tmp_path, "registry", "import", str(registry.SAMPLE_CSV), env=isiqbot_env(tmp_path))
    assert result.returncode == 0, result.stderr
    return tmp_path / "isiqbot.db"


def test_the_command_declares_lists_and_closes(tmp_path: Path, registry_file: Path) -> None:
    code, out, err = outages_cli(
        tmp_path, "add", "--region", "yasamal", "--until", "23:59", "--actor", "Rauf"
    )
    assert code == 0, err
    assert out.startswith("outage 1 declared: region Yasamal, until ") and "(Baku)" in out
    code, out, _ = outages_cli(
        tmp_path, "add", "--point", "un-0001", "--point", "UN 0002", "--until", "23:59", "--actor", "R"
    )
    assert code == 0 and "points UN-0001, UN-0002" in out

    code, out, _ = outages_cli(tmp_path, "list")
    lines = out.splitlines()
    assert (
        code == 0
        and len(lines) == 2
        and lines[0].startswith("1\tregion Yasamal\tuntil ")
        and "0 waiting" in lines[0]
    )

    code, out, _ = outages_cli(tmp_path, "close", "1")
    assert code == 0 and out.strip() == "outage 1 closed; 0 chat(s) will be told that power is back"
    code, _, err = outages_cli(tmp_path, "close", "1")
    assert code == 1 and "no open outage 1" in err
    with sqlite3.connect(registry_file) as db:
        assert db.execute("SELECT id FROM outage WHERE closed_at IS NULL").fetchall() == [(2,)]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--region", "Atlantis", "--until", "23:59"], "no region 'Atlantis' in the registry (it has: "),
        (["--region", "Yasamal", "--until", "2020-01-01 10:00"], "is in the past"),
        (["--region", "Yasamal", "--until", "2099-01-01 10:00"], "more than 14 days ahead"),
        (["--region", "Yasamal", "--until", "tomorrow"], "write 18:30, 01.12.2026 18:30 or 2026-12-01 18:30"),
        (["--until", "23:59"], "name the outage's --region, or its metering points with --point"),
        (
            ["--point", "UN-0001", "--point", "XX-9", "--until", "23:59"],
            "no metering point 'XX-9' in the registry",
        ),
        (["--region", "   ", "--until", "23:59"], "must not be empty"),
    ],
)
def test_the_command_refuses_what_it_cannot_use(
    tmp_path: Path, registry_file: Path, args: list[str], says: str
) -> None:
    code, out, err = outages_cli(tmp_path, "add", *args, "--actor", "Rauf")
    assert code != 0 and says in err and "Traceback" not in err and out == ""
    with sqlite3.connect(registry_file) as db:
        assert db.execute("SELECT count(*) FROM outage").fetchone() == (0,)


def test_hh_mm_is_the_next_such_time_in_baku() -> None:
    from bot.staff.outages_cli import parse_until

    now = datetime.fromisoformat("2026-12-01T19:00:00+00:00")  # 23:00 in Baku
    assert parse_until("23:30", now).isoformat() == "2026-12-01T19:30:00+00:00"
    assert parse_until("08:00", now).isoformat() == "2026-12-02T04:00:00+00:00"  # tomorrow morning
    assert parse_until("02.12.2026 08:00", now) == parse_until("2026-12-02 08:00", now)
