"""Conversation-level tests: a subscriber types and taps through the dialog on a real database."""

from __future__ import annotations

import re

from sqlmodel import select

from bot.staff.desk import StaffDesk
from dialogs.events import Pressed
from dialogs.lifecycle import Status
from dialogs.state import Step
from locales import Msg, translate
from storage.models import Application, ApplicationCounter, Notification, StatusChange
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
    choose_account,
    describe_and_finish,
    fill_residential,
    identify,
)


def az(key: str, **params: object) -> str:
    """A message as an Azerbaijani-speaking subscriber reads it."""
    return translate(Msg(key, params), "az")


async def applications(chat: Chat) -> list[Application]:
    async with chat.service.db.transaction() as session:
        return list((await session.scalars(select(Application))).all())


async def test_residential_application_end_to_end(chat: Chat) -> None:
    shown = await chat.start()
    assert "Azərişıq" in shown and "Yeni müraciət" in shown
    await chat.press("Yeni müraciət")
    assert (await chat.step()) == Step.ASK_PHONE
    assert chat.question.request is not None and chat.question.request.value == "contact"

    shown = await chat.contact(PLAIN)
    assert "Məmmədov Elçin Rasim oğlu" in shown
    assert "FİN: M9*****" in shown  # masked, never the full FİN
    assert "M9CGRC9" not in shown
    # One account: taken as it is, its basic data shown, and the next question asked at once.
    assert PLAIN_CODE in shown and "Yasamal" in shown
    assert (await chat.step()) == Step.REASON

    await chat.press("reason:no_power")
    await chat.type("Mənzildə səhərdən işıq yoxdur, qonşularda var.")
    assert (await chat.step()) == Step.DESCRIPTION  # the photo and the location on the same screen
    await chat.photo("photo-123")
    await chat.location(40.3777, 49.892)
    shown = await chat.press("done")
    assert (await chat.step()) == Step.CONTACTS
    assert "+994 99 651 00 79" in shown  # the verified phone is the mobile, unless changed
    await chat.type("012 498 76 54")  # a landline is fine as an extra number
    shown = await chat.type("elcin.m@example.az")
    assert "+994 12 498 76 54" in shown and "elcin.m@example.az" in shown
    shown = await chat.press("ok")

    assert (await chat.step()) == Step.REVIEW
    number = re.search(r"TX-\d{4}-\d{6}", shown)
    assert number, shown
    for expected in (
        PLAIN_CODE,
        "İşıq yoxdur",
        "qonşularda var",
        "Əlavələr: 1 şəkil",
        "40.3777, 49.892",
        "+994 99 651 00 79",
        "+994 12 498 76 54",
        "elcin.m@example.az",
        "Yasamal",
    ):
        assert expected in shown, expected

    shown = await chat.press("Müraciəti göndər")
    assert f"Müraciət nömrəsi: {number.group()}" in shown
    assert (await chat.step()) == Step.MENU

    [app] = await applications(chat)
    assert app.number == number.group()
    assert app.status == "registered"
    assert app.kind == "residential" and app.account_code == PLAIN_CODE
    assert app.mobile == PLAIN and app.extra_phones == ["+994124987654"]
    assert app.email == "elcin.m@example.az"
    assert app.photo_ref == "photo-123" and app.latitude == 40.3777
    assert app.region == "Yasamal"
    async with chat.service.db.transaction() as session:
        changes = (await session.scalars(select(StatusChange))).all()
    assert [(c.old_status, c.new_status) for c in changes] == [(None, "registered")]


async def test_non_residential_application_with_paged_metering_points(chat: Chat) -> None:
    await identify(chat, CHAIN)  # one main code: taken as it is, its points asked for at once
    shown = chat.text
    assert f"Baş kod: {CHAIN_CODE}" in shown
    assert "12 uçot nöqtəsi" in shown
    assert "UN-0001" in shown and "UN-0008" in shown and "UN-0009" not in shown
    await chat.press("Növbəti")
    assert "UN-0009" in chat.text and "UN-0012" in chat.text and "UN-0001" not in chat.text
    await chat.press("UN-0011")
    await chat.press("reason:faulty_meter")
    shown = await describe_and_finish(chat, "Mağazanın sayğacı yanmır, göstəricilər görünmür.")
    assert f"Baş kod: {CHAIN_CODE}, uçot nöqtəsi: UN-0011" in shown
    await chat.press("send")
    [app] = await applications(chat)
    assert app.kind == "non_residential"
    assert (app.account_code, app.metering_point_code) == (CHAIN_CODE, "UN-0011")
    assert app.region in ("Xətai", "Binəqədi")
    assert app.email is None


async def test_accounts_are_paged_beyond_eight(chat: Chat) -> None:
    await identify(chat, LANDLORD)
    accounts = [c for c in chat.choice_ids if c.startswith("acc:")]
    assert len(accounts) == 8
    assert "page:1" in chat.choice_ids
    await chat.press("page:1")
    second = [c for c in chat.choice_ids if c.startswith("acc:")]
    assert len(second) == 2 and not set(second) & set(accounts)
    await chat.press("page:0")
    assert [c for c in chat.choice_ids if c.startswith("acc:")] == accounts


