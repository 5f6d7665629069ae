"""Broadcasts: one message from staff to every chat an incident concerns, once each, in its language.

`isiqbot broadcast send --region` reaches the chat of every open application in the region and the
chats that follow one; `--outage` those in the outage's region or on its metering points and the chats
waiting for its news. Applications are filed through the dialog on a real database; the command runs
as staff run it (in-process here for the three languages and the edge cases, as a process for what it
prints on bad input). What each chat is shown is the outbox's own rendering, as its sender sends it.
"""

from __future__ import annotations

import argparse
from datetime import timedelta
from pathlib import Path

import pytest
from sqlmodel import col, select

from bot.core.departments import Departments
from bot.core.service import Conversations
from bot.core.settings import Settings
from bot.notify.outbox import chat_text
from bot.staff.broadcast_cli import TEXT_MAX, add_broadcast_parser, cmd_broadcast
from bot.staff.desk import StaffDesk
from dialogs.lifecycle import Status
from locales import Msg, translate
from storage import applications, broadcasts, outages
from storage.db import Database
from storage.models import Application, Broadcast, Notification
from tests.chat import PLAIN, SHOP, Chat, choose_account, describe_and_finish
from tests.conftest import Clock
from tests.processes import isiqbot_env, run_isiqbot

AZ = "Yasamal rayonunda qəza bərpa işləri gedir, işığın saat 18:00-da verilməsi gözlənilir."
RU = "В Ясамальском районе идут аварийные работы, свет ожидается к 18:00."
EN = "Repairs are under way in Yasamal; power is expected back by 18:00."
PARTNER = "+994996958257"  # another Yasamal subscriber of the sample registry


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="isiqbot")
    add_broadcast_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["broadcast", *argv])


async def broadcast(settings: Settings, clock: Clock, *argv: str) -> int:
    return await cmd_broadcast(settings, parse(*argv), now=clock())


async def file(
    service: Conversations, user: str, phone: str, lang: str, point: str | None = None
) -> Application:
    """An application sent through the dialog from chat `user`, in `lang`; filed anyway where an
    outage is known, as a new problem where one is open."""
    chat = Chat(service, user=user)
    await chat.start(hint=lang)
    await chat.press("new")
    await chat.contact(phone)
    await choose_account(chat)
    if point is not None:
        await chat.press(point)
    await chat.press("reason:no_power")
    for choice in ("outage:file", "dup:new"):
        if choice in chat.choice_ids:
            await chat.press(choice)
    await describe_and_finish(chat, "Mənzildə səhərdən işıq yoxdur, qonşularda var.")
    await chat.press("send")
    async with service.db.transaction() as session:
        query = select(Application).where(Application.user_key == user).order_by(col(Application.id).desc())
        return (await session.scalars(query)).first()  # type: ignore[return-value]


async def copies(db: Database) -> list[Notification]:
    async with db.transaction() as session:
        query = select(Notification).where(Notification.kind == broadcasts.NEWS).order_by(Notification.id)
        return list((await session.scalars(query)).all())


def shown(notification: Notification) -> str:
    """What the chat is shown: the text the Telegram and WhatsApp senders send."""
    return chat_text(notification, Departments([], None))


