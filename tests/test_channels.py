"""The channel port's shared rules, the registry, and what derives from the lifecycle and the policy."""

from __future__ import annotations

import asyncio
import time

import pytest

from bot.channels.port import Channels, answer_within, one_by_one
from bot.channels.telegram.staffchat import CALLBACK_RE
from bot.channels.terminal import STATUS_COMMANDS, TerminalChannel
from bot.core.departments import Departments
from bot.notify.outbox import Permanent, Temporary, chat_text
from bot.staff.desk import TAKE, VISIT, WRITE, actions
from dialogs import lifecycle, notices
from dialogs.lifecycle import STAFF_STEPS, Role, Status
from locales import Msg, payload_msg, translate
from storage.models import Notification

# ---- answer_within: one on-the-spot retry rule for every channel -----------------------------------


async def test_an_answer_taken_at_once_is_returned() -> None:
    async def send() -> str:
        return "wamid.1"

    assert await answer_within(send, within=1.0) == "wamid.1"


async def test_temporary_failures_are_retried_within_the_time() -> None:
    tries: list[float] = []

    async def send() -> str:
        tries.append(time.monotonic())
        if len(tries) < 3:
            raise Temporary("503")
        return "ok"

    assert await answer_within(send, within=2.0) == "ok"
    assert len(tries) == 3
    assert tries[1] - tries[0] >= 0.2 and tries[2] - tries[1] >= 0.45  # 0.25 s, then 0.5 s


async def test_a_pause_the_platform_asks_for_is_waited_out_when_it_fits() -> None:
    tries: list[float] = []

    async def send() -> str:
        tries.append(time.monotonic())
        if len(tries) == 1:
            raise Temporary("429", retry_after=0.6)
        return "ok"

    assert await answer_within(send, within=2.0) == "ok"
    assert tries[1] - tries[0] >= 0.55


async def test_an_answer_not_taken_in_time_is_handed_back() -> None:
    async def send() -> str:
        raise Temporary("429", retry_after=5)  # longer than the time left: not waited for

    started = time.monotonic()
    assert await answer_within(send, within=1.0) is None
    assert time.monotonic() - started < 4.0  # not the 5 s asked for


async def test_a_slow_platform_is_cut_off_at_the_time() -> None:
    async def send() -> str:
        await asyncio.sleep(10)
        return "late"

    started = time.monotonic()
    assert await answer_within(send, within=0.3) is None
    assert time.monotonic() - started < 5.0  # not the 10 s the call would take


async def test_a_refusal_is_not_retried() -> None:
    tries = 0

    async def send() -> str:
        nonlocal tries
        tries += 1
        raise Permanent("blocked")

    with pytest.raises(Permanent):
        await answer_within(send, within=1.0)
    assert tries == 1


async def test_each_persons_updates_in_order_different_people_at_once() -> None:
    done: list[tuple[str, int]] = []
    b_started = asyncio.Event()

    async def handle(item: tuple[str, int]) -> None:
        who, n = item
        if who == "b":
            b_started.set()
        elif n == 1:  # a's first update waits for b's: were b queued behind a, this would never end
            await asyncio.wait_for(b_started.wait(), 5)
        await asyncio.sleep(0)
        done.append(item)

    items = [("a", 1), ("b", 1), ("a", 2), ("b", 2), ("a", 3)]
    await one_by_one(items, lambda item: item[0], handle)
    assert [n for who, n in done if who == "a"] == [1, 2, 3]
    assert [n for who, n in done if who == "b"] == [1, 2]


# ---- the registry ------------------------------------------------------------------------------------


def test_two_channels_of_one_name_are_refused() -> None:
    with pytest.raises(ValueError, match="terminal"):
        Channels([TerminalChannel(), TerminalChannel()])


def test_the_registry_answers_for_channels_it_does_not_run() -> None:
    channels = Channels([TerminalChannel()])
    assert channels.label("terminal") == "terminal"
    assert channels.label("viber") == "viber"  # an application from a channel switched off since
    assert not channels.takes_photos("terminal") and not channels.takes_photos("viber")
    assert channels.chat_links("token", "TX-2026-000001") == []


async def test_a_photo_no_running_channel_keeps_is_refused_for_good() -> None:
    channels = Channels([TerminalChannel()])
    with pytest.raises(Permanent):
        await channels.media("terminal:photo.jpg")  # a name typed in the terminal: nothing to send
    with pytest.raises(Permanent):
        await channels.media("wa:123")  # WhatsApp is not configured


# ---- what derives from the lifecycle: a new status is a line there -----------------------------------