async def test_person_with_both_kinds_sees_both(chat: Chat) -> None:
    await identify(chat, BOTH)
    labels = " ".join(chat.labels())
    assert labels.count("🏠") == 2 and labels.count("🏢") == 1


async def test_send_twice_registers_once(chat: Chat) -> None:
    await fill_residential(chat)
    rev = chat.rev
    await chat.press("send")
    shown = await chat.send(Pressed("send", rev))  # the same button again, e.g. a double tap
    assert "artıq aktiv deyil" in shown
    shown = await chat.send(Pressed("send", None))  # and without a revision, as some platforms send
    assert "artıq aktiv deyil" in shown
    assert len(await applications(chat)) == 1


async def test_redelivered_update_has_one_effect(chat: Chat) -> None:
    await fill_residential(chat)
    first = await chat.send(Pressed("send", chat.rev), update_id="same-update")
    again = await chat.send(Pressed("send", chat.rev), update_id="same-update")
    assert "qeydə alındı" in first and again == ""
    assert len(await applications(chat)) == 1


async def test_numbers_are_unique_and_never_reused(chat: Chat, service) -> None:
    await fill_residential(chat)
    first = re.search(r"TX-\d{4}-\d{6}", chat.text)
    assert first
    await chat.press("cancel")  # the reserved number is abandoned with the draft
    other = Chat(service, user="u2")
    await fill_residential(other, phone=LANDLORD)
    second = re.search(r"TX-\d{4}-\d{6}", other.text)
    assert second and second.group() != first.group()
    assert second.group() == "TX-2026-000002"
    async with chat.service.db.transaction() as session:
        counter = await session.get(ApplicationCounter, 2026)
    assert counter is not None and counter.last == 2


async def test_every_field_can_be_edited_from_the_review(chat: Chat) -> None:
    await fill_residential(chat, phone=BOTH)
    number = re.search(r"TX-\d{4}-\d{6}", chat.text)
    assert number

    await chat.press("edit:account")
    await chat.press("Baş kod")
    await chat.press("UN-0002")
    assert (await chat.step()) == Step.REVIEW and "uçot nöqtəsi: UN-0002" in chat.text

    await chat.press("edit:reason")
    await chat.press("reason:low_voltage")
    assert "Gərginlik aşağıdır" in chat.text

    await chat.press("edit:description")  # the description, the photo and the location together
    assert "İndiki təsvir" in chat.text
    await chat.type("Gərginlik axşamlar 170 volta qədər düşür.")
    await chat.photo("photo-9")
    await chat.press("done")
    assert (await chat.step()) == Step.REVIEW
    assert "170 volta" in chat.text and "Əlavələr: 1 şəkil" in chat.text

    await chat.press("edit:contacts")
    await chat.press("mobile")
    await chat.type("+994 55 111 22 33")
    assert (await chat.step()) == Step.CONTACTS and "+994 55 111 22 33" in chat.text
    await chat.press("extra")
    await chat.type("+994 70 444 55 66, +994 77 444 55 67")  # two on one line: both taken
    assert (await chat.step()) == Step.CONTACTS  # the list is full: back to the contacts
    await chat.press("email")
    await chat.type("sebine@example.az")
    await chat.press("ok")
    assert (await chat.step()) == Step.REVIEW
    assert "+994 55 111 22 33" in chat.text and "+994 70 444 55 66, +994 77 444 55 67" in chat.text
    assert "sebine@example.az" in chat.text
    assert number.group() in chat.text  # the number stays the same through every edit

    await chat.press("send")
    [app] = await applications(chat)
    assert app.number == number.group()
    assert (app.metering_point_code, app.reason, app.mobile) == ("UN-0002", "low_voltage", "+994551112233")
    assert app.extra_phones == ["+994704445566", "+994774445567"]
    assert app.email == "sebine@example.az" and app.photo_ref == "photo-9"


async def test_back_from_an_edit_returns_to_the_review(chat: Chat) -> None:
    await fill_residential(chat)
    card = chat.text
    await chat.press("edit:description")
    await chat.press("back")
    assert (await chat.step()) == Step.REVIEW
    assert chat.text == card


async def test_back_walks_the_flow_in_reverse(chat: Chat) -> None:
    await identify(chat, SHOP)  # non-residential: the metering point step is on the way
    await choose_account(chat)
    await chat.press(chat.choice_ids[0])
    await chat.press("reason:other")
    await describe_and_finish(chat, "Kabel qutusunun qapağı sınıb.")
    assert (await chat.step()) == Step.REVIEW
    await chat.press("edit:contacts")
    await chat.press("back")  # back from an edit: the card again
    assert (await chat.step()) == Step.REVIEW
    await chat.command("new")  # a draft waits: asked first, then a fresh one, walked to the contacts
    assert (await chat.step()) == Step.CONFIRM_NEW
    await chat.press("fresh")
    await choose_account(chat)
    await chat.press(chat.choice_ids[0])
    await chat.press("reason:other")
    await chat.type("Kabel qutusunun qapağı sınıb.")
    await chat.press("done")
    await chat.press("email")
    walked = [await chat.step()]
    while walked[-1] != Step.MENU and len(walked) < 20:
        await chat.press("back")
        walked.append(await chat.step())
    assert walked == [
        Step.EMAIL,
        Step.CONTACTS,
        Step.DESCRIPTION,
        Step.REASON,
        Step.METERING_POINT,
        Step.ACCOUNT,
        Step.MENU,
    ]
    # Nothing typed is lost by walking back out of the flow: the menu offers to resume.
    await chat.press("Yarımçıq müraciətə qayıt")
    assert (await chat.step()) == Step.ACCOUNT
    assert (await chat.state()).data["draft"]["description"] == "Kabel qutusunun qapağı sınıb."


