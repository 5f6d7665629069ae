"""The application conversation: the graph of steps, and what each step of an application does.

`Dialog.handle(state, event, ctx)` returns the next state and what to show. It never raises for what
a person sends: a `DialogError` leaves the state exactly as it was and answers with the explanation
and the same question again. The graph:

    MENU ─new→ ASK_PHONE ─contact/phone→ (ASK_CODE →) ASK_OTP ─┐
      │             └────────── known phone ───────────────────┤
      │                                                        ▼
      │   ACCOUNT (skipped when there is one) → [METERING_POINT] → REASON [→ KNOWN_OUTAGE] [→ ALREADY_OPEN]
      │       → DESCRIPTION (text, photo, location) → CONTACTS (⇄ MOBILE, EXTRA_PHONES, EMAIL)
      │       → REVIEW ─send→ MENU                              (REVIEW ─edit:x→ x → REVIEW)
      └─my→ MY_LIST → APP_DETAIL → CONFIRM_CANCEL
                          └─(completed)→ RATE_STARS → RATE_COMMENT → APP_DETAIL   (feedback.py)
                          └─(completed)→ REOPEN_REASON → APP_DETAIL                 (feedback.py)
                          └─(visit times offered)→ pick one → APP_DETAIL            (visits.py)

A chat may confirm more than one phone ("another phone", at the menu or the account question); it
keeps them all, and offers the accounts of every one. A new application while a draft waits asks
first (CONFIRM_NEW).

`STEPS`, at the end, names for every step the function that handles its events and the one that asks
its question. The identification steps are in `identify.py`, the rating and the reopening of a
completed application in `feedback.py`; the reasons and the fields the review can edit are in
`catalog.py`. /lang opens LANGUAGE from any step and returns to it; "back" is defined for every step
in `_back`.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from dialogs import attachments, feedback, identify, validate, visits
from dialogs.catalog import DESCRIBE_REASONS, EDITABLE, NO_POWER, REASONS, SAFETY_REASON
from dialogs.errors import DialogError, Invalid
from dialogs.events import Command, Contact, Event, File, Location, Photo, Pressed, Text, Unsupported
from dialogs.ports import AccountView, ApplicationDraft, ApplicationView, Context, OutageView
from dialogs.replies import BACK, CANCEL, Choice, Message, Notes, Outcome, Request, note
from dialogs.state import State, Step
from locales import LANGUAGES, Msg, translate

T = TypeVar("T")
PAGE_SIZE = 8
# Azerbaijan's territory with a margin: a location far outside it is a mistake, not a fault to visit.
AZ_BOUNDS = ((38.3, 41.95), (44.7, 50.9))

FLOW: tuple[Step, ...] = (
    Step.ACCOUNT,
    Step.METERING_POINT,
    Step.REASON,
    Step.DESCRIPTION,
    Step.CONTACTS,
    Step.REVIEW,
)
CONTACT_STEPS = frozenset({Step.MOBILE, Step.EXTRA_PHONES, Step.EMAIL})  # reached from CONTACTS
APPLICATION_STEPS = frozenset(FLOW) | CONTACT_STEPS | {Step.KNOWN_OUTAGE, Step.ALREADY_OPEN}

Handler = Callable[[State, Event, Context], Awaitable[tuple[State, Notes]]]
Question = Callable[[State, Context], Awaitable[Message]]


@dataclass(frozen=True, slots=True)
class StepRule:
    """One step: `handle` takes the events sent at it, `ask` draws its question.

    The question's buttons are also the presses the step accepts, so both are named together.
    """

    handle: Handler
    ask: Question


class Dialog:
    """The conversation of one subscriber; stateless itself, so one instance serves everyone."""

    async def handle(self, state: State, event: Event, ctx: Context) -> tuple[State, Outcome]:
        event = await _typed_choice(state, event, ctx)
        try:
            new_state, notes = await _dispatch(state, event, ctx)
        except DialogError as err:
            question = await self.question(state, ctx)
            return state, Outcome((Message((err.msg,)), question), state.rev, changed=False)
        if new_state == state:
            question = await self.question(state, ctx)
            return state, Outcome((*notes, question), state.rev, changed=False)
        new_state = new_state.evolve(rev=state.rev + 1)
        question = await self.question(new_state, ctx)
        # A keyboard used (the contact shared, a choice tapped) hides by itself: it is asked once.
        used = isinstance(event, Contact | Pressed)
        withdraw = _asks_contact(state) and question.request is None and not used
        return new_state, Outcome((*notes, question), new_state.rev, changed=True, withdraw=withdraw)

    async def current(self, state: State, ctx: Context) -> Outcome:
        """The current question again, e.g. after a restart or for a channel that lost its message."""
        return Outcome((await self.question(state, ctx),), state.rev, changed=False)

    async def question(self, state: State, ctx: Context) -> Message:
        """What the current step asks, and so which buttons are valid."""
        return await _question(state, ctx)


def _asks_contact(state: State) -> bool:
    return state.step == Step.ASK_PHONE


async def _typed_choice(state: State, event: Event, ctx: Context) -> Event:
    """A choice of the contact question sent as its label: a channel may show those choices as
    keyboard buttons beside "share my number" (one message, in Telegram), and such a button sends
    its text. Typed by hand, the label counts the same."""
    if not (_asks_contact(state) and isinstance(event, Text)) or event.reply_to:
        return event
    typed = event.text.strip()
    for choice in (await _question(state, ctx)).choices:
        if translate(choice.label, state.lang) == typed:
            return Pressed(choice.id, state.rev)
    return event


# ---- dispatch -----------------------------------------------------------------------------------


async def _question(state: State, ctx: Context) -> Message:
    return await STEPS[state.step].ask(state, ctx)


async def _dispatch(state: State, event: Event, ctx: Context) -> tuple[State, Notes]:
    if isinstance(event, Unsupported):
        raise DialogError(
            Msg("attachments.video" if event.kind in attachments.VIDEOS else "error.unsupported")
        )
    if isinstance(event, Command):
        return await _arrive(state, *await _command(state, event, ctx), ctx)
    if isinstance(event, Text | Photo | File) and event.reply_to:
        # An answer to the department's message goes back to the department, whatever the step.
        replied = await ctx.applications.replied_to(ctx.subscriber, event.reply_to)
        if replied is not None:
            return await _to_staff(state, replied, event, ctx)
    if isinstance(event, Pressed):
        if event.rev is not None and event.rev != state.rev:
            raise DialogError(Msg("error.stale_button"))
        question = await _question(state, ctx)
        if event.choice not in {c.id for c in question.choices}:
            raise DialogError(await _why_not(state, event.choice, ctx))
        if event.choice == "back":
            return await _back(state, ctx), ()
        if event.choice == "cancel":
            return _cancel(state)
        if event.choice.startswith("page:"):
            return state.with_data(page=int(event.choice.removeprefix("page:"))), ()
    return await _arrive(state, *await STEPS[state.step].handle(state, event, ctx), ctx)


async def _why_not(state: State, choice: str, ctx: Context) -> Msg:
    """A button of the current question that it no longer shows: why, when we can say it."""
    if state.step == Step.APP_DETAIL and visits.is_visit(choice):
        return visits.why_not(await feedback.viewed(state, ctx), choice, ctx.now) or Msg("error.stale_button")
    return await feedback.explain(state, choice, ctx) or Msg("error.stale_button")


async def _arrive(before: State, state: State, notes: Notes, ctx: Context) -> tuple[State, Notes]:
    """A step reached going forward that has nothing to ask is passed: one account is taken as it is
    (with its basic data shown; the review card can change it). Going back, it is asked."""
    passing = state.step == Step.ACCOUNT and before.step != Step.ACCOUNT
    if not passing or state.data.get("editing") or state.draft.get("account_id"):
        return state, notes  # asked as usual: going back, editing, or resuming a draft
    holdings = await _holdings(state, ctx)
    if len(holdings) != 1:
        return state, notes
    account, phone = holdings[0]
    chosen = await _choose_account(ctx, state, account, phone)
    return chosen, (*notes, Message((_account_facts(account),)))


async def _command(state: State, event: Command, ctx: Context) -> tuple[State, Notes]:
    name = event.name.lower()
    if name == "start":
        if event.arg:
            return await _open_link(state, event.arg.strip(), ctx)
        return _to_menu(state), (note("start.welcome"),)
    if name == "new":
        return await _start_application(state, ctx), ()
    if name == "my":
        return _park(state).go(Step.MY_LIST), ()
    if name == "cancel":
        return _cancel(state)
    if name == "help":
        return state, (note("help.text"),)
    if name == "lang":
        wanted = event.arg.strip().lower()
        if wanted in LANGUAGES:
            return state.evolve(lang=wanted), (Message((Msg("lang.changed"),)),)
        if state.step == Step.LANGUAGE:
            return state, ()
        return state.go(Step.LANGUAGE, return_to=state.step.value), ()
    raise DialogError(Msg("error.unknown_command", {"command": event.name[:32]}))


def _to_menu(state: State) -> State:
    return _park(state).go(Step.MENU, link_app=None)


async def _open_link(state: State, token: str, ctx: Context) -> tuple[State, Notes]:
    """`/start <token>` from an SMS, an e-mail or the status page: that application, if it is theirs.

    A chat that has not confirmed a phone yet confirms it first, and the application opens then.
    Only we can make a token that passes the check, so "not yours" tells its holder nothing new,
    and it is the same answer whether or not the application still exists.
    """
    menu = _to_menu(state)
    application_id = ctx.links.application_id(token)
    if application_id is None:
        return menu, (note("link.invalid"),)
    phones = identify.confirmed(state)
    if await ctx.applications.get_mine(ctx.subscriber, phones, application_id) is not None:
        return menu.go(Step.APP_DETAIL, view_app=application_id), ()
    if phones:
        return menu, (note("link.not_yours"),)
    return menu.go(Step.ASK_PHONE, link_app=application_id), (note("link.identify"),)


def _cancel(state: State) -> tuple[State, Notes]:
    data = dict(state.data)
    had_draft = (
        bool(data.pop("draft", None))
        or state.step in APPLICATION_STEPS
        or state.step in identify.IDENTIFY_STEPS
    )
    for key in ("resume", "editing", "before_edit", "otp", "link_app", "from_account"):
        data.pop(key, None)
    new_state = state.evolve(step=Step.MENU, data=data)
    return new_state, (note("cancel.done" if had_draft else "cancel.nothing"),)


async def _start_application(state: State, ctx: Context, fresh: bool = False) -> State:
    """A new application; while a draft waits, first the question whether to go on with that one."""
    waiting = state.data.get("resume") or state.step in APPLICATION_STEPS
    if not fresh and waiting and _has_content(state.draft):
        return state.go(Step.CONFIRM_NEW, return_to=state.step.value)
    data = {k: v for k, v in state.data.items() if k in ("phone", "phones", "own_phone")}
    data["draft"] = {}
    state = state.evolve(data=data)
    if not identify.confirmed(state):
        return state.go(Step.ASK_PHONE)
    return state.go(Step.ACCOUNT)


async def _back(state: State, ctx: Context) -> State:
    step = state.step
    if step == Step.LANGUAGE:
        return state.go(_return_step(state))
    if step in CONTACT_STEPS:
        return state.go(Step.CONTACTS)
    if step in FLOW and state.data.get("editing") and step != Step.REVIEW:
        # Back from an edit undoes it: the draft as it was when the edit began.
        restored = state.with_data(draft=state.data.get("before_edit") or state.draft)
        return await _enter_review(ctx, restored.with_data(editing=None, before_edit=None))
    if step == Step.CONFIRM_NEW:
        return state.go(_return_step(state), return_to=None)
    if step == Step.ASK_PHONE and state.data.get("from_account"):
        return state.go(Step.ACCOUNT, from_account=None)  # confirming another phone from the account question
    back_to = {
        Step.ASK_PHONE: Step.MENU,
        Step.ASK_CODE: Step.ASK_PHONE,
        Step.ASK_OTP: Step.ASK_CODE if state.data.get("otp", {}).get("via") == "code" else Step.ASK_PHONE,
        Step.ACCOUNT: Step.MENU,
        Step.MY_LIST: Step.MENU,
        Step.APP_DETAIL: Step.MY_LIST,
        Step.CONFIRM_CANCEL: Step.APP_DETAIL,
        Step.RATE_STARS: Step.APP_DETAIL,
        Step.RATE_COMMENT: Step.RATE_STARS,
        Step.REOPEN_REASON: Step.APP_DETAIL,
        Step.KNOWN_OUTAGE: Step.REASON,
        Step.ALREADY_OPEN: Step.REASON,
    }.get(step)
    if back_to is None:
        back_to = _flow_neighbour(state, -1)
    if back_to == Step.MENU:
        return _to_menu(state) if step in FLOW else state.go(back_to, link_app=None)
    return state.go(back_to)


def _flow_neighbour(state: State, direction: int) -> Step:
    index = FLOW.index(state.step) + direction
    while 0 <= index < len(FLOW):
        step = FLOW[index]
        if step != Step.METERING_POINT or state.draft.get("kind") == "non_residential":
            return step
        index += direction
    return Step.MENU


async def _advance(ctx: Context, state: State) -> State:
    """The step after a completed flow step: the next one, or back to the review when editing."""
    if state.step == Step.REASON and _needs_description(state.draft) and not state.draft.get("description"):
        return state.go(Step.DESCRIPTION)  # "other" says nothing by itself, even changed on the review
    if state.data.get("editing") and not (
        state.step == Step.ACCOUNT and state.draft.get("kind") == "non_residential"
    ):
        return await _enter_review(ctx, state.with_data(editing=None, before_edit=None))
    following = _flow_neighbour(state, +1)
    if following == Step.REVIEW:
        return await _enter_review(ctx, state)
    return state.go(following)


async def _enter_review(ctx: Context, state: State) -> State:
    """The review card shows the application number, so it is reserved the first time we get here."""
    draft = state.draft
    if not draft.get("number"):
        state = state.with_data(draft={**draft, "number": await ctx.applications.reserve_number()})
    return state.go(Step.REVIEW)


# ---- step handlers: each receives the event of its own step -------------------------------------


async def _on_menu(state: State, event: Event, ctx: Context) -> tuple[State, Notes]:
    if isinstance(event, Pressed):
        if event.choice == "new":
            return await _start_application(state, ctx), ()
        if event.choice == "resume":
            return _resume(state), ()
        if event.choice == "phone_add":  # a draft that waits stays: its account is chosen again after
            if state.data.get("resume") and _has_content(state.draft):
                return state.with_data(resume=None).go(Step.ASK_PHONE), ()
            return (await _start_application(state, ctx, fresh=True)).go(Step.ASK_PHONE), ()
        if event.choice == "my":
            return state.go(Step.MY_LIST), ()
        if event.choice == "lang":
            return state.go(Step.LANGUAGE, return_to=Step.MENU.value), ()
        if event.choice == "help":
            return state, (note("help.text"),)
    raise Invalid(Msg("error.use_buttons"))


def _resume(state: State, fallback: Step = Step.MENU) -> State:
    """Back into the draft where it was left."""
    data = dict(state.data)
    try:
        step = Step.parse(data.pop("resume", None) or fallback.value)
    except ValueError:
        step = fallback
    return state.evolve(data=data).go(step, return_to=None)


async def _on_confirm_new(state: State, event: Event, ctx: Context) -> tuple[State, Notes]:
    if isinstance(event, Pressed) and event.choice == "resume":
        return _resume(state, fallback=_return_step(state)), ()
    if isinstance(event, Pressed) and event.choice == "fresh":
        return await _start_application(state.with_data(resume=None, return_to=None), ctx, fresh=True), ()
    raise Invalid(Msg("error.use_buttons"))


async def _on_language(state: State, event: Event, ctx: Context) -> tuple[State, Notes]:
    if isinstance(event, Pressed) and event.choice.startswith("lang:"):
        lang = event.choice.removeprefix("lang:")
        new_state = state.evolve(lang=lang).go(_return_step(state))
        return new_state.with_data(return_to=None), (note("lang.changed"),)
    raise Invalid(Msg("error.use_buttons"))


async def _on_account(state: State, event: Event, ctx: Context) -> tuple[State, Notes]:
    holdings = await _holdings(state, ctx)
    if isinstance(event, Pressed) and event.choice == "another_phone":
        return state.go(Step.ASK_PHONE, from_account=True), ()
    if isinstance(event, Pressed) and event.choice.startswith("acc:"):
        account_id = int(event.choice.removeprefix("acc:"))
        account, phone = next(h for h in holdings if h[0].id == account_id)
        return await _choose_account(ctx, state, account, phone), ()
    if isinstance(event, Text):  # a code typed from the bill instead of pressed: fine, if it is one
        typed = _digits(event.text)
        for account, phone in holdings:
            if typed and typed == account.code:
                return await _choose_account(ctx, state, account, phone), ()
    if isinstance(event, Contact) or (isinstance(event, Text) and _looks_like_phone(event.text)):
        asking = state.go(Step.ASK_PHONE, from_account=True)
        return await identify.on_phone(asking, event, ctx)  # another phone's accounts
    raise Invalid(Msg("account.hint"))


async def _choose_account(ctx: Context, state: State, account: AccountView, phone: str) -> State:
    draft = {
        **state.draft,
        "account_id": account.id,
        "account_code": account.code,
        "kind": account.kind,
        "address": account.address,
        "company": account.company,
        "voen": account.voen,
        "phone": phone,
        "mp_id": None,
        "mp_code": None,
    }
    return await _advance(ctx, state.with_data(draft=draft))


async def _on_metering_point(state: State, event: Event, ctx: Context) -> tuple[State, Notes]:
    points = await ctx.registry.metering_points(int(state.draft["account_id"]))
    point = None
    if isinstance(event, Pressed) and event.choice.startswith("mp:"):
        mp_id = int(event.choice.removeprefix("mp:"))
        point = next(p for p in points if p.id == mp_id)
    elif isinstance(event, Text):  # the point's code typed from the bill
        typed = validate.clean_text(event.text).upper().replace(" ", "")
        point = next((p for p in points if p.code.upper().replace(" ", "") == typed), None)
    if point is None:
        raise Invalid(Msg("mp.hint"))
    draft = {**state.draft, "mp_id": point.id, "mp_code": point.code, "address": point.address}
    return await _advance(ctx, state.with_data(draft=draft)), ()


async def _on_reason(state: State, event: Event, ctx: Context) -> tuple[State, Notes]:
    if isinstance(event, Pressed) and event.choice.startswith("reason:"):
        reason = event.choice.removeprefix("reason:")
        notes = (note("reason.safety_advice"),) if reason == SAFETY_REASON else ()
        state = state.with_data(draft={**state.draft, "reason": reason})
        known = await _known_outage(state, ctx) if reason == NO_POWER else None
        if known is not None:
            return state.go(Step.KNOWN_OUTAGE, outage={"id": known.id, "until": known.until.isoformat()}), ()
        return await _unless_open_already(ctx, state), notes
    raise Invalid(Msg("error.use_buttons"))


async def _unless_open_already(ctx: Context, state: State) -> State:
    """Before a new application: one already open on this account (metering point) is shown first,
    so the same problem is followed rather than filed twice. Not while editing the review card."""
    account_id, point_id = state.draft.get("account_id"), state.draft.get("mp_id")
    if isinstance(account_id, int) and not state.data.get("editing"):
        found = await ctx.applications.open_on(account_id, point_id if isinstance(point_id, int) else None)
        if found is not None:
            mine = await ctx.applications.get_mine(ctx.subscriber, identify.confirmed(state), found.id)
            shown = {
                "id": found.id,
                "mine": mine is not None,
                "number": found.number,
                "code": _codes(found),
                "reason": found.reason,
                "status": found.status,
                "date": found.created_at.isoformat(),
            }
            return state.go(Step.ALREADY_OPEN, open_app=shown)
    return await _advance(ctx, state)


async def _on_already_open(state: State, event: Event, ctx: Context) -> tuple[State, Notes]:
    """The same problem: follow that application (or open it, when it is this subscriber's own);
    another problem: the new application goes on."""
    found = state.data.get("open_app") or {}
    if isinstance(event, Pressed) and event.choice in ("dup:follow", "dup:open") and found.get("id"):
        app_id = int(found["id"])
        menu, _ = _cancel(state)
        if found.get("mine"):
            return menu.go(Step.APP_DETAIL, open_app=None, view_app=app_id), ()
        await ctx.applications.follow(ctx.subscriber, app_id, state.lang)
        return menu.with_data(open_app=None), (note("duplicate.following", number=found.get("number", "")),)
    if isinstance(event, Pressed) and event.choice == "dup:new":
        return await _advance(ctx, state.go(Step.REASON, open_app=None)), ()
    raise Invalid(Msg("error.use_buttons"))


async def _known_outage(state: State, ctx: Context) -> OutageView | None:
    account_id = state.draft.get("account_id")
    if not isinstance(account_id, int):
        return None
    point_id = state.draft.get("mp_id")
    return await ctx.outages.affecting(account_id, point_id if isinstance(point_id, int) else None)


async def _on_known_outage(state: State, event: Event, ctx: Context) -> tuple[State, Notes]:
    """Power is known to be off there: be told when it is back (the draft goes), or file anyway."""
    outage = state.data.get("outage") or {}
    if isinstance(event, Pressed) and event.choice == "outage:watch" and outage.get("id"):
        await ctx.outages.watch(int(outage["id"]), state.lang)
        menu, _ = _cancel(state)
        return menu.with_data(outage=None), (note("outage.watching"),)
    if isinstance(event, Pressed) and event.choice == "outage:file":
        return await _unless_open_already(ctx, state.go(Step.REASON, outage=None)), ()
    raise Invalid(Msg("error.use_buttons"))


async def _on_description(state: State, event: Event, ctx: Context) -> tuple[State, Notes]:
    """The description, photos, a voice note, a document and the location, in any order; "Continue"
    when done."""
    draft = state.draft
    if isinstance(event, Text):
        text = validate.description(event.text)
        key = "details.description_replaced" if draft.get("description") else "details.description_saved"
        return state.with_data(draft={**draft, "description": text}), (note(key),)
    if isinstance(event, Photo):
        return _photo(state, event)
    if isinstance(event, File):
        return _file(state, event)
    if isinstance(event, Location):
        return _location(state, event)
    if isinstance(event, Pressed):
        if event.choice == "done":
            if _needs_description(draft) and not draft.get("description"):
                raise Invalid(Msg("details.required"))
            return await _advance(ctx, state), ()
        if event.choice == "remove":
            removed = state.with_data(draft={**draft, "photo": None, "attachments": [], "location": None})
            return removed, (note("attachments.removed"),)
    raise Invalid(Msg("details.hint"))


def _photo(state: State, event: Photo) -> tuple[State, Notes]:
    draft = state.draft
    if not event.ref or len(event.ref) > attachments.REF_MAX:
        raise Invalid(Msg("details.hint"))
    items = attachments.of_draft(draft)
    photos = attachments.count(items, "photo")
    if any(item["ref"] == event.ref for item in items):  # the same photo again (a re-sent album)
        return state, ()
    if photos >= attachments.MAX_PHOTOS:
        raise Invalid(Msg("attachments.photos_full", {"max": attachments.MAX_PHOTOS}))
    items.append(attachments.photo_item(event.ref))
    saved = note("attachments.photo_added", count=photos + 1, max=attachments.MAX_PHOTOS)
    return state.with_data(draft=_described(_with_attachments(draft, items), event.caption)), (saved,)


def _file(state: State, event: File) -> tuple[State, Notes]:
    """A voice note or a document: one of each, a second one replaces the first."""
    item = attachments.checked(event.kind, event.ref, event.mime, event.size, event.name)
    items = attachments.of_draft(state.draft)
    had = attachments.count(items, item["kind"])
    items = [*(i for i in items if i["kind"] != item["kind"]), item]
    key = f"attachments.{item['kind']}_{'replaced' if had else 'saved'}"
    return state.with_data(draft=_described(_with_attachments(state.draft, items), event.caption)), (
        note(key),
    )


def _with_attachments(draft: dict[str, Any], items: list[dict[str, Any]]) -> dict[str, Any]:
    # `photo` was the one photo of drafts saved before there were several: it now lives in the list.
    return {**draft, "photo": None, "attachments": items}


def _described(draft: dict[str, Any], caption: str) -> dict[str, Any]:
    if caption.strip() and not draft.get("description"):  # a caption describes the problem
        try:
            return {**draft, "description": validate.description(caption)}
        except Invalid:
            pass  # a caption too short for a description is only a caption
    return draft


def _location(state: State, event: Location) -> tuple[State, Notes]:
    if not (math.isfinite(event.latitude) and math.isfinite(event.longitude)):
        raise Invalid(Msg("attachments.location_invalid"))
    (lat_min, lat_max), (lon_min, lon_max) = AZ_BOUNDS
    if not (lat_min <= event.latitude <= lat_max and lon_min <= event.longitude <= lon_max):
        raise Invalid(Msg("attachments.location_outside"))
    location = [round(event.latitude, 6), round(event.longitude, 6)]
    return state.with_data(draft={**state.draft, "location": location}), (note("attachments.location_saved"),)


async def _on_contacts(state: State, event: Event, ctx: Context) -> tuple[State, Notes]:
    """The mobile, more numbers and the e-mail on one screen: "Correct", or change what is wrong."""
    draft = state.draft
    if isinstance(event, Pressed):
        mobile = _prefilled_mobile(state)
        if event.choice == "ok" and mobile:
            return await _advance(ctx, state.with_data(draft=_with_mobile(draft, mobile))), ()
        target = {"mobile": Step.MOBILE, "extra": Step.EXTRA_PHONES, "email": Step.EMAIL}.get(event.choice)
        if target is not None:
            return state.go(target), ()
    if isinstance(event, Contact) and event.own:
        mobile = validate.mobile(event.phone)
        return state.with_data(draft=_with_mobile(draft, mobile)), (note("contacts.saved"),)
    if isinstance(event, Text):
        if "@" in event.text:
            address = validate.email(event.text)
            return state.with_data(draft={**draft, "email": address}), (note("contacts.saved"),)
        return _typed_phones(state, event.text), (note("contacts.saved"),)
    raise Invalid(Msg("contacts.hint"))


def _typed_phones(state: State, text: str) -> State:
    """Numbers typed at the contacts: the first is the mobile when there is none yet, the rest more."""
    draft = state.draft
    found = validate.phones(text)
    mobile = _prefilled_mobile(state)
    if mobile is None:
        mobile = validate.mobile(found.pop(0))
    extra = [p for p in [*(draft.get("extra") or []), *found] if p != mobile]
    extra = list(dict.fromkeys(extra))
    if len(extra) > validate.MAX_EXTRA_PHONES:
        raise Invalid(Msg("extra.full", {"max": validate.MAX_EXTRA_PHONES}))
    return state.with_data(draft={**draft, "mobile": mobile, "extra": extra})


def _with_mobile(draft: dict[str, Any], mobile: str) -> dict[str, Any]:
    return {**draft, "mobile": mobile, "extra": [p for p in draft.get("extra") or [] if p != mobile]}


async def _on_mobile(state: State, event: Event, ctx: Context) -> tuple[State, Notes]:
    if isinstance(event, Pressed) and event.choice == "keep":
        phone = _prefilled_mobile(state)
        return state.go(Step.CONTACTS, draft={**state.draft, "mobile": phone}), ()
    if isinstance(event, Contact) and event.own:
        phone = validate.mobile(event.phone)
    elif isinstance(event, Text):
        phone = validate.mobile(event.text)
    else:
        raise Invalid(Msg("mobile.hint"))
    return state.go(Step.CONTACTS, draft=_with_mobile(state.draft, phone)), ()


async def _on_extra_phones(state: State, event: Event, ctx: Context) -> tuple[State, Notes]:
    draft = state.draft
    if isinstance(event, Pressed):
        if event.choice == "done":
            return state.go(Step.CONTACTS), ()
        if event.choice == "clear":
            return state.with_data(draft={**draft, "extra": []}), (note("extra.cleared"),)
    if not isinstance(event, Text):
        raise Invalid(Msg("extra.hint"))
    extra = list(draft.get("extra") or [])
    added = []
    for phone in validate.phones(event.text):
        if phone == _prefilled_mobile(state) or phone in extra:
            raise Invalid(Msg("extra.duplicate"))
        if len(extra) >= validate.MAX_EXTRA_PHONES:
            raise Invalid(Msg("extra.full", {"max": validate.MAX_EXTRA_PHONES}))
        extra.append(phone)
        added.append(validate.display_phone(phone))
    state = state.with_data(draft={**draft, "extra": extra})
    notes = (note("extra.added", phone=", ".join(added)),)
    if len(extra) >= validate.MAX_EXTRA_PHONES:
        return state.go(Step.CONTACTS), notes
    return state, notes


async def _on_email(state: State, event: Event, ctx: Context) -> tuple[State, Notes]:
    draft = state.draft
    if isinstance(event, Pressed):
        if event.choice == "skip":
            return state.go(Step.CONTACTS, draft={**draft, "email": None}), ()
        if event.choice == "keep":
            return state.go(Step.CONTACTS), ()
    if not isinstance(event, Text):
        raise Invalid(Msg("email.hint"))
    address = validate.email(event.text)
    return state.go(Step.CONTACTS, draft={**draft, "email": address}), ()


async def _on_review(state: State, event: Event, ctx: Context) -> tuple[State, Notes]:
    if isinstance(event, Pressed):
        if event.choice.startswith("edit:"):
            target = EDITABLE[event.choice.removeprefix("edit:")]
            return state.go(target, editing=True, before_edit=state.draft), ()
        if event.choice == "send":
            return await _send(state, ctx)
    raise Invalid(Msg("error.use_buttons"))


async def _send(state: State, ctx: Context) -> tuple[State, Notes]:
    draft = state.draft
    phone = str(draft.get("phone") or state.data["phone"])
    accounts = {a.id: a for a in await ctx.registry.accounts_by_phone(phone)}
    account = accounts.get(int(draft["account_id"]))
    mp_id = draft.get("mp_id")
    if account is None or (
        account.kind == "non_residential"
        and mp_id not in {p.id for p in await ctx.registry.metering_points(account.id)}
    ):
        return state.go(Step.ACCOUNT, editing=True), (note("review.account_gone"),)
    if _needs_description(draft) and not draft.get("description"):
        return state.go(Step.DESCRIPTION, editing=True, before_edit=draft), (note("details.required"),)
    number = draft.get("number") or await ctx.applications.reserve_number()
    registered = await ctx.applications.register(_application(state, ctx, number, account))
    data = {k: v for k, v in state.data.items() if k in ("phone", "phones", "own_phone")}
    key = "review.registered" if registered.created else "review.already_registered"
    return state.evolve(step=Step.MENU, data=data), (note(key, number=registered.number),)


def _application(state: State, ctx: Context, number: str, account: AccountView) -> ApplicationDraft:
    """The draft as the service registers it, once its account has been checked again."""
    draft = state.draft
    mp_id = draft.get("mp_id")
    return ApplicationDraft(
        number=number,
        subscriber=ctx.subscriber,
        applicant_phone=str(draft.get("phone") or state.data["phone"]),
        lang=state.lang,
        account_id=account.id,
        metering_point_id=int(mp_id) if mp_id is not None else None,
        reason=str(draft["reason"]),
        description=str(draft.get("description") or ""),
        photo_ref=next((i["ref"] for i in attachments.of_draft(draft) if i["kind"] == "photo"), None),
        latitude=(draft.get("location") or [None, None])[0],
        longitude=(draft.get("location") or [None, None])[1],
        mobile=str(draft["mobile"]),
        extra_phones=tuple(draft.get("extra") or ()),
        email=draft.get("email"),
        attachments=tuple(attachments.of_draft(draft)),
    )


async def _on_my_list(state: State, event: Event, ctx: Context) -> tuple[State, Notes]:
    if isinstance(event, Pressed):
        if event.choice.startswith("app:"):
            return state.go(Step.APP_DETAIL, view_app=int(event.choice.removeprefix("app:"))), ()
        if event.choice == "new":
            return await _start_application(state, ctx), ()
    raise Invalid(Msg("error.use_buttons"))


async def _on_app_detail(state: State, event: Event, ctx: Context) -> tuple[State, Notes]:
    if isinstance(event, Pressed) and event.choice == "cancel_app":
        return state.go(Step.CONFIRM_CANCEL), ()
    if isinstance(event, Pressed) and event.choice == feedback.RATE.id:
        return state.go(Step.RATE_STARS), ()
    if isinstance(event, Pressed) and event.choice == feedback.REOPEN.id:
        return state.go(Step.REOPEN_REASON), ()
    if isinstance(event, Pressed) and visits.is_visit(event.choice):
        return await visits.on_choice(state, event, ctx)
    if isinstance(event, Pressed) and event.choice == "new":
        return await _start_application(state, ctx), ()
    if isinstance(event, Text | Photo | File):  # written with the application open: to its department
        return await _to_staff(state, int(state.data["view_app"]), event, ctx)
    raise Invalid(Msg("error.use_buttons"))


async def _to_staff(
    state: State, application_id: int, event: Text | Photo | File, ctx: Context
) -> tuple[State, Notes]:
    application = await ctx.applications.get_mine(ctx.subscriber, identify.confirmed(state), application_id)
    if application is None:
        raise Invalid(Msg("app.not_found"))
    if not application.open:  # its work is done: a new problem is a new application
        raise DialogError(Msg("app.closed", {"number": application.number}))
    attachment = None
    if isinstance(event, Photo):
        text, photo = (validate.message(event.caption) if event.caption.strip() else ""), event.ref
    elif isinstance(event, File):
        attachment = attachments.checked(event.kind, event.ref, event.mime, event.size, event.name)
        text, photo = (validate.message(event.caption) if event.caption.strip() else ""), None
    else:
        text, photo = validate.message(event.text), None
    if not await ctx.applications.message_staff(application_id, text, photo, attachment):
        raise DialogError(Msg("app.no_department"))
    return state, (note("app.message_sent", number=application.number),)


async def _on_confirm_cancel(state: State, event: Event, ctx: Context) -> tuple[State, Notes]:
    if isinstance(event, Pressed) and event.choice == "cancel_yes":
        app_id = int(state.data["view_app"])
        application = await ctx.applications.get_mine(ctx.subscriber, identify.confirmed(state), app_id)
        if application is None:
            return state.go(Step.MY_LIST), ()
        await ctx.applications.cancel(app_id, actor=f"subscriber:{ctx.subscriber.channel}")
        return state.go(Step.APP_DETAIL), (note("app.cancelled", number=application.number),)
    raise Invalid(Msg("error.use_buttons"))


# ---- questions: what each step shows, and so which buttons are valid ----------------------------


async def _ask_menu(state: State, ctx: Context) -> Message:
    choices = [Choice("new", Msg("menu.new")), Choice("my", Msg("menu.my"))]
    if state.data.get("resume") and state.data.get("draft"):
        choices.insert(0, Choice("resume", Msg("menu.resume")))
    if identify.confirmed(state):
        choices.append(Choice("phone_add", Msg("menu.phone_add")))
    choices += [Choice("lang", Msg("menu.lang")), Choice("help", Msg("menu.help"))]
    return Message((Msg("menu.prompt"),), tuple(choices))


async def _ask_confirm_new(state: State, ctx: Context) -> Message:
    choices = (Choice("resume", Msg("confirm_new.resume")), Choice("fresh", Msg("confirm_new.fresh")), BACK)
    return Message((Msg("confirm_new.ask"),), choices)


async def _ask_language(state: State, ctx: Context) -> Message:
    choices = tuple(Choice(f"lang:{code}", Msg(f"lang.name_{code}")) for code in LANGUAGES)
    return Message((Msg("lang.ask"),), (*choices, BACK))


async def _ask_account(state: State, ctx: Context) -> Message:
    choices = [Choice(f"acc:{a.id}", _account_label(a)) for a, _ in await _holdings(state, ctx)]
    another = Choice("another_phone", Msg("account.another_phone"))
    return Message((Msg("account.ask"),), (*_page(state, choices), another, BACK, CANCEL))


async def _ask_metering_point(state: State, ctx: Context) -> Message:
    draft = state.draft
    if int(draft.get("account_id") or 0) not in {a.id for a in await _accounts(state, ctx)}:
        # The registry moved the main code to someone else since it was chosen: show nothing of it.
        return Message((Msg("review.account_gone"),), (BACK, CANCEL))
    points = await ctx.registry.metering_points(int(draft["account_id"]))
    choices = [Choice(f"mp:{p.id}", Msg("mp.label", {"code": p.code, "address": p.address})) for p in points]
    text = Msg("mp.ask", {"code": draft["account_code"], "count": len(points)})
    return Message((text,), (*_page(state, choices), BACK, CANCEL))


async def _ask_known_outage(state: State, ctx: Context) -> Message:
    until = datetime.fromisoformat(str((state.data.get("outage") or {}).get("until") or ctx.now.isoformat()))
    choices = (Choice("outage:watch", Msg("outage.watch")), Choice("outage:file", Msg("outage.file")))
    return Message((Msg("outage.known", {"until": until}),), (*choices, BACK, CANCEL))


async def _ask_already_open(state: State, ctx: Context) -> Message:
    shown = state.data.get("open_app") or {}
    number = str(shown.get("number", ""))
    params = {
        "number": number,
        "code": str(shown.get("code", "")),
        "reason": Msg(f"reason.{shown.get('reason', 'other')}"),
        "status": Msg(f"status.{shown.get('status')}"),
        "date": datetime.fromisoformat(str(shown.get("date") or ctx.now.isoformat())),
    }
    this_one = (
        Choice("dup:open", Msg("duplicate.open_it", {"number": number}))
        if shown.get("mine")
        else Choice("dup:follow", Msg("duplicate.follow", {"number": number}))
    )
    choices = (this_one, Choice("dup:new", Msg("duplicate.new")))
    return Message((Msg("duplicate.open", params),), (*choices, BACK, CANCEL))


async def _ask_reason(state: State, ctx: Context) -> Message:
    choices = tuple(Choice(f"reason:{r}", Msg(f"reason.{r}")) for r in REASONS)
    return Message((Msg("reason.ask"),), (*choices, BACK, CANCEL))


async def _ask_description(state: State, ctx: Context) -> Message:
    draft = state.draft
    required = _needs_description(draft)
    limits = {
        "min": validate.DESCRIPTION_MIN,
        "max": validate.DESCRIPTION_MAX,
        "photos": attachments.MAX_PHOTOS,
    }
    parts = [Msg("details.ask_required" if required else "details.ask", limits)]
    if draft.get("description"):
        parts.append(Msg("description.current", {"text": draft["description"]}))
    attached = attachments.summary(attachments.of_draft(draft))
    if attached is not None:
        parts.append(Msg("attachments.have", {"list": attached}))
    if draft.get("location"):
        parts.append(Msg("attachments.have_location"))
    choices = [] if required and not draft.get("description") else [Choice("done", Msg("details.continue"))]
    if attached is not None or draft.get("location"):
        choices.append(Choice("remove", Msg("attachments.remove")))
    return Message(tuple(parts), (*choices, BACK, CANCEL), request=Request.LOCATION)


async def _ask_contacts(state: State, ctx: Context) -> Message:
    draft = state.draft
    mobile = _prefilled_mobile(state)
    if mobile is None:  # nothing to confirm: the mobile first
        return Message((Msg("contacts.ask_mobile"),), (BACK, CANCEL))
    extra = draft.get("extra") or []
    shown = {
        "mobile": validate.display_phone(mobile),
        "extra": ", ".join(validate.display_phone(p) for p in extra) or "—",
        "email": draft.get("email") or "—",
    }
    choices = [
        Choice("ok", Msg("contacts.ok")),
        Choice("mobile", Msg("contacts.change_mobile")),
        Choice(
            "extra", Msg("contacts.add_phone" if len(extra) < validate.MAX_EXTRA_PHONES else "extra.clear")
        ),
        Choice("email", Msg("contacts.change_email" if draft.get("email") else "contacts.add_email")),
    ]
    return Message((Msg("contacts.ask", shown),), (*choices, BACK, CANCEL))


async def _ask_mobile(state: State, ctx: Context) -> Message:
    prefilled = _prefilled_mobile(state)
    choices: list[Choice] = []
    if prefilled:
        shown = validate.display_phone(prefilled)
        choices.append(Choice("keep", Msg("mobile.keep", {"phone": shown})))
        text = Msg("mobile.ask_prefilled", {"phone": shown})
    else:
        text = Msg("mobile.ask")
    return Message((text,), (*choices, BACK, CANCEL))


async def _ask_extra_phones(state: State, ctx: Context) -> Message:
    extra = state.draft.get("extra") or []
    parts = [Msg("phones.ask", {"max": validate.MAX_EXTRA_PHONES})]
    if extra:
        parts.append(Msg("extra.current", {"phones": ", ".join(validate.display_phone(p) for p in extra)}))
    choices = [Choice("done", Msg("common.back_to_contacts"))]
    if extra:
        choices.append(Choice("clear", Msg("extra.clear")))
    return Message(tuple(parts), (*choices, BACK, CANCEL))


async def _ask_email(state: State, ctx: Context) -> Message:
    current = state.draft.get("email")
    choices = [Choice("skip", Msg("email.remove" if current else "email.skip"))]
    parts = [Msg("email.ask_short")]
    if current:
        parts.append(Msg("email.current", {"email": current}))
        choices.insert(0, Choice("keep", Msg("common.keep")))
    return Message(tuple(parts), (*choices, BACK, CANCEL))


async def _ask_review(state: State, ctx: Context) -> Message:
    draft = state.draft
    parts = [Msg("review.title", {"number": draft.get("number", "—")})]
    if draft.get("company"):  # a company's account: the company, not a person's FİN
        parts.append(Msg("review.company", {"company": draft["company"], "voen": draft.get("voen") or "—"}))
    else:
        for holder in await ctx.registry.holders_by_phone(
            str(draft.get("phone") or state.data.get("phone", ""))
        ):
            fin = validate.mask_fin(holder.fin)
            parts.append(Msg("review.applicant", {"name": holder.full_name, "fin": fin}))
    parts += _review_card(draft)
    parts.append(Msg("review.hint"))
    choices = [Choice("send", Msg("review.send"))]
    choices += [Choice(f"edit:{name}", Msg(f"review.edit_{name}")) for name in EDITABLE]
    return Message(tuple(parts), (*choices, BACK, CANCEL))


def _review_card(draft: dict[str, Any]) -> list[Msg]:
    """The lines of the review card that show the application itself, one per field."""
    parts: list[Msg] = []
    if draft.get("kind") == "non_residential":
        parts.append(
            Msg("review.main_code", {"code": draft["account_code"], "point": draft.get("mp_code") or "—"})
        )
    else:
        parts.append(Msg("review.subscriber_code", {"code": draft.get("account_code", "—")}))
    parts.append(Msg("review.address", {"address": draft.get("address") or "—"}))
    parts.append(Msg("review.reason", {"reason": Msg(f"reason.{draft.get('reason', 'other')}")}))
    parts.append(Msg("review.description", {"text": draft.get("description") or "—"}))
    attached = attachments.summary(attachments.of_draft(draft))
    parts.append(Msg("review.attachments", {"list": attached}) if attached else Msg("review.attachments_no"))
    location = draft.get("location")
    if location:
        parts.append(Msg("review.location", {"lat": location[0], "lon": location[1]}))
    else:
        parts.append(Msg("review.location_no"))
    parts.append(Msg("review.mobile", {"phone": validate.display_phone(str(draft.get("mobile", "")))}))
    extra = draft.get("extra") or []
    if extra:
        parts.append(Msg("review.extra", {"phones": ", ".join(validate.display_phone(p) for p in extra)}))
    parts.append(
        Msg("review.email", {"email": draft["email"]}) if draft.get("email") else Msg("review.email_no")
    )
    return parts


async def _ask_my_list(state: State, ctx: Context) -> Message:
    apps = await ctx.applications.list_mine(ctx.subscriber, identify.confirmed(state))
    if not apps:
        return Message((Msg("my.empty"),), (Choice("new", Msg("menu.new")), BACK))
    parts = [Msg("my.title", {"count": len(apps)})]
    choices = []
    shown, navigation = _page_slice(state, list(apps))
    for app in shown:
        status = Msg(f"status.{app.status}")
        parts.append(
            Msg(
                "my.line",
                {"number": app.number, "account": _codes(app), "date": app.created_at, "status": status},
            )
        )
        if app.due_at is not None and app.open:
            parts.append(Msg("my.due", {"date": app.due_at}))
        choices.append(Choice(f"app:{app.id}", Msg("my.open", {"number": app.number})))
    return Message(tuple(parts), (*choices, *navigation, Choice("new", Msg("menu.new")), BACK))


async def _ask_app_detail(state: State, ctx: Context) -> Message:
    app = await ctx.applications.get_mine(
        ctx.subscriber, identify.confirmed(state), int(state.data["view_app"])
    )
    if app is None:
        return Message((Msg("app.not_found"),), (BACK,))
    parts = [
        Msg(
            "app.detail",
            {
                "number": app.number,
                "account": _codes(app),
                "reason": Msg(f"reason.{app.reason}"),
                "date": app.created_at,
                "status": Msg(f"status.{app.status}"),
            },
        )
    ]
    for entry in app.history:
        parts.append(Msg("app.history_line", {"date": entry.at, "status": Msg(f"status.{entry.status}")}))
    if app.result:  # "the result" of a completed one, "the reason" of a rejected one
        parts.append(Msg(f"app.result_{app.status}", {"text": app.result}))
    if app.stars in feedback.STARS:
        parts.append(Msg("rating.given", {"stars": feedback.STAR_LABELS[(app.stars or 1) - 1]}))
    if not app.open:  # closed: it takes no more messages; a new problem is a new application
        parts.append(Msg("app.closed_hint"))
        lines, after = feedback.after_result(app, ctx.now)
        return Message((*parts, *lines), (*after, Choice("new", Msg("menu.new")), BACK))
    if app.due_at is not None:
        parts.append(Msg("app.due", {"date": app.due_at}))
    visit_lines, visit_choices = visits.detail(app.visit, ctx.now)
    parts += [*visit_lines, Msg("app.write_hint")]
    choices = [Choice("cancel_app", Msg("app.cancel"))] if app.cancellable else []
    return Message(tuple(parts), (*visit_choices, *choices, BACK))


async def _ask_confirm_cancel(state: State, ctx: Context) -> Message:
    return Message((Msg("app.confirm_cancel"),), (Choice("cancel_yes", Msg("app.cancel_yes")), BACK))


# ---- the step table: every step, its handler and its question -----------------------------------

STEPS: dict[Step, StepRule] = {
    Step.MENU: StepRule(_on_menu, _ask_menu),
    Step.LANGUAGE: StepRule(_on_language, _ask_language),
    Step.ASK_PHONE: StepRule(identify.on_phone, identify.ask_phone),
    Step.ASK_CODE: StepRule(identify.on_code, identify.ask_code),
    Step.ASK_OTP: StepRule(identify.on_otp, identify.ask_otp),
    Step.ACCOUNT: StepRule(_on_account, _ask_account),
    Step.METERING_POINT: StepRule(_on_metering_point, _ask_metering_point),
    Step.REASON: StepRule(_on_reason, _ask_reason),
    Step.KNOWN_OUTAGE: StepRule(_on_known_outage, _ask_known_outage),
    Step.ALREADY_OPEN: StepRule(_on_already_open, _ask_already_open),
    Step.DESCRIPTION: StepRule(_on_description, _ask_description),
    Step.CONTACTS: StepRule(_on_contacts, _ask_contacts),
    Step.MOBILE: StepRule(_on_mobile, _ask_mobile),
    Step.EXTRA_PHONES: StepRule(_on_extra_phones, _ask_extra_phones),
    Step.EMAIL: StepRule(_on_email, _ask_email),
    Step.REVIEW: StepRule(_on_review, _ask_review),
    Step.CONFIRM_NEW: StepRule(_on_confirm_new, _ask_confirm_new),
    Step.MY_LIST: StepRule(_on_my_list, _ask_my_list),
    Step.APP_DETAIL: StepRule(_on_app_detail, _ask_app_detail),
    Step.CONFIRM_CANCEL: StepRule(_on_confirm_cancel, _ask_confirm_cancel),
    Step.RATE_STARS: StepRule(feedback.on_stars, feedback.ask_stars),
    Step.RATE_COMMENT: StepRule(feedback.on_comment, feedback.ask_comment),
    Step.REOPEN_REASON: StepRule(feedback.on_reopen, feedback.ask_reopen),
}


# ---- helpers: small pure functions over State ---------------------------------------------------


def _park(state: State) -> State:
    """Leave the application flow but remember where, so the menu can offer to resume.

    An edit in progress stays one: resuming it returns to the review card when done.
    """
    step = _return_step(state) if state.step == Step.LANGUAGE else state.step
    if step in APPLICATION_STEPS and state.draft:
        return state.with_data(resume=step.value)
    return state


def _return_step(state: State) -> Step:
    try:
        return Step(state.data.get("return_to") or Step.MENU.value)
    except ValueError:
        return Step.MENU


def _page_slice(state: State, items: list[T]) -> tuple[list[T], list[Choice]]:
    """The items of the current page of a long list, and the previous/next buttons it needs."""
    if len(items) <= PAGE_SIZE:
        return items, []
    pages = (len(items) + PAGE_SIZE - 1) // PAGE_SIZE
    page = min(max(int(state.data.get("page") or 0), 0), pages - 1)
    navigation = []
    if page > 0:
        navigation.append(Choice(f"page:{page - 1}", Msg("common.page_prev", {"page": page, "pages": pages})))
    if page < pages - 1:
        navigation.append(
            Choice(f"page:{page + 1}", Msg("common.page_next", {"page": page + 2, "pages": pages}))
        )
    return items[page * PAGE_SIZE : (page + 1) * PAGE_SIZE], navigation


def _page(state: State, choices: list[Choice]) -> list[Choice]:
    shown, navigation = _page_slice(state, choices)
    return shown + navigation


def _account_label(account: AccountView) -> Msg:
    key = "account.residential" if account.kind == "residential" else "account.non_residential"
    return Msg(key, {"code": account.code, "address": account.address or ""})


def _codes(app: ApplicationView) -> str:
    """An application's account code, and its metering point's when it has one."""
    return app.account_code + (f" / {app.metering_point_code}" if app.metering_point_code else "")


def _prefilled_mobile(state: State) -> str | None:
    """The mobile the contacts show: the one chosen, or else the chat's own when it is a mobile."""
    for candidate in (state.draft.get("mobile"), state.data.get("own_phone"), state.data.get("phone")):
        if candidate and validate.is_az_mobile(str(candidate)):
            return str(candidate)
    return None


async def _holdings(state: State, ctx: Context) -> list[tuple[AccountView, str]]:
    """The accounts of every confirmed phone, each once, with the phone it is on file for."""
    seen: dict[int, tuple[AccountView, str]] = {}
    for phone in identify.confirmed(state):
        for account in await ctx.registry.accounts_by_phone(phone):
            seen.setdefault(account.id, (account, phone))
    return list(seen.values())


async def _accounts(state: State, ctx: Context) -> Sequence[AccountView]:
    return [account for account, _ in await _holdings(state, ctx)]


def _account_facts(account: AccountView) -> Msg:
    """An account's basic data, as the portal shows it: the code, the holder company, the address."""
    if account.kind == "residential":
        return Msg("account.facts_residential", {"code": account.code, "address": account.address or "—"})
    if account.company:
        company = {"company": account.company, "voen": account.voen or "—"}
        return Msg(
            "account.facts_company", {"code": account.code, "address": account.address or "—", **company}
        )
    return Msg("account.facts_non_residential", {"code": account.code, "address": account.address or "—"})


def _needs_description(draft: dict[str, Any]) -> bool:
    return draft.get("reason") in DESCRIBE_REASONS


def _has_content(draft: dict[str, Any]) -> bool:
    """Whether a draft holds anything the subscriber chose or typed (not only its reserved number)."""
    return any(value for key, value in draft.items() if key != "number")


def _digits(text: str) -> str:
    return "".join(ch for ch in text if ch.isdigit())


def _looks_like_phone(text: str) -> bool:
    try:
        validate.any_phone(text)
    except Invalid:
        return False
    return True
