"""Conversation-level tests: a subscriber types and taps through the dialog on a real database."""

from __future__ import annotations

import re

from sqlmodel import select

from dialogs.events import Pressed
from dialogs.state import Step
from storage.models import Application, ApplicationCounter, StatusChange
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
    describe_and_finish,
    fill_residential,
    identify,
)


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
    await chat.press(PLAIN_CODE)
    assert (await chat.step()) == Step.REASON

    await chat.press("İşıq yoxdur")
    await chat.type("Mənzildə səhərdən işıq yoxdur, qonşularda var.")
    assert (await chat.step()) == Step.ATTACHMENTS
    await chat.photo("photo-123")
    await chat.location(40.3777, 49.892)
    await chat.press("Davam et")
    shown = await chat.press("qalsın")  # keep the verified phone as the mobile number
    assert (await chat.step()) == Step.EXTRA_PHONES
    await chat.type("012 498 76 54")  # a landline is fine as an extra number
    await chat.press("Davam et")
    shown = await chat.type("elcin.m@example.az")

    assert (await chat.step()) == Step.REVIEW
    number = re.search(r"TX-\d{4}-\d{6}", shown)
    assert number, shown
    for expected in (
        PLAIN_CODE,
        "İşıq yoxdur",
        "qonşularda var",
        "Şəkil: əlavə olunub",
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
    await identify(chat, CHAIN)
    await chat.press(f"Baş kod {CHAIN_CODE}")
    shown = chat.text
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
    assert "keçərli deyil" in shown
    shown = await chat.send(Pressed("send", None))  # and without a revision, as some platforms send
    assert "keçərli deyil" in shown
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

    await chat.press("edit:description")
    assert "İndiki təsvir" in chat.text
    await chat.type("Gərginlik axşamlar 170 volta qədər düşür.")
    assert "170 volta" in chat.text

    await chat.press("edit:attachments")
    await chat.photo("photo-9")
    await chat.press("done")
    assert "Şəkil: əlavə olunub" in chat.text

    await chat.press("edit:mobile")
    await chat.type("+994 55 111 22 33")
    assert "+994 55 111 22 33" in chat.text

    await chat.press("edit:extra")
    await chat.type("+994 70 444 55 66")
    await chat.type("+994 77 444 55 67")  # the second one fills the list and returns to the card
    assert (await chat.step()) == Step.REVIEW
    assert "+994 70 444 55 66, +994 77 444 55 67" in chat.text

    await chat.press("edit:email")
    await chat.type("sebine@example.az")
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
    await chat.press(chat.choice_ids[0])
    await chat.press(chat.choice_ids[0])
    await chat.press("reason:other")
    await describe_and_finish(chat, "Kabel qutusunun qapağı sınıb.")
    assert (await chat.step()) == Step.REVIEW
    await chat.press("edit:email")
    await chat.press("back")  # back from an edit: the card again
    assert (await chat.step()) == Step.REVIEW
    await chat.command("new")  # a fresh draft, walked to the e-mail step
    await chat.press(chat.choice_ids[0])
    await chat.press(chat.choice_ids[0])
    await chat.press("reason:other")
    await chat.type("Kabel qutusunun qapağı sınıb.")
    await chat.press("done")
    await chat.press("keep")
    await chat.press("done")
    walked = [await chat.step()]
    while walked[-1] != Step.MENU and len(walked) < 20:
        await chat.press("back")
        walked.append(await chat.step())
    assert walked == [
        Step.EMAIL,
        Step.EXTRA_PHONES,
        Step.MOBILE,
        Step.ATTACHMENTS,
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
    await chat.press(PLAIN_CODE)
    await chat.press("reason:no_power")
    await chat.type("Səhərdən bəri işıq yoxdur, evdə uşaq var.")
    await chat.command("my")
    await chat.press("back")
    assert "Yarımçıq müraciətə qayıt" in chat.text
    await chat.press("Yarımçıq")
    assert (await chat.step()) == Step.ATTACHMENTS
    draft = (await chat.state()).data["draft"]
    assert draft["description"].startswith("Səhərdən")


async def test_cancel_at_every_step(chat: Chat, service) -> None:
    steps_reached = []
    flow = [
        lambda c: c.press("new"),
        lambda c: c.contact(PLAIN),
        lambda c: c.press(PLAIN_CODE),
        lambda c: c.press("reason:no_power"),
        lambda c: c.type("Səhərdən işıq yoxdur, sayğac sönüb."),
        lambda c: c.press("done"),
        lambda c: c.press("keep"),
        lambda c: c.press("done"),
        lambda c: c.press("skip"),
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
        Step.ATTACHMENTS,
        Step.MOBILE,
        Step.EXTRA_PHONES,
        Step.EMAIL,
        Step.REVIEW,
    ]
    assert not await applications(c)


async def test_cancel_command_keeps_identification(chat: Chat) -> None:
    await identify(chat)
    await chat.command("cancel")
    await chat.command("new")
    assert (await chat.step()) == Step.ACCOUNT  # no second phone check in the same chat


async def test_someone_elses_contact_is_refused(chat: Chat) -> None:
    await chat.start()
    await chat.press("new")
    shown = await chat.contact(PLAIN, own=False)
    assert "öz kontaktınız deyil" in shown
    assert (await chat.step()) == Step.ASK_PHONE


async def test_stale_button_gets_the_current_question(chat: Chat) -> None:
    await identify(chat)
    old_rev = chat.rev
    account = chat.choice_ids[0]
    await chat.press(account)
    shown = await chat.send(Pressed(account, old_rev))
    assert "Bu düymə artıq keçərli deyil" in shown
    assert "Müraciətin səbəbini seçin" in shown
    assert (await chat.step()) == Step.REASON


async def test_a_week_old_button_after_a_restart(chat: Chat, service, sms, clock) -> None:
    from bot.core.service import Conversations

    await identify(chat)
    old = chat.rev
    await chat.press(PLAIN_CODE)
    clock.advance(days=7)
    restarted = Chat(Conversations(service.db, sms, clock=clock))
    shown = await restarted.send(Pressed("reason:no_power", old))
    assert "keçərli deyil" in shown
    assert (await restarted.step()) == Step.REASON


async def test_forged_account_id_is_refused(chat: Chat, service) -> None:
    await identify(chat, SHOP)
    other = Chat(service, user="other")
    await identify(other, PLAIN)
    foreign = other.choice_ids[0]
    shown = await chat.send(Pressed(foreign, chat.rev))
    assert "keçərli deyil" in shown
    assert (await chat.step()) == Step.ACCOUNT


async def test_safety_advice_for_sparks(chat: Chat) -> None:
    await identify(chat)
    await chat.press(PLAIN_CODE)
    shown = await chat.press("reason:sparks")
    assert "199" in shown and "yaxınlaşmayın" in shown
    assert (await chat.step()) == Step.DESCRIPTION  # and the application goes on


async def test_lang_switch_in_the_middle_of_a_step(chat: Chat) -> None:
    await identify(chat)
    await chat.press(PLAIN_CODE)
    await chat.press("reason:no_power")
    assert (await chat.step()) == Step.DESCRIPTION
    await chat.command("lang")
    assert "Dili seçin" in chat.text
    shown = await chat.press("lang:ru")
    assert "Язык изменён" in shown and "Коротко опишите проблему" in shown
    assert (await chat.step()) == Step.DESCRIPTION
    shown = await chat.command("lang", "en")
    assert "Describe the problem" in shown
    await chat.type("No power since the morning in the flat.")
    assert (await chat.step()) == Step.ATTACHMENTS
    assert (await chat.state()).data["draft"]["reason"] == "no_power"


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
    assert "reyestrdə heç bir abonentə bağlı deyil" in shown
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
    assert (await chat.step()) == Step.ACCOUNT
    await chat.press(PLAIN_CODE)
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
    assert "Cəhdlər bitdi" in await chat.type(wrong)
    assert "Cəhdlər bitdi" in await chat.type(right)  # even the right code is refused now
    assert (await chat.step()) == Step.ASK_OTP
    assert "saniyədən sonra" in await chat.press("resend")  # not again within a minute
    clock.advance(seconds=61)
    await chat.press("resend")
    new = str(sms.sent[-1][1].params["code"])
    assert len(sms.sent) == 2
    await chat.type(new)
    assert (await chat.step()) == Step.ACCOUNT


async def test_expired_otp(chat: Chat, sms, clock) -> None:
    await chat.start()
    await chat.press("new")
    await chat.type("+994 99 651 00 79")  # a typed number on file: confirmed by SMS, not trusted
    assert (await chat.step()) == Step.ASK_OTP
    code = str(sms.sent[-1][1].params["code"])
    clock.advance(minutes=5, seconds=1)
    assert "vaxtı bitib" in await chat.type(code)
    assert (await chat.step()) == Step.ASK_OTP
    await chat.press("resend")
    await chat.type(str(sms.sent[-1][1].params["code"]))
    assert (await chat.step()) == Step.ACCOUNT


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
    await chat.press("edit:extra")
    await chat.type("+994 70 444 55 66")
    await chat.press("back")
    assert chat.text == card


async def test_no_more_than_two_extra_numbers(chat: Chat) -> None:
    await fill_residential(chat)
    await chat.press("edit:extra")
    await chat.type("+994 70 444 55 66")
    await chat.type("+994 77 444 55 67")
    assert (await chat.step()) == Step.REVIEW
    await chat.press("edit:extra")
    shown = await chat.type("+994 55 444 55 68")
    assert "Ən çoxu 2 əlavə nömrə" in shown
    await chat.press("done")
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
    await chat.press(PLAIN_CODE)
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
    assert (await chat.step()) == Step.REVIEW


async def test_the_review_card_has_back(chat: Chat) -> None:
    await fill_residential(chat)
    await chat.press("back")
    assert (await chat.step()) == Step.EMAIL


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