async def test_leaving_the_flow_keeps_the_draft_for_later(chat: Chat) -> None:
    await identify(chat)
    await chat.press("reason:no_power")
    await chat.type("Səhərdən bəri işıq yoxdur, evdə uşaq var.")
    await chat.command("my")
    await chat.press("back")
    assert "Yarımçıq müraciətə qayıt" in chat.text
    await chat.press("Yarımçıq")
    assert (await chat.step()) == Step.DESCRIPTION
    draft = (await chat.state()).data["draft"]
    assert draft["description"].startswith("Səhərdən")


async def test_cancel_at_every_step(chat: Chat, service) -> None:
    steps_reached = []
    flow = [
        lambda c: c.press("new"),
        lambda c: c.contact(BOTH),  # several accounts: the account is asked
        lambda c: c.press(c.choice_ids[0]),
        lambda c: c.press("reason:no_power"),
        lambda c: c.press("done"),
        lambda c: c.press("email"),
        lambda c: c.press("skip"),
        lambda c: c.press("mobile"),
        lambda c: c.press("keep"),
        lambda c: c.press("extra"),
        lambda c: c.press("done"),
        lambda c: c.press("ok"),
    ]
    for depth in range(1, len(flow) + 1):
        c = Chat(service, user=f"cancel-{depth}")
        await c.start()
        for action in flow[:depth]:
            await action(c)
        steps_reached.append(await c.step())
        shown = await c.press("cancel")
        assert "ləğv edildi" in shown, (depth, shown)
        state = await c.state()
        assert state.step == Step.MENU and "draft" not in state.data
        assert "Yarımçıq" not in shown
    assert steps_reached == [
        Step.ASK_PHONE,
        Step.ACCOUNT,
        Step.REASON,
        Step.DESCRIPTION,
        Step.CONTACTS,
        Step.EMAIL,
        Step.CONTACTS,
        Step.MOBILE,
        Step.CONTACTS,
        Step.EXTRA_PHONES,
        Step.CONTACTS,
        Step.REVIEW,
    ]
    assert not await applications(c)


async def test_cancel_command_keeps_identification(chat: Chat) -> None:
    await identify(chat)
    await chat.command("cancel")
    await chat.command("new")
    assert (await chat.step()) == Step.REASON  # no second phone check, and the one account taken


async def test_someone_elses_contact_is_refused(chat: Chat) -> None:
    await chat.start()
    await chat.press("new")
    shown = await chat.contact(PLAIN, own=False)
    assert "sizin öz nömrəniz deyil" in shown
    assert (await chat.step()) == Step.ASK_PHONE


async def test_stale_button_gets_the_current_question(chat: Chat) -> None:
    await identify(chat, BOTH)
    old_rev = chat.rev
    account = chat.choice_ids[0]
    await chat.press(account)
    shown = await chat.send(Pressed(account, old_rev))
    assert "Bu düymə artıq aktiv deyil" in shown
    assert "Müraciətin səbəbini seçin" in shown
    assert (await chat.step()) == Step.REASON


async def test_a_week_old_button_after_a_restart(chat: Chat, service, sms, clock) -> None:
    from bot.core.service import Conversations

    await identify(chat)
    old = chat.rev
    await chat.press("reason:no_power")
    clock.advance(days=7)
    restarted = Chat(Conversations(service.db, sms, clock=clock))
    shown = await restarted.send(Pressed("reason:no_power", old))
    assert "artıq aktiv deyil" in shown
    assert (await restarted.step()) == Step.DESCRIPTION


async def test_forged_account_id_is_refused(chat: Chat, service) -> None:
    await identify(chat, LANDLORD)
    other = Chat(service, user="other")
    await identify(other, BOTH)
    foreign = other.choice_ids[0]
    assert foreign.startswith("acc:") and foreign not in chat.choice_ids
    shown = await chat.send(Pressed(foreign, chat.rev))
    assert "artıq aktiv deyil" in shown
    assert (await chat.step()) == Step.ACCOUNT


async def test_safety_advice_for_sparks(chat: Chat) -> None:
    await identify(chat)
    shown = await chat.press("reason:sparks")
    assert "199" in shown and "yaxınlaşmayın" in shown
    assert (await chat.step()) == Step.DESCRIPTION  # and the application goes on


