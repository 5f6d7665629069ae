"""`isiqbot outages add | list | close`: staff declare a known outage, and close it when power is back.

While an outage is open, a subscriber who reports "no power" for an account in its region (or on one
of its metering points) is told so, with the expected time, before filing, and may ask to be told
when it is over. Closing it queues that news for each of them; it leaves when `isiqbot run` runs.
Times are Baku time, as staff say them.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from datetime import UTC, datetime

from bot.core.settings import Settings
from bot.staff import outage_until
from bot.staff.cli import (
    CliError,
    actor_name,
    fail,
    local_time,
    on_database,
    one_line,
    registry_region,
)
from bot.staff.outage_until import MAX_AHEAD, UntilError
from storage import outages
from storage.db import Database


def add_outages_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`outages` and its commands, under the `isiqbot` command's subparsers."""
    parser = commands.add_parser("outages", help="staff: known outages, told to subscribers before they file")
    sub = parser.add_subparsers(dest="outages_command", required=True, metavar="COMMAND")
    add = sub.add_parser(
        "add",
        help="declare an outage of a region or of metering points",
        description="Subscribers reporting no power there are told so, with the expected end, before filing.",
    )
    add.add_argument("--region", type=one_line(100), help="the region, as the registry names it (e.g. Bakı)")
    add.add_argument(
        "--point",
        action="append",
        default=[],
        type=one_line(40),
        metavar="CODE",
        help="a metering point (repeatable)",
    )
    add.add_argument(
        "--until",
        required=True,
        metavar="TIME",
        help="when power is expected back, Baku time: 18:30, 01.12 18:30 or 2026-12-01 18:30",
    )
    add.add_argument("--note", type=one_line(300), help="what staff know (kept with the outage, not shown)")
    add.add_argument("--actor", type=actor_name, required=True, metavar="NAME", help="who declares it")
    sub.add_parser("list", help="the open outages, with how many chats wait for the news")
    close = sub.add_parser("close", help="power is back: close the outage and tell the chats that asked")
    close.add_argument("id", type=int, metavar="ID")


def parse_until(value: str, now: datetime) -> datetime:
    """A Baku time staff typed, as UTC: a bare HH:MM is the next such moment (`outage_until`)."""
    try:
        return outage_until.parse_until(value, now)
    except UntilError as exc:
        if exc.reason == "past":
            raise CliError(f"--until {exc.text!r} is in the past") from None
        if exc.reason == "far":
            raise CliError(f"--until {exc.text!r} is more than {MAX_AHEAD.days} days ahead") from None
        raise CliError(
            f"--until {value!r}: write 18:30, 01.12.2026 18:30 or 2026-12-01 18:30 (Baku time)"
        ) from None


async def cmd_outages(settings: Settings, args: argparse.Namespace, *, now: datetime | None = None) -> int:
    """Run `isiqbot outages …`; `now` is for tests."""
    at = now or datetime.now(UTC)
    command = args.outages_command
    try:
        until = parse_until(args.until, at) if command == "add" else None
        if command == "add" and not (args.region or args.point):
            raise CliError("name the outage's --region, or its metering points with --point")
    except CliError as exc:
        return fail(str(exc))

    async def work(db: Database) -> int:
        if until is not None:
            return await _add(db, args, until, at)
        if command == "list":
            return await _list(db)
        return await _close(db, args.id, at)

    return await on_database(settings, work)


async def _add(db: Database, args: argparse.Namespace, until: datetime, now: datetime) -> int:
    async with db.transaction() as session:
        region = await registry_region(session, args.region) if args.region is not None else None
        points, unknown = await outages.points_named(session, args.point)
        if unknown:
            raise CliError(f"no metering point {', '.join(map(repr, unknown))} in the registry")
        outage = await outages.declare(
            session,
            region=region,
            points=points,
            until=until,
            note=args.note,
            declared_by=args.actor,
            now=now,
        )
        print(
            f"outage {outage.id} declared: {_where(region, outage.points)}, until {local_time(until)} (Baku)"
        )
    return 0


async def _list(db: Database) -> int:
    async with db.transaction() as session:
        open_ones = await outages.open_ones(session)
        waiting = await outages.watchers(session, [o.id for o in open_ones if o.id is not None])
    if not open_ones:
        print("no open outage")
    for outage in open_ones:
        assert outage.id is not None
        print(
            f"{outage.id}\t{_where(outage.region, outage.points)}\tuntil {local_time(outage.until)}"
            f"\t{waiting.get(outage.id, 0)} waiting\tby {outage.declared_by}"
        )
    return 0


async def _close(db: Database, outage_id: int, now: datetime) -> int:
    async with db.transaction() as session:
        told = await outages.close(session, outage_id, now)
    if told is None:
        raise CliError(f"no open outage {outage_id} (see: isiqbot outages list)")
    print(f"outage {outage_id} closed; {told} chat(s) will be told that power is back")
    return 0


def _where(region: str | None, points: Sequence[str]) -> str:
    parts = [f"region {region}"] if region else []
    if points:
        parts.append("points " + ", ".join(points))
    return "; ".join(parts)