@pytest.mark.parametrize("lang", ["az", "ru", "en"])
async def test_a_region_broadcast_reaches_each_open_applications_chat_once_in_its_language(
    service: Conversations,
    settings: Settings,
    clock: Clock,
    lang: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    mine = await file(service, "elcin", PLAIN, lang)
    await file(service, "elcin", PLAIN, lang)  # a second open application of the same chat: one copy
    partner = await file(service, "lale", PARTNER, "az")
    await file(service, "elnur", SHOP, "ru", point="UN-0001")  # Sumqayıt: not concerned
    desk = StaffDesk(service.db, clock=service.clock)
    await desk.set_status(partner.number, Status.IN_PROGRESS, "staff:1", None)
    await desk.set_status(partner.number, Status.COMPLETED, "staff:1", "Qoruyucu dəyişdirildi.")  # closed
    async with service.db.transaction() as session:  # a neighbour follows Elçin's application
        await applications.follow(session, mine.id or 0, "test", "neighbour", "en", clock())

    code = await broadcast(
        settings, clock, "send", "--region", "yasamal", "--text", AZ, "--text-ru", RU, "--actor", "Rauf"
    )
    out = capsys.readouterr().out
    assert code == 0
    assert out.startswith("broadcast 1: 2 chat(s) in region Yasamal will be told (")
    sent = await copies(service.db)
    assert sorted((n.user_key, n.lang) for n in sent) == sorted([("elcin", lang), ("neighbour", "en")])
    words = {"az": AZ, "ru": RU, "en": AZ}  # no English text was given: the Azerbaijani one
    for notification in sent:
        expected = translate(Msg("broadcast.news", {"text": words[notification.lang]}), notification.lang)
        assert shown(notification) == expected
        assert notification.application_id is None and notification.state == "queued"
    elcin = next(n for n in sent if n.user_key == "elcin")
    assert words[lang] in shown(elcin) and shown(elcin).startswith("📢 ")
    if lang == "ru":
        assert AZ not in shown(elcin)
    assert "chats in en get the Azerbaijani text" in out


async def test_the_same_words_again_within_the_hour_are_refused_unless_asked(
    service: Conversations, settings: Settings, clock: Clock, capsys: pytest.CaptureFixture[str]
) -> None:
    await file(service, "elcin", PLAIN, "az")
    send = ("send", "--region", "Yasamal", "--text", AZ, "--actor", "Rauf")
    assert await broadcast(settings, clock, *send) == 0
    capsys.readouterr()
    assert await broadcast(settings, clock, *send) == 1  # a second press, or the same command run twice
    err = capsys.readouterr().err
    assert "broadcast 1 said the same in region Yasamal at 27.11.2026 13:00; give --again" in err
    assert len(await copies(service.db)) == 1
    assert await broadcast(settings, clock, *send, "--text-en", EN) == 0  # other words: a new message
    assert await broadcast(settings, clock, *send, "--again") == 0
    clock.advance(hours=1, minutes=1)
    assert await broadcast(settings, clock, *send) == 0  # an hour on, the same words are news again
    assert len(await copies(service.db)) == 4
    async with service.db.transaction() as session:
        assert [b.recipients for b in (await session.scalars(select(Broadcast))).all()] == [1, 1, 1, 1]


async def test_a_dry_run_counts_and_sends_nothing(
    service: Conversations, settings: Settings, clock: Clock, capsys: pytest.CaptureFixture[str]
) -> None:
    await file(service, "elcin", PLAIN, "ru")
    await file(service, "lale", PARTNER, "az")
    code = await broadcast(
        settings, clock, "send", "--region", "Yasamal", "--text", AZ, "--actor", "R", "--dry-run"
    )
    assert code == 0
    assert (
        capsys.readouterr().out.strip() == "would tell 2 chat(s) in region Yasamal (az 1, ru 1); nothing sent"
    )
    assert await copies(service.db) == []
    async with service.db.transaction() as session:
        assert (await session.scalars(select(Broadcast))).all() == []


async def test_an_outage_broadcast_reaches_its_points_and_who_waits_for_its_news(
    service: Conversations, settings: Settings, clock: Clock, capsys: pytest.CaptureFixture[str]
) -> None:
    async with service.db.transaction() as session:
        outage = await outages.declare(
            session,
            region=None,
            points=["UN-0001"],
            until=clock() + timedelta(hours=3),
            note=None,
            declared_by="test",
            now=clock(),
        )
        outage_id = outage.id or 0
        await outages.watch(session, outage_id, "test", "waiting", "ru", clock())
    await file(service, "elnur", SHOP, "en", point="UN-0001")  # filed anyway, on the outage's point
    await file(service, "elcin", PLAIN, "az")  # Yasamal: another place
    code = await broadcast(
        settings,
        clock,
        "send",
        "--outage",
        str(outage_id),
        "--text",
        AZ,
        "--text-ru",
        RU,
        "--text-en",
        EN,
        "--actor",
        "R",
    )
    assert code == 0, capsys.readouterr().err
    sent = await copies(service.db)
    assert {(n.user_key, n.payload["text"]) for n in sent} == {("elnur", EN), ("waiting", RU)}

    async with service.db.transaction() as session:
        await outages.close(session, outage_id, clock())
    capsys.readouterr()
    assert (
        await broadcast(settings, clock, "send", "--outage", str(outage_id), "--text", AZ, "--actor", "R")
        == 1
    )
    assert f"no open outage {outage_id}" in capsys.readouterr().err


async def test_no_open_application_there_is_said_and_nothing_is_recorded(
    service: Conversations, settings: Settings, clock: Clock, capsys: pytest.CaptureFixture[str]
) -> None:
    await file(service, "elnur", SHOP, "az", point="UN-0002")  # Sumqayıt only
    assert await broadcast(settings, clock, "send", "--region", "Yasamal", "--text", AZ, "--actor", "R") == 0
    assert capsys.readouterr().out.strip() == "no chat to tell: no open application in region Yasamal"
    async with service.db.transaction() as session:
        assert (await session.scalars(select(Broadcast))).all() == []


async def test_the_list_shows_how_far_each_broadcast_has_gone(
    service: Conversations, settings: Settings, clock: Clock, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await broadcast(settings, clock, "list") == 0
    assert capsys.readouterr().out.strip() == "no broadcast yet"
    await file(service, "elcin", PLAIN, "az")
    await file(service, "lale", PARTNER, "ru")
    assert (
        await broadcast(settings, clock, "send", "--region", "Yasamal", "--text", AZ, "--actor", "Rauf") == 0
    )
    async with service.db.transaction() as session:  # one copy has left, one waits
        first = (
            await session.scalars(select(Notification).where(Notification.kind == broadcasts.NEWS))
        ).first()
        assert first is not None
        first.state = "sent"
    capsys.readouterr()
    assert await broadcast(settings, clock, "list") == 0
    line = capsys.readouterr().out.strip()
    assert line.split("\t")[:6] == [
        "1",
        "27.11.2026 13:00",
        "region Yasamal",
        "by Rauf",
        "2 chat(s)",
        "sent 1, queued 1",
    ]
    assert line.split("\t")[6].startswith("Yasamal rayonunda") and line.endswith("…")


# ---- what staff may type wrong -------------------------------------------------------------------


def broadcast_cli(tmp_path: Path, *args: str) -> tuple[int, str, str]:
    result = run_isiqbot(tmp_path, "broadcast", *args, env=isiqbot_env(tmp_path))
    return result.returncode, result.stdout, result.stderr


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--region", "Atlantis", "--text", AZ], "no region 'Atlantis' in the registry (it has: "),
        (["--region", "Yasamal", "--text", "  \n\t "], "--text: must not be empty"),
        (
            ["--region", "Yasamal", "--text", "ə" * (TEXT_MAX + 1)],
            f"at most {TEXT_MAX} characters (this one has",
        ),
        (["--region", "Yasamal", "--text-ru", RU], "the following arguments are required: --text"),
        (["--text", AZ], "one of the arguments --region --outage is required"),
        (["--region", "Yasamal", "--outage", "1", "--text", AZ], "not allowed with argument"),
        (["--outage", "7", "--text", AZ], "no open outage 7 (see: isiqbot outages list)"),
        (["--outage", "one", "--text", AZ], "invalid int value: 'one'"),
    ],
)
def test_the_command_refuses_what_it_cannot_use(tmp_path: Path, args: list[str], says: str) -> None:
    result = run_isiqbot(
        tmp_path,
        "registry",
        "import",
        str(Path(__file__).parents[1] / "storage/sample_registry.csv"),
        env=isiqbot_env(tmp_path),
    )
    assert result.returncode == 0, result.stderr
    code, out, err = broadcast_cli(tmp_path, "send", *args, "--actor", "Rauf")
    assert code != 0 and says in err and "Traceback" not in err and out == ""


async def test_markup_and_control_characters_reach_the_chat_as_plain_words(
    service: Conversations, settings: Settings, clock: Clock
) -> None:
    await file(service, "elcin", PLAIN, "az")
    typed = "<b>Diqqət</b> \x1b[31m<script>alert(1)</script>\u202e\n\n\n\nSabah   10:00-da  bərpa."
    assert (
        await broadcast(settings, clock, "send", "--region", "Yasamal", "--text", typed, "--actor", "R") == 0
    )
    (copy,) = await copies(service.db)
    assert copy.payload["text"] == "<b>Diqqət</b> [31m<script>alert(1)</script>\n\nSabah 10:00-da bərpa."
    assert copy.payload["text"] in shown(copy)  # sent as plain text: Telegram and WhatsApp show it as typed