async def test_lang_switch_in_the_middle_of_a_step(chat: Chat) -> None:
    await identify(chat)
    await chat.press("reason:no_power")
    assert (await chat.step()) == Step.DESCRIPTION
    await chat.command("lang")
    assert "Dili seçin" in chat.text
    shown = await chat.press("lang:ru")
    assert "Язык изменён" in shown and "Коротко опишите проблему" in shown
    assert (await chat.step()) == Step.DESCRIPTION
    shown = await chat.command("lang", "en")
    assert "Describe the problem" in shown
    assert "The description is saved" in await chat.type("No power since the morning in the flat.")
    assert (await chat.step()) == Step.DESCRIPTION
    draft = (await chat.state()).data["draft"]
    assert draft["reason"] == "no_power" and draft["description"].startswith("No power")


async def test_first_language_comes_from_the_platform(service) -> None:
    ru = Chat(service, user="ru-user")
    assert "Здравствуйте" in await ru.start(hint="ru-RU")
    tr = Chat(service, user="tr-user")
    assert "Salam" in await tr.start(hint="tr")


async def test_my_lists_newest_first_with_status(chat: Chat) -> None:
    assert "Hələ müraciətiniz yoxdur" in await chat.command("my")
    await fill_residential(chat, phone=BOTH)
    await chat.press("send")
    await chat.command("new")
    await chat.press(chat.choice_ids[1])
    await chat.press("reason:damaged_cable")
    await describe_and_finish(chat, "Həyətdə kabel qırılıb yerə düşüb.")
    await chat.press("send")
    shown = await chat.command("my")
    lines = [line for line in shown.splitlines() if line.startswith("TX-")]
    assert [line.split(" · ")[0] for line in lines] == ["TX-2026-000002", "TX-2026-000001"]
    assert all("qeydə alınıb" in line and "27.11.2026" in line for line in lines)
    await chat.press("TX-2026-000001")
    assert "Status: qeydə alınıb" in chat.text


async def test_subscriber_withdraws_a_registered_application(chat: Chat) -> None:
    await fill_residential(chat)
    await chat.press("send")
    await chat.command("my")
    await chat.press("TX-2026-000001")
    await chat.press("cancel_app")
    shown = await chat.press("cancel_yes")
    assert "geri götürüldü" in shown and "geri götürülüb" in shown
    [app] = await applications(chat)
    assert app.status == "cancelled"


async def test_unknown_phone_then_code_and_right_otp(chat: Chat, sms) -> None:
    await chat.start()
    await chat.press("new")
    shown = await chat.contact("+994501112233")  # not in the registry
    assert az("identify.phone_unknown") in shown
    assert (await chat.step()) == Step.ASK_CODE
    shown = await chat.type(PLAIN_CODE)
    assert "+994 99 ***-**-79" in shown  # the phone on file, masked
    phone, text, _ = sms.sent[-1]
    assert phone == PLAIN and text.key == "sms.otp"
    code = str(text.params["code"])
    assert re.fullmatch(r"\d{6}", code)
    assert code not in await chat.stored_raw()  # only a salted hash is stored
    shown = await chat.type(code)
    assert "Məmmədov Elçin" in shown
    assert (await chat.step()) == Step.REASON  # the phone's one account, taken
    await chat.press("reason:other")
    await chat.type("Sayğac qutusunun qapağı qırılıb.")
    await chat.press("done")
    assert "+994 50 111 22 33" in chat.text  # the number Telegram vouched for is the mobile offered


async def test_wrong_otp_three_times_then_a_new_code(chat: Chat, sms, clock) -> None:
    await chat.start()
    await chat.press("new")
    await chat.press("by_code")
    await chat.type(PLAIN_CODE)
    right = str(sms.sent[-1][1].params["code"])
    wrong = "000000" if right != "000000" else "111111"
    assert "2 cəhdiniz" in await chat.type(wrong)
    assert "1 cəhdiniz" in await chat.type(wrong)
    over = az("identify.otp_ask_new")
    shown = await chat.type(wrong)
    assert shown.count(over) == 1  # said once, with the way forward
    assert over in await chat.type(right)  # even the right code is refused now
    assert (await chat.step()) == Step.ASK_OTP
    assert "saniyədən sonra" in await chat.press("resend")  # not again within a minute
    clock.advance(seconds=61)
    await chat.press("resend")
    new = str(sms.sent[-1][1].params["code"])
    assert len(sms.sent) == 2
    await chat.type(new)
    assert (await chat.step()) == Step.REASON


async def test_expired_otp(chat: Chat, sms, clock) -> None:
    await chat.start()
    await chat.press("new")
    await chat.type("+994 99 651 00 79")  # a typed number on file: confirmed by SMS, not trusted
    assert (await chat.step()) == Step.ASK_OTP
    code = str(sms.sent[-1][1].params["code"])
    clock.advance(minutes=5, seconds=1)
    assert az("identify.otp_expired") in await chat.type(code)
    assert (await chat.step()) == Step.ASK_OTP
    await chat.press("resend")
    await chat.type(str(sms.sent[-1][1].params["code"]))
    assert (await chat.step()) == Step.REASON


async def test_otp_requests_are_limited(chat: Chat, sms, clock) -> None:
    await chat.start()
    await chat.press("new")
    await chat.press("by_code")
    await chat.type(PLAIN_CODE)
    for _ in range(4):
        clock.advance(seconds=61)
        await chat.press("resend")
    clock.advance(seconds=61)
    assert "həddən çox" in await chat.press("resend")
    assert len(sms.sent) == 5


