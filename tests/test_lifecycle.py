"""The status lifecycle: legal and illegal changes, results, the trail and the subscriber's message."""

from __future__ import annotations

import pytest
from sqlmodel import select

from dialogs import lifecycle
from dialogs.lifecycle import IllegalTransition, Role, Status
from locales import payload_msg, translate
from storage import applications
from storage.models import Application, Notification, StatusChange
from tests.chat import Chat, fill_residential

LEGAL = [
    (Status.REGISTERED, Status.IN_PROGRESS, Role.STAFF, None),
    (Status.REGISTERED, Status.REJECTED, Role.STAFF, "Avadanlıq abonentin balansında deyil."),
    (Status.REGISTERED, Status.CANCELLED, Role.SUBSCRIBER, None),
    (Status.IN_PROGRESS, Status.COMPLETED, Role.STAFF, "Sayğac dəyişdirildi."),
    (Status.IN_PROGRESS, Status.REJECTED, Role.STAFF, "Giriş təmin edilmədi."),
]


@pytest.mark.parametrize(("current", "new", "role", "result"), LEGAL)
def test_legal_changes(current: Status, new: Status, role: Role, result: str | None) -> None:
    assert lifecycle.check(current, new, role, result) == result


ILLEGAL = [
    (Status.REGISTERED, Status.COMPLETED, Role.STAFF, "x", "status.error_transition"),
    (Status.IN_PROGRESS, Status.CANCELLED, Role.SUBSCRIBER, None, "status.error_transition"),
    (Status.IN_PROGRESS, Status.REGISTERED, Role.STAFF, None, "status.error_role"),
    (Status.REGISTERED, Status.CANCELLED, Role.STAFF, None, "status.error_role"),
    (Status.REGISTERED, Status.IN_PROGRESS, Role.SUBSCRIBER, None, "status.error_role"),
    (Status.COMPLETED, Status.IN_PROGRESS, Role.STAFF, None, "status.error_transition"),
    (Status.REJECTED, Status.COMPLETED, Role.STAFF, "x", "status.error_transition"),
    (Status.CANCELLED, Status.IN_PROGRESS, Role.STAFF, None, "status.error_transition"),
    (Status.IN_PROGRESS, Status.COMPLETED, Role.STAFF, None, "status.error_result_required"),
    (Status.IN_PROGRESS, Status.COMPLETED, Role.STAFF, "   ", "status.error_result_required"),
    (Status.IN_PROGRESS, Status.REJECTED, Role.STAFF, "", "status.error_result_required"),
    (Status.IN_PROGRESS, Status.COMPLETED, Role.STAFF, "x" * 2001, "status.error_result_long"),
]


@pytest.mark.parametrize(("current", "new", "role", "result", "key"), ILLEGAL)
def test_illegal_changes_are_refused(
    current: Status, new: Status, role: Role, result: str | None, key: str
) -> None:
    with pytest.raises(IllegalTransition) as caught:
        lifecycle.check(current, new, role, result)
    assert caught.value.key == key


def test_every_status_is_in_the_graph() -> None:
    assert set(lifecycle.TRANSITIONS) == set(Status)
    finals = {s for s, nxt in lifecycle.TRANSITIONS.items() if not nxt}
    assert finals == {Status.REJECTED, Status.CANCELLED}  # completed may be reopened by the subscriber


async def _registered(chat: Chat) -> Application:
    await fill_residential(chat)
    await chat.press("send")
    async with chat.service.db.transaction() as session:
        return (await session.scalars(select(Application))).one()


async def test_changes_are_recorded_and_the_subscriber_is_told(chat: Chat, clock) -> None:
    app = await _registered(chat)
    assert app.id is not None
    db = chat.service.db
    for status, note in ((Status.IN_PROGRESS, None), (Status.COMPLETED, "Kabel dəyişdirildi.")):
        clock.advance(hours=2)
        async with db.transaction() as session:
            await applications.change_status(
                session, app.id, status, actor="staff:42", role=Role.STAFF, note=note, now=clock()
            )
    async with db.transaction() as session:
        stored = await session.get(Application, app.id)
        trail = (await session.scalars(select(StatusChange).order_by(StatusChange.id))).all()
        everything = (await session.scalars(select(Notification).order_by(Notification.id))).all()
    outbox = [n for n in everything if n.kind == "status"]
    assert [n.kind for n in everything if n.kind != "status"] == ["sms_registered", "sms_result"]
    assert stored is not None and stored.status == "completed" and stored.result == "Kabel dəyişdirildi."
    assert [(c.old_status, c.new_status, c.actor) for c in trail] == [
        (None, "registered", "subscriber:test"),
        ("registered", "in_progress", "staff:42"),
        ("in_progress", "completed", "staff:42"),
    ]
    assert trail[-1].note == "Kabel dəyişdirildi."
    assert [n.state for n in outbox] == ["queued", "queued"]
    texts = [translate(payload_msg(n.payload), "az") for n in outbox]
    assert texts[0] == f"ℹ️ {app.number} nömrəli müraciətinizin statusu: icradadır."
    assert texts[1].endswith("Nəticə: Kabel dəyişdirildi.")
    assert translate(payload_msg(outbox[1].payload), "en").startswith(
        f"ℹ️ Your application {app.number} is now: completed"
    )


async def test_an_illegal_change_writes_nothing(chat: Chat, clock) -> None:
    app = await _registered(chat)
    assert app.id is not None
    db = chat.service.db
    with pytest.raises(IllegalTransition):
        async with db.transaction() as session:
            await applications.change_status(
                session, app.id, Status.COMPLETED, actor="staff:1", role=Role.STAFF, note="x", now=clock()
            )
    async with db.transaction() as session:
        assert (await session.get(Application, app.id)).status == "registered"  # type: ignore[union-attr]
        assert len((await session.scalars(select(StatusChange))).all()) == 1
        owed = (await session.scalars(select(Notification))).all()
        assert [n.kind for n in owed] == ["sms_registered"]  # from the registration only


async def test_subscriber_cannot_withdraw_once_work_started(chat: Chat, clock) -> None:
    app = await _registered(chat)
    assert app.id is not None
    await chat.command("my")
    await chat.press(app.number)
    await chat.press("cancel_app")  # the subscriber is asked to confirm …
    async with chat.service.db.transaction() as session:  # … while staff take the application
        await applications.change_status(
            session, app.id, Status.IN_PROGRESS, actor="staff:1", role=Role.STAFF, note=None, now=clock()
        )
    shown = await chat.press("cancel_yes")
    assert "iş artıq başlayıb" in shown
    async with chat.service.db.transaction() as session:
        assert (await session.get(Application, app.id)).status == "in_progress"  # type: ignore[union-attr]
