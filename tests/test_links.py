"""Application links: the signed token, and `/start <token>` opening only one's own application."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlmodel import select

from bot.core.links import TOKEN_LENGTH, LinkSigner
from bot.core.service import Conversations
from dialogs.state import Step
from storage.models import Application
from tests.chat import BOTH, PLAIN, PLAIN_CODE, Chat, fill_residential

SIGNER = LinkSigner(b"k" * 32)


# ---- the token -----------------------------------------------------------------------------------


@given(st.integers(min_value=1, max_value=2**48 - 1))
def test_a_token_names_its_application_and_fits_every_channel(application_id: int) -> None:
    token = SIGNER.token(application_id)
    assert len(token) == TOKEN_LENGTH <= 32  # a status-page link in an SMS; a /start payload allows 64
    assert token.isascii() and all(c.isalnum() or c in "-_" for c in token)
    assert SIGNER.application_id(token) == application_id


@given(st.integers(min_value=1, max_value=2**48 - 1), st.integers(min_value=0, max_value=TOKEN_LENGTH - 1))
def test_a_changed_character_breaks_the_token(application_id: int, position: int) -> None:
    token = SIGNER.token(application_id)
    replacement = "A" if token[position] != "A" else "B"
    forged = token[:position] + replacement + token[position + 1 :]
    assert SIGNER.application_id(forged) is None


def test_a_token_for_another_id_cannot_be_made_without_the_secret() -> None:
    token = SIGNER.token(41)
    raw = bytearray(base64.urlsafe_b64decode(token))
    raw[5] = 42  # the id is in the clear; the tag then no longer matches
    assert SIGNER.application_id(base64.urlsafe_b64encode(bytes(raw)).decode()) is None
    assert LinkSigner(b"x" * 32).application_id(token) is None  # another deployment's secret


@pytest.mark.parametrize(
    "text",
    [
        "",
        " ",
        "abc",
        "A" * TOKEN_LENGTH,
        "A" * 64,
        "<b>x</b>",
        "Müraciət" * 4,
        "=" * TOKEN_LENGTH,
        "\x00" * 28,
    ],
)
def test_anything_else_is_not_a_token(text: str) -> None:
    assert SIGNER.application_id(text) is None


@given(st.text(max_size=80))
def test_no_text_crashes_the_reader(text: str) -> None:
    assert SIGNER.application_id(text) is None


def test_a_short_secret_and_impossible_ids_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 32 bytes"):
        LinkSigner(b"short")
    for bad in (0, -1, 2**48):
        with pytest.raises(ValueError):
            SIGNER.token(bad)


def test_an_ephemeral_signer_reads_only_its_own_tokens() -> None:
    first, second = LinkSigner.ephemeral(), LinkSigner.ephemeral()
    assert first.application_id(first.token(7)) == 7
    assert second.application_id(first.token(7)) is None


# ---- /start <token> in the dialog, on both databases ---------------------------------------------


async def file_one(service: Conversations, user: str = "owner", phone: str = PLAIN) -> tuple[Chat, int, str]:
    owner = Chat(service, user=user)
    await fill_residential(owner, phone)
    await owner.press("send")
    async with service.db.transaction() as session:
        application = (await session.scalars(select(Application).order_by(Application.id.desc()))).first()
    assert application is not None and application.id is not None
    return owner, application.id, application.number


async def test_the_owner_opens_the_application_from_the_link(service: Conversations) -> None:
    owner, application_id, number = await file_one(service)
    shown = await owner.command("start", service.links.token(application_id))
    assert (await owner.step()) == Step.APP_DETAIL
    assert number in shown and "Status: qeydə alınıb" in shown
    assert "geri götür" in shown  # still registered: it can be cancelled from here
    await owner.press("back")
    assert (await owner.step()) == Step.MY_LIST


async def test_a_new_chat_confirms_the_phone_first_then_sees_it(service: Conversations) -> None:
    _, application_id, number = await file_one(service)
    newcomer = Chat(service, user="phone-2")  # the same person, another Telegram account
    shown = await newcomer.command("start", service.links.token(application_id))
    assert "telefon nömrənizi təsdiqləyin" in shown and number not in shown
    assert (await newcomer.step()) == Step.ASK_PHONE
    shown = await newcomer.contact(PLAIN)
    assert (await newcomer.step()) == Step.APP_DETAIL
    assert number in shown


async def test_a_new_chat_may_confirm_with_the_code_and_the_sms(service: Conversations, sms) -> None:
    _, application_id, number = await file_one(service)
    newcomer = Chat(service, user="no-contact")
    await newcomer.command("start", service.links.token(application_id))
    await newcomer.press("by_code")
    await newcomer.type(PLAIN_CODE)
    code = sms.sent[-1][1].params["code"]
    shown = await newcomer.type(code)
    assert number in shown and (await newcomer.step()) == Step.APP_DETAIL


async def test_someone_elses_link_opens_nothing(service: Conversations) -> None:
    _, application_id, number = await file_one(service)
    token = service.links.token(application_id)

    stranger = Chat(service, user="stranger")  # identified as another person
    await fill_residential(stranger, BOTH)
    shown = await stranger.command("start", token)
    assert "sizin müraciətinizə aid deyil" in shown and number not in shown
    assert (await stranger.step()) == Step.MENU
    assert "Yarımçıq müraciətə qayıt" in shown  # the stranger's own draft is kept for later

    forwarded = Chat(service, user="forwarded")  # not identified: must prove the phone, and cannot
    await forwarded.command("start", token)
    shown = await forwarded.contact(BOTH)
    assert "sizin müraciətinizə aid deyil" in shown and number not in shown
    assert (await forwarded.step()) == Step.MENU


@pytest.mark.parametrize("payload", ["garbage", "A" * 28, "x" * 64, "<b>1</b>"])
async def test_a_broken_link_gets_a_clear_answer(service: Conversations, payload: str) -> None:
    chat = Chat(service, user="broken")
    shown = await chat.command("start", payload)
    assert "keçid etibarlı deyil" in shown
    assert (await chat.step()) == Step.MENU


async def test_cancel_forgets_the_pending_link(service: Conversations) -> None:
    _, application_id, number = await file_one(service)
    newcomer = Chat(service, user="changed-mind")
    await newcomer.command("start", service.links.token(application_id))
    await newcomer.command("cancel")
    assert "link_app" not in (await newcomer.state()).data
    await newcomer.press("new")
    shown = await newcomer.contact(PLAIN)
    # A new application, not the link's: PLAIN's one account is taken and the reason asked.
    assert (await newcomer.step()) == Step.REASON and number not in shown