async def test_unknown_code(chat: Chat, sms) -> None:
    await chat.start()
    await chat.press("new")
    await chat.press("by_code")
    assert "tapılmadı" in await chat.type("999999999999999")
    assert not sms.sent


async def test_an_unexpected_failure_gets_an_apology_and_changes_nothing(chat: Chat) -> None:
    """A state left by an older release (a review without its account) must not crash the chat."""
    from dialogs.state import State

    await identify(chat)
    async with chat.service.db.transaction() as session:
        from storage import conversations

        row = await conversations.get(session, chat.subscriber.channel, chat.subscriber.user_key)
        assert row is not None
        broken = State(step=Step.REVIEW, data={"phone": PLAIN, "draft": {"number": "TX-2026-000099"}}, rev=7)
        row.state = broken.to_json()
    before = await chat.stored_raw()
    chat.rev = 7
    shown = await chat.send(Pressed("send", 7), update_id="poison")
    assert "Üzr istəyirik, xəta baş verdi" in shown
    assert await chat.stored_raw() == before
    assert not await applications(chat)
    assert await chat.send(Pressed("send", 7), update_id="poison") == ""  # not retried forever
    await chat.command("cancel")  # and the person can go on
    assert (await chat.step()) == Step.MENU


# ---- regressions from the code review ----------------------------------------------------------


async def test_cancel_or_new_does_not_reset_the_code_limits(chat: Chat, sms, service) -> None:
    for _ in range(8):  # each round: ask for a code to the phone on file, then start over
        await chat.start()
        await chat.press("new")
        await chat.press("by_code")
        await chat.type(PLAIN_CODE)
        await chat.command("cancel")
    assert len(sms.sent) == 1  # a minute must pass between codes to one phone, whatever the chat did
    other = Chat(service, user="another-chat")
    await other.start()
    await other.press("new")
    await other.press("by_code")
    assert "saniyədən sonra" in await other.type(PLAIN_CODE)  # the limit is the phone's, not the chat's
    assert len(sms.sent) == 1


async def test_one_chat_cannot_flood_many_phones(chat: Chat, sms, clock) -> None:
    codes = ["168808605066007", SHOP_CODE, CHAIN_CODE, "1756136644"]
    for round_ in range(3):
        for code in codes:
            await chat.start()
            await chat.press("new")
            await chat.press("by_code")
            await chat.type(code)
            clock.advance(seconds=61)
        del round_
    assert len(sms.sent) == 10  # OTP_MAX_PER_CHAT in an hour, to any phones
    assert "həddən çox" in chat.text


async def test_a_rolled_back_update_sends_no_code(chat: Chat, sms) -> None:
    """The SMS leaves after the commit: an update that fails sends nothing."""
    await chat.start()
    await chat.press("new")
    await chat.press("by_code")
    async with chat.service.db.transaction() as session:  # make the next save fail, as a full disk would
        from sqlalchemy import text

        if session.get_bind().dialect.name == "sqlite":
            await session.execute(
                text(
                    "CREATE TRIGGER refuse BEFORE UPDATE ON conversation "
                    "BEGIN SELECT RAISE(ABORT, 'refused'); END"
                )
            )
        else:
            await session.execute(
                text(
                    "CREATE FUNCTION refuse() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'refused'; END $$ "
                    "LANGUAGE plpgsql"
                )
            )
            await session.execute(
                text(
                    "CREATE TRIGGER refuse BEFORE UPDATE ON conversation "
                    "FOR EACH ROW EXECUTE FUNCTION refuse()"
                )
            )
    shown = await chat.type(PLAIN_CODE)
    assert "xəta baş verdi" in shown
    assert not sms.sent


async def test_back_from_an_account_edit_restores_the_account(chat: Chat) -> None:
    await fill_residential(chat, phone=BOTH)
    card = chat.text
    await chat.press("edit:account")
    await chat.press("Baş kod")
    assert (await chat.step()) == Step.METERING_POINT
    await chat.press("back")
    assert (await chat.step()) == Step.REVIEW
    assert chat.text == card  # the residential account is back, not a main code without a point
    await chat.press("send")
    [app] = await applications(chat)
    assert app.kind == "residential"


async def test_back_from_any_edit_undoes_it(chat: Chat) -> None:
    await fill_residential(chat)
    card = chat.text
    await chat.press("edit:contacts")
    await chat.press("extra")
    await chat.type("+994 70 444 55 66")
    await chat.press("back")  # from the number to the contacts …
    assert (await chat.step()) == Step.CONTACTS
    await chat.press("back")  # … and from the contacts, the edit undone
    assert chat.text == card


async def test_no_more_than_two_extra_numbers(chat: Chat) -> None:
    await fill_residential(chat)
    await chat.press("edit:contacts")
    await chat.press("extra")
    await chat.type("+994 70 444 55 66")
    await chat.type("+994 77 444 55 67")
    assert (await chat.step()) == Step.CONTACTS  # full: back to the contacts
    shown = await chat.type("+994 55 444 55 68")  # a third, typed at the contacts
    assert az("extra.full", max=2) in shown
    await chat.press("ok")
    await chat.press("send")
    [app] = await applications(chat)
    assert len(app.extra_phones) == 2