@pytest.mark.parametrize("status", list(Status))
def test_the_cards_buttons_follow_the_lifecycle(status: Status) -> None:
    steps = [s.button for s in STAFF_STEPS if s.status in lifecycle.TRANSITIONS[status]]
    is_open = status in lifecycle.OPEN
    expected = ([TAKE] if is_open else []) + steps + [WRITE] + ([VISIT] if is_open else [])
    assert actions(status.value) == expected
    for action in expected:
        assert CALLBACK_RE.fullmatch(f"s:12:{action}")


def test_every_staff_step_has_its_terminal_commands_and_staff_set_only_those() -> None:
    assert {STATUS_COMMANDS[c] for s in STAFF_STEPS for c in s.commands} == lifecycle.ALLOWED_BY[Role.STAFF]
    assert set(STATUS_COMMANDS) == {c for s in STAFF_STEPS for c in s.commands}


def test_an_unknown_status_is_neither_open_nor_cancellable() -> None:
    assert not lifecycle.is_open("archived") and not lifecycle.cancellable("archived")
    assert lifecycle.next_steps("archived") == []
    assert lifecycle.cancellable("registered") and not lifecycle.cancellable("in_progress")


# ---- the notification policy ----------------------------------------------------------------------


def test_a_registration_is_told_by_sms_and_email() -> None:
    assert [(n.via, n.kind) for n in notices.registered("TX-2026-000001")] == [
        (notices.SMS, "sms_registered"),
        (notices.EMAIL, "email_registered"),
    ]


def test_a_subscribers_own_cancellation_is_told_to_the_staff_only() -> None:
    told = notices.status_changed("TX-2026-000001", Status.CANCELLED, Role.SUBSCRIBER, None)
    assert {n.via for n in told} == {notices.THREAD}
    assert [n.kind for n in told] == ["card_refresh", "note"]


def test_work_started_is_told_in_the_chat_and_a_result_by_sms_and_email_too() -> None:
    started = notices.status_changed("TX-2026-000001", Status.IN_PROGRESS, Role.STAFF, None)
    assert [(n.via, n.kind) for n in started] == [(notices.THREAD, "card_refresh"), (notices.CHAT, "status")]
    done = notices.status_changed("TX-2026-000001", Status.COMPLETED, Role.STAFF, "Replaced the fuse.")
    assert [(n.via, n.kind) for n in done] == [
        (notices.THREAD, "card_refresh"),
        (notices.SMS, "sms_result"),
        (notices.EMAIL, "email_result"),
        (notices.CHAT, "status"),
    ]
    assert done[-1].payload["params"]["result"] == "Replaced the fuse."


def test_a_lost_chat_message_becomes_an_sms_unless_its_sms_is_on_its_way() -> None:
    news = notices.chat_lost("status", {"key": "notify.status"}, "TX-2026-000001")
    assert news is not None and (news.via, news.kind) == (notices.SMS, "sms_fallback")
    assert notices.chat_lost("staff_message", {}, "TX-2026-000001") is not None
    assert notices.chat_lost("status", {"key": "notify.status_result"}, "TX-2026-000001") is None
    assert notices.chat_lost("reply", {}, "TX-2026-000001") is None  # an answer to a question, not news


def test_news_of_a_result_does_not_invite_a_reply() -> None:
    """A closed application takes no more messages, so its last news does not ask for one."""
    hint = translate(Msg("notify.reply_hint"), "az")
    params = {"number": "TX-2026-000001", "status": {"$msg": "status.in_progress"}}
    started = Notification(kind="status", lang="az", payload={"key": "notify.status", "params": params})
    done = Notification(
        kind="status",
        lang="az",
        payload={"key": "notify.status_result", "params": {**params, "result": "Sayğac dəyişdirildi."}},
    )
    no_departments = Departments((), None)
    assert chat_text(started, no_departments).endswith(hint)
    assert hint not in chat_text(done, no_departments)


def test_a_refusal_is_told_with_its_reason_not_as_a_result() -> None:
    refused = notices.status_changed("TX-2026-000001", Status.REJECTED, Role.STAFF, "Balansınızda deyil.")
    news = refused[-1]
    assert news.payload["key"] == "notify.status_refused"
    text = translate(payload_msg(news.payload), "az")
    assert "İmtinanın səbəbi: Balansınızda deyil." in text and "Nəticə" not in text
    assert notices.chat_lost("status", news.payload, "TX-2026-000001") is None  # its SMS is on its way
    done = Notification(kind="status", lang="az", payload=news.payload)
    assert translate(Msg("notify.reply_hint"), "az") not in chat_text(done, Departments((), None))
