"""`isiqbot broadcast send | list`: one message from staff to every chat an incident concerns.

`send --region R` reaches the chat of every open application in the region; `send --outage ID` those
in the outage's region or on its metering points, and the chats waiting for its news. Each chat gets
one copy, in its language when staff wrote one (`--text-ru`, `--text-en`), else the Azerbaijani
`--text`, under a line saying it is from Azərişıq. The copies leave through the outbox when `isiqbot
run` runs, paced within Telegram's budget. The same words to the same audience within the hour are
refused as a second press unless `--again` is given; `--dry-run` counts the audience and sends nothing.
"""

from __future__ import annotations

import argparse
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import func
from sqlmodel import col, select

from bot.core.settings import Settings
from bot.staff.cli import CliError, actor_name, clean, local_time, on_database, one_line, registry_region
from storage import broadcasts
from storage.db import Database
from storage.models import Notification, Outage

TEXT_MAX = 1000  # with the line above it, well inside one Telegram message and one WhatsApp text


def add_broadcast_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`broadcast` and its commands, under the `isiqbot` command's subparsers."""
    parser = commands.add_parser("broadcast", help="staff: one message to every chat an incident concerns")
    sub = parser.add_subparsers(dest="broadcast_command", required=True, metavar="COMMAND")
    send = sub.add_parser(
        "send",
        help="tell every chat with an open application in a region, or on an outage",
        description="Each chat gets one copy in its language (the Azerbaijani text when there is no other), "
        "through the outbox: it leaves when `isiqbot run` runs.",
    )
    where = send.add_mutually_exclusive_group(required=True)
    where.add_argument(
        "--region", type=one_line(100), help="the region, as the registry names it (e.g. Yasamal)"
    )
    where.add_argument("--outage", type=int, metavar="ID", help="an open outage (see: isiqbot outages list)")
    send.add_argument("--text", required=True, type=_text, help="the message, in Azerbaijani")
    send.add_argument("--text-ru", type=_text, metavar="TEXT", help="the message for chats in Russian")
    send.add_argument("--text-en", type=_text, metavar="TEXT", help="the message for chats in English")
    send.add_argument("--actor", type=actor_name, required=True, metavar="NAME", help="who sends it")
    send.add_argument("--dry-run", action="store_true", help="count the chats it would reach; send nothing")
    send.add_argument("--again", action="store_true", help="send words already sent there within the hour")
    sub.add_parser("list", help="the latest broadcasts, with how many copies have left")


def _text(value: str) -> str:
    """The message as staff wrote it, its lines kept: no control characters, no runs of blank lines."""
    lines = [" ".join(line.split()) for line in clean(value).split("\n")]
    text = "\n".join(lines).strip("\n")
    while "\n\n\n" in text:
        text = text.replace("\n\n\n", "\n\n")
    if not text:
        raise argparse.ArgumentTypeError("must not be empty")
    if len(text) > TEXT_MAX:
        raise argparse.ArgumentTypeError(f"at most {TEXT_MAX} characters (this one has {len(text)})")
    return text


async def cmd_broadcast(settings: Settings, args: argparse.Namespace, *, now: datetime | None = None) -> int:
    """Run `isiqbot broadcast …`; `now` is for tests."""
    at = now or datetime.now(UTC)

    async def work(db: Database) -> int:
        if args.broadcast_command == "list":
            return await _list(db)
        return await _send(db, args, at)

    return await on_database(settings, work)


async def _send(db: Database, args: argparse.Namespace, now: datetime) -> int:
    texts = {"az": args.text, **({"ru": args.text_ru} if args.text_ru else {})}
    if args.text_en:
        texts["en"] = args.text_en
    async with db.transaction() as session:
        region, outage = args.region, None
        if args.outage is not None:
            outage = await session.get(Outage, args.outage)
            if outage is None or outage.closed_at is not None:
                raise CliError(f"no open outage {args.outage} (see: isiqbot outages list)")
        else:
            region = await registry_region(session, args.region)
        chats = await broadcasts.audience(session, region, outage)
        where = f"outage {outage.id}" if outage else f"region {region}"
        if not chats:
            print(f"no chat to tell: no open application in {where}" + (", no one waiting" if outage else ""))
            return 0
        by_lang = ", ".join(f"{lang} {n}" for lang, n in sorted(Counter(c.lang for c in chats).items()))
        if args.dry_run:
            print(f"would tell {len(chats)} chat(s) in {where} ({by_lang}); nothing sent")
            return 0
        before = await broadcasts.repeated(session, region, outage.id if outage else None, texts, now)
        if before is not None and not args.again:
            raise CliError(
                f"broadcast {before.id} said the same in {where} at {local_time(before.created_at)}; "
                "give --again to send it once more"
            )
        sent = await broadcasts.send(
            session, region=region, outage=outage, texts=texts, actor=args.actor, chats=chats, now=now
        )
    missing = [lang for lang in ("ru", "en") if lang not in texts and any(c.lang == lang for c in chats)]
    note = f"; chats in {', '.join(missing)} get the Azerbaijani text" if missing else ""
    print(f"broadcast {sent.id}: {len(chats)} chat(s) in {where} will be told ({by_lang}){note}")
    return 0


async def _list(db: Database) -> int:
    async with db.transaction() as session:
        latest = await broadcasts.recent(session)
        ids = [b.id for b in latest]
        which = Notification.payload["broadcast"].as_integer()
        counted = select(which, Notification.state, func.count()).where(
            Notification.kind == broadcasts.NEWS, which.in_(ids)
        )
        states: dict[int, Counter[str]] = {}
        for broadcast_id, state, count in await session.execute(
            counted.group_by(which, col(Notification.state))
        ):
            states.setdefault(broadcast_id, Counter())[state] = count
    if not latest:
        print("no broadcast yet")
    for b in latest:
        assert b.id is not None
        where = f"outage {b.outage_id}" if b.outage_id else f"region {b.region}"
        print(
            f"{b.id}\t{local_time(b.created_at)}\t{where}\tby {b.actor}\t{b.recipients} chat(s)"
            f"\t{_states(states.get(b.id, Counter()))}\t{_preview(b.texts.get('az', ''))}"
        )
    return 0


def _states(counts: Counter[str]) -> str:
    """sent 40, queued 2, failed 1: how far its copies are (removed by retention: not counted)."""
    order: Sequence[str] = ("delivered", "sent", "sending", "queued", "failed")
    return ", ".join(f"{state} {counts[state]}" for state in order if counts[state]) or "—"


def _preview(text: str, width: int = 40) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"