async def test_metering_points_of_an_account_moved_away_are_not_shown(chat: Chat) -> None:
    from storage import registry

    await identify(chat, BOTH)
    await chat.press("Baş kod")
    await chat.command("start")  # parked at the metering point step
    sample = registry.SAMPLE_CSV.read_text(encoding="utf-8")
    moved = sample.replace(
        "136UB12,Məmmədova Səbinə Fikrət qızı,+994998406430,non_residential",
        "136UB13,Yeni Sahib,+994501112233,non_residential",
    )
    assert moved != sample
    async with chat.service.db.transaction() as session:
        await registry.import_csv(session, moved.encode())
    shown = await chat.press("Yarımçıq")
    assert "UN-0001" not in shown and "artıq sizin adınıza" in shown


async def test_lang_then_start_keeps_the_draft(chat: Chat) -> None:
    await identify(chat)
    await chat.press("reason:no_power")
    await chat.command("lang")
    await chat.command("start")
    shown = await chat.press("Yarımçıq")
    assert (await chat.step()) == Step.DESCRIPTION, shown


async def test_resuming_an_edit_returns_to_the_card(chat: Chat) -> None:
    await fill_residential(chat)
    await chat.press("edit:description")
    await chat.command("my")
    await chat.press("back")
    await chat.press("Yarımçıq")
    await chat.type("Sayğac qutusu yanıb, işıq yoxdur.")
    await chat.press("done")
    assert (await chat.step()) == Step.REVIEW


async def test_the_review_card_has_back(chat: Chat) -> None:
    await fill_residential(chat)
    await chat.press("back")
    assert (await chat.step()) == Step.CONTACTS


async def test_withdrawing_queues_no_message_to_oneself(chat: Chat) -> None:
    from storage.models import Notification

    await fill_residential(chat)
    await chat.press("send")
    await chat.command("my")
    await chat.press("TX-2026-000001")
    await chat.press("cancel_app")
    await chat.press("cancel_yes")
    async with chat.service.db.transaction() as session:
        owed = (await session.scalars(select(Notification))).all()
    assert [n.kind for n in owed] == ["sms_registered"]  # the registration SMS; nothing about the withdrawal


# ---- the subscriber's way through, shorter (issue 13) ------------------------------------------


async def test_the_shortest_residential_application_takes_six_turns(chat: Chat) -> None:
    """On a registered phone with one account: new, contact, reason, continue, correct, send."""
    await chat.start()
    turns = 0
    for action in (
        lambda: chat.press("new"),
        lambda: chat.contact(PLAIN),
        lambda: chat.press("reason:no_power"),
        lambda: chat.press("done"),
        lambda: chat.press("ok"),
        lambda: chat.press("send"),
    ):
        await action()
        turns += 1
    assert turns <= 7
    [app] = await applications(chat)
    assert (app.account_code, app.reason, app.mobile, app.description) == (PLAIN_CODE, "no_power", PLAIN, "")


async def test_a_second_application_on_the_same_account_and_other_needs_words(chat: Chat) -> None:
    await fill_residential(chat)
    await chat.press("send")
    await chat.press("new")  # the chat is known: straight to the reason of its one account
    assert (await chat.step()) == Step.REASON
    await chat.press("reason:other")
    assert await chat.step() == Step.ALREADY_OPEN  # the first is open: a different problem?
    await chat.press("dup:new")
    assert "done" not in chat.choice_ids  # «Other» says nothing by itself: words first
    shown = await chat.press_id("done")
    assert "artıq aktiv deyil" in shown
    await chat.type("Sayğacın yanında tüstü iyi gəlir.")
    await chat.press("done")
    await chat.press("ok")
    await chat.press("send")
    assert [a.reason for a in await applications(chat)] == ["no_power", "other"]


async def test_a_chat_applies_for_the_account_of_a_second_phone_it_confirms(chat: Chat, sms) -> None:
    await fill_residential(chat)  # Elçin, one account
    await chat.press("send")
    await chat.press("phone_add")  # the menu: apply for another phone
    assert (await chat.step()) == Step.ASK_PHONE
    await chat.type("+994 77 416 78 85")  # the shop's phone, typed: it must be confirmed by SMS
    assert (await chat.step()) == Step.ASK_OTP and sms.sent[-1][0] == SHOP
    await chat.type(str(sms.sent[-1][1].params["code"]))
    # Both phones' accounts are offered now, and the choice is between them.
    assert (await chat.step()) == Step.ACCOUNT
    labels = " ".join(chat.labels())
    assert PLAIN_CODE in labels and SHOP_CODE in labels
    await chat.press(SHOP_CODE)
    await chat.press(chat.choice_ids[0])  # a metering point
    await chat.press("reason:faulty_meter")
    await chat.press("done")
    await chat.press("ok")
    await chat.press("send")
    plain, shop = sorted(await applications(chat), key=lambda a: a.id or 0)
    assert (plain.applicant_phone, shop.applicant_phone) == (PLAIN, SHOP)
    assert shop.account_code == SHOP_CODE
    # /my shows the applications of every phone the chat confirmed; a confirmed phone needs no new code.
    await chat.command("my")
    assert plain.number in chat.text and shop.number in chat.text
    sent = len(sms.sent)
    await chat.command("start")
    await chat.press("phone_add")
    await chat.type("+994 77 416 78 85")
    assert len(sms.sent) == sent and (await chat.step()) == Step.ACCOUNT


