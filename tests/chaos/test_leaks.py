"""Chaos: a DEBUG log of a whole application, in Telegram and WhatsApp, holds no personal data.

The service runs with LOG_LEVEL=DEBUG on each database while two subscribers file and staff close
one application; the log is then searched for the subscribers' full phone numbers (as typed and as
WhatsApp ids), their FİNs and the e-mail address.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from storage.db import Database
from tests.chaos.conftest import figure
from tests.fake_telegram import StaffMember, TelegramUser
from tests.running import (
    BAKI,
    RAUF,
    Isiqbot,
    World,
    eventually,
    file_in_telegram,
    file_in_whatsapp,
    staff_close,
    t,
    the_application,
    whatsapp_user,
)

# Elçin's and Lalə's numbers (without the country code, so every spelling is caught), the e-mail, FİNs.
PERSONAL = ("996510079", "996958257", "elcin@example.az", "M9CGRC9", "K3UZ5HR")


async def test_a_debug_log_of_a_whole_application_holds_no_phone_fin_or_email(
    tmp_path: Path, world: World, db: Database, db_url: str
) -> None:
    service = Isiqbot(tmp_path, world, db_url, LOG_LEVEL="DEBUG")
    await asyncio.to_thread(service.import_registry)
    await service.start()
    try:
        elcin = TelegramUser(world.telegram, 501)
        await file_in_telegram(elcin, "+994996510079", "168808605066007", email="elcin@example.az")
        lala = whatsapp_user(world, service, "994996958257")
        await file_in_whatsapp(lala, "99 695 82 57", "859899677634931")
        number = (await the_application(db)).number
        await eventually(lambda: world.card(BAKI, number), "the card")
        rauf = StaffMember(world.telegram, RAUF, BAKI, "Rauf")
        await rauf.press(world.buttons(BAKI, number)[t("staff.btn_work")])
        await staff_close(world, rauf, number, "Sayğac dəyişdirildi.")
        await eventually(lambda: world.sms_saying("+994996958257", t("status.completed")), "result SMS")
        assert await service.stop() == 0
    finally:
        service.kill()
    log = service.log
    assert "DEBUG" in log  # the level was really DEBUG
    found = {secret: log.count(secret) for secret in PERSONAL}
    figure(
        f"leaks/{db.engine.dialect.name}: DEBUG log of a whole application in Telegram and WhatsApp, "
        f"{len(log.splitlines())} lines: {sum(found.values())} full phone numbers, FİNs or e-mails"
    )
    assert not any(found.values()), found