async def test_another_phones_number_shared_at_the_account_question_is_confirmed_too(chat: Chat) -> None:
    await identify(chat, BOTH)  # several accounts: the question is asked
    assert "another_phone" in chat.choice_ids
    await chat.contact(LANDLORD)  # a family's shared Telegram: another own number, vouched for
    assert (await chat.step()) == Step.ACCOUNT
    assert len([c for c in chat.choice_ids if c.startswith("acc:")]) == 8  # the first page of 13
    assert "page:1" in chat.choice_ids


async def test_a_code_typed_at_a_list_is_taken_when_it_is_one_of_the_choices(chat: Chat) -> None:
    await identify(chat, BOTH)
    await chat.type("zzz")
    assert (await chat.step()) == Step.ACCOUNT
    main_code = next(c for c in chat.labels() if "Baş kod" in c).split()[-1]
    await chat.type(main_code)  # typed from the bill rather than pressed
    assert (await chat.step()) == Step.METERING_POINT
    point = chat.labels()[1].split()[1]
    await chat.type(point.lower())
    assert (await chat.step()) == Step.REASON
    assert (await chat.state()).data["draft"]["mp_code"] == point


async def test_pages_say_where_they_are(chat: Chat) -> None:
    await identify(chat, LANDLORD)
    assert "(2/2)" in " ".join(chat.labels())
    await chat.press("page:1")
    labels = chat.labels()
    assert any("(1/2)" in label for label in labels)  # the previous page, numbered …
    assert labels.count("⬅️ Geri") == 1  # … and not one more "⬅️" beside Back


async def test_typing_at_the_review_card_says_it_once(chat: Chat) -> None:
    await fill_residential(chat)
    shown = await chat.type("salam")
    assert shown.count(az("error.use_buttons")) == 1
    assert shown.count(az("review.hint")) == 1


async def test_a_location_that_is_not_one_is_not_outside_azerbaijan(chat: Chat) -> None:
    await identify(chat)
    await chat.press("reason:no_power")
    shown = await chat.location(float("nan"), float("nan"))
    assert az("attachments.location_invalid") in shown
    assert az("attachments.location_outside") not in shown


async def test_a_new_application_asks_before_it_drops_a_draft(chat: Chat) -> None:
    await identify(chat)
    await chat.press("reason:sparks")
    await chat.command("my")
    await chat.press("new")  # from /my: a draft waits
    assert (await chat.step()) == Step.CONFIRM_NEW
    assert az("confirm_new.ask") in chat.text
    await chat.press("resume")
    assert (await chat.step()) == Step.DESCRIPTION
    assert (await chat.state()).data["draft"]["reason"] == "sparks"
    await chat.command("new")  # in the middle of the flow too
    await chat.press("fresh")
    assert (await chat.step()) == Step.REASON
    assert "reason" not in (await chat.state()).data["draft"]


async def test_a_closed_application_takes_no_more_messages(chat: Chat, service) -> None:
    await fill_residential(chat)
    await chat.press("send")
    [app] = await applications(chat)
    desk = StaffDesk(service.db, clock=service.clock)
    await desk.set_status(app.number, Status.REJECTED, "staff:1", "Avadanlıq abonentin balansında deyil.")
    await chat.command("my")
    shown = await chat.press(f"app:{app.id}")
    assert "İmtinanın səbəbi: Avadanlıq abonentin balansında deyil." in shown
    assert az("app.write_hint") not in shown and az("app.closed_hint") in shown
    assert "new" in chat.choice_ids
    shown = await chat.type("Niyə imtina etdiniz?")
    assert az("app.closed", number=app.number) in shown
    async with service.db.transaction() as session:
        relays = (await session.scalars(select(Notification).where(Notification.kind == "relay"))).all()
    assert relays == []
    await chat.press("new")
    assert (await chat.step()) == Step.REASON


async def test_three_wrong_codes_leave_only_the_way_to_a_new_one(chat: Chat, sms) -> None:
    await chat.start()
    await chat.press("new")
    await chat.type("+994 99 651 00 79")
    for _ in range(3):
        shown = await chat.type("000001")
    assert az("identify.ask_otp", phone="+994 99 ***-**-79", minutes=5) not in shown
    assert az("identify.otp_ask_new") in shown and "resend" in chat.choice_ids


async def test_the_description_screen_names_the_button_it_shows(chat: Chat) -> None:
    """The text once said «Keç» while the button said "Davam et ➡️"."""
    await identify(chat)
    for reason in ("reason:no_power", "reason:other"):
        await chat.press(reason)
        await chat.type("Səhərdən bəri işıq yoxdur, qonşularda var.")
        [label] = [label for label, id_ in zip(chat.labels(), chat.choice_ids, strict=True) if id_ == "done"]
        assert f"«{label}»" in chat.text and "«Keç" not in chat.text
        await chat.press("back")


async def test_a_company_account_shows_the_company_and_its_voen_not_a_persons_fin(chat: Chat) -> None:
    shown = await identify(chat, CHAIN)  # one main code, registered to a company
    assert f"Baş kod: {CHAIN_CODE}" in shown
    assert "Bərəkət Market MMC" in shown and "VÖEN: 1402965731" in shown
    assert "Əliyev Tural" in shown and "FİN" not in shown
    await chat.press(chat.choice_ids[0])
    await chat.press("reason:faulty_meter")
    shown = await describe_and_finish(chat, "Mağazanın sayğacı yanmır, göstəricilər görünmür.")
    assert az("review.company", company="Bərəkət Market MMC", voen="1402965731") in shown
    assert "FİN" not in shown


async def test_a_residential_account_shows_the_name_the_masked_fin_and_the_address(chat: Chat) -> None:
    shown = await identify(chat)
    assert "Məmmədov Elçin Rasim oğlu" in shown and "M9*****" in shown
    assert PLAIN_CODE in shown and "Yasamal" in shown


async def test_an_extra_number_cannot_repeat_the_mobile_shown(chat: Chat) -> None:
    await identify(chat)
    await chat.press("reason:no_power")
    await chat.press("done")
    await chat.press("extra")  # the mobile is the verified phone, shown but not yet confirmed
    shown = await chat.type("+994 99 651 00 79")
    assert az("extra.duplicate") in shown
    await chat.press("done")
    await chat.type("099 651 00 79, 012 498 76 54")  # at the contacts: the mobile again is dropped
    await chat.press("ok")
    await chat.press("send")
    [app] = await applications(chat)
    assert (app.mobile, app.extra_phones) == (PLAIN, ["+994124987654"])


async def test_other_chosen_on_the_review_still_needs_words(chat: Chat) -> None:
    await identify(chat)
    await chat.press("reason:no_power")
    await chat.press("done")  # no description: fine for this reason
    await chat.press("ok")
    await chat.press("edit:reason")
    await chat.press("reason:other")
    assert (await chat.step()) == Step.DESCRIPTION
    assert "done" not in chat.choice_ids
    await chat.type("Sayğacın yanında tüstü iyi gəlir.")
    await chat.press("done")
    assert (await chat.step()) == Step.REVIEW
    await chat.press("send")
    [app] = await applications(chat)
    assert (app.reason, app.description) == ("other", "Sayğacın yanında tüstü iyi gəlir.")


async def test_another_phone_from_the_menu_keeps_the_draft_that_waits(chat: Chat, sms) -> None:
    await identify(chat)
    await chat.press("reason:sparks")
    await chat.type("Lövhədən qığılcım çıxır, iy gəlir.")
    await chat.command("start")
    await chat.press("phone_add")
    await chat.contact(SHOP)
    assert (await chat.step()) == Step.ACCOUNT  # both phones' accounts, the draft kept
    draft = (await chat.state()).data["draft"]
    assert (draft["reason"], draft["description"]) == ("sparks", "Lövhədən qığılcım çıxır, iy gəlir.")
    await chat.press(SHOP_CODE)
    await chat.press(chat.choice_ids[0])
    assert (await chat.step()) == Step.REASON


async def test_a_chat_speaks_for_at_most_five_phones(chat: Chat, sms) -> None:
    """Enough for a family or a landlord; not a way to collect the registry's accounts."""
    await identify(chat, PLAIN)
    others = [SHOP, CHAIN, BOTH, LANDLORD]
    for phone in others:
        await chat.command("start")
        await chat.press("phone_add")
        await chat.contact(phone)
        assert (await chat.step()) == Step.ACCOUNT, phone
    assert len((await chat.state()).data["phones"]) == 5
    await chat.command("start")
    await chat.press("phone_add")
    shown = await chat.type("+994 50 111 22 33")
    assert az("identify.phones_full", max=5) in shown and (await chat.step()) == Step.ASK_PHONE
    await chat.contact(SHOP)  # one it has confirmed still works
    assert (await chat.step()) == Step.ACCOUNT


async def test_back_from_another_phone_returns_where_it_was_asked(chat: Chat) -> None:
    await identify(chat, BOTH)
    await chat.press("another_phone")
    await chat.press("back")
    assert (await chat.step()) == Step.ACCOUNT  # asked at the account question: back to it
    await chat.command("start")
    await chat.press("phone_add")
    await chat.press("back")
    assert (await chat.step()) == Step.MENU  # asked from the menu: back to the menu


async def test_a_choice_of_the_contact_question_sent_as_its_label_is_that_choice(chat: Chat) -> None:
    # Telegram shows these choices as keyboard buttons under "share my number": they send their text.
    await chat.start()
    await chat.press("new")
    await chat.type(az("common.back"))
    assert (await chat.step()) == Step.MENU
    await chat.press("new")
    await chat.type(f"  {az('identify.by_code')} ")
    assert (await chat.step()) == Step.ASK_CODE
    await chat.type(az("common.back"))  # elsewhere a label is just text: the code question reads it
    assert (await chat.step()) == Step.ASK_CODE
