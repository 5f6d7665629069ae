"""The application conversation: the graph of steps, and what each step of an application does.

`Dialog.handle(state, event, ctx)` returns the next state and what to show. It never raises for what
a person sends: a `DialogError` leaves the state exactly as it was and answers with the explanation
and the same question again. The graph:

    MENU ─new→ ASK_PHONE ─contact/phone→ (ASK_CODE →) ASK_OTP ─┐
      │             └────────── known phone ───────────────────┤
      │                                                        ▼
      │   ACCOUNT → [METERING_POINT] → REASON → DESCRIPTION → ATTACHMENTS → MOBILE → EXTRA_PHONES
      │                                                                         → EMAIL → REVIEW ─send→ MENU
      └─my→ MY_LIST → APP_DETAIL → CONFIRM_CANCEL                 (REVIEW ─edit:x→ x → REVIEW)

`STEPS`, at the end, names for every step the function that handles its events and the one that asks
its question. The identification steps are in `identify.py`; the reasons and the fields the review can
edit are in `catalog.py`. /lang opens LANGUAGE from any step and returns to it; "back" is defined for
every step in `_back`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from dialogs import identify, validate
from dialogs.catalog import EDITABLE, REASONS, SAFETY_REASON
from dialogs.errors import DialogError, Invalid
from dialogs.events import Command, Contact, Event, Location, Photo, Pressed, Text, Unsupported
from dialogs.ports import AccountView, ApplicationDraft, ApplicationView, Context
from dialogs.replies import BACK, CANCEL, Choice, Message, Notes, Outcome, Request, note
from dialogs.state import State, Step
from locales import LANGUAGES, Msg

T = TypeVar("T")
PAGE_SIZE = 8
# Azerbaijan's territory with a margin: a location far outside it is a mistake, not a fault to visit.
AZ_BOUNDS = ((38.3, 41.95), (44.7, 50.9))

FLOW: tuple[Step, ...] = (
    Step.ACCOUNT,
    Step.METERING_POINT,
    Step.REASON,
    Step.DESCRIPTION,
    Step.ATTACHMENTS,
    Step.MOBILE,
    Step.EXTRA_PHONES,
    Step.EMAIL,
    Step.REVIEW,
)

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
        return new_state, Outcome((*notes, question), new_state.rev, changed=True)

    async def current(self, state: State, ctx: Context) -> Outcome:
        """The current question again, e.g. after a restart or for a channel that lost its message."""
        return Outcome((await self.question(state, ctx),), state.rev, changed=False)

    async def question(self, state: State, ctx: Context) -> Message:
        """What the current step asks, and so which buttons are valid."""
        return await _question(state, ctx)


# ---- dispatch -----------------------------------------------------------------------------------


async def _question(state: State, ctx: Context) -> Message:
    return await STEPS[state.step].ask(state, ctx)


async def _dispatch(state: State, event: Event, ctx: Context) -> tuple[State, Notes]:
    if isinstance(event, Unsupported):
        raise DialogError(Msg("error.unsupported"))
    if isinstance(event, Command):
        return await _command(state, event, ctx)
    if isinstance(event, Text | Photo) and event.reply_to:
        # An answer to the department's message goes back to the department, whatever the step.
        replied = await ctx.applications.replied_to(ctx.subscriber, event.reply_to)
        if replied is not None:
            return await _to_staff(state, replied, event, ctx)
    if isinstance(event, Pressed):
        if event.rev is not None and event.rev != state.rev:
            raise DialogError(Msg("error.stale_button"))
        question = await _question(state, ctx)
        if event.choice not in {c.id for c in question.choices}:
            raise DialogError(Msg("error.stale_button"))
        if event.choice == "back":
            return await _back(state, ctx), ()
        if event.choice == "cancel":
            return _cancel(state)
        if event.choice.startswith("page:"):
            return state.with_data(page=int(event.choice.removeprefix("page:"))), ()
    return await STEPS[state.step].handle(state, event, ctx)


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
    phone = state.data.get("phone")
    if await ctx.applications.get_mine(ctx.subscriber, phone, application_id) is not None:
        return menu.go(Step.APP_DETAIL, view_app=application_id), ()
    if phone:
        return menu, (note("link.not_yours"),)
    return menu.go(Step.ASK_PHONE, link_app=application_id), (note("link.identify"),)


def _cancel(state: State) -> tuple[State, Notes]:
    data = dict(state.data)
    had_draft = bool(data.pop("draft", None)) or state.step in FLOW or state.step in identify.IDENTIFY_STEPS
    for key in ("resume", "editing", "before_edit", "otp", "link_app"):
        data.pop(key, None)
    new_state = state.evolve(step=Step.MENU, data=data)
    return new_state, (note("cancel.done" if had_draft else "cancel.nothing"),)


async def _start_application(state: State, ctx: Context) -> State:
    data = {k: v for k, v in state.data.items() if k in ("phone", "own_phone")}
    data["draft"] = {}
    state = state.evolve(data=data)
    if not data.get("phone"):
        return state.go(Step.ASK_PHONE)
    return state.go(Step.ACCOUNT)


async def _back(state: State, ctx: Context) -> State:
    step = state.step
    if step == Step.LANGUAGE:
        return state.go(_return_step(state))
    if step in FLOW and state.data.get("editing") and step != Step.REVIEW:
        # Back from an edit undoes it: the draft as it was when the edit began.
        restored = state.with_data(draft=state.data.get("before_edit") or state.draft)
        return await _enter_review(ctx, restored.with_data(editing=None, before_edit=None))
    back_to = {
        Step.ASK_PHONE: Step.MENU,
        Step.ASK_CODE: Step.ASK_PHONE,
        Step.ASK_OTP: Step.ASK_CODE if state.data.get("otp", {}).get("via") == "code" else Step.ASK_PHONE,
        Step.ACCOUNT: Step.MENU,
        Step.MY_LIST: Step.MENU,
        Step.APP_DETAIL: Step.MY_LIST,
        Step.CONFIRM_CANCEL: Step.APP_DETAIL,
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
            data = dict(state.data)
            resume = Step(data.pop("resume"))
            return state.evolve(data=data).go(resume), ()
        if event.choice == "my":
            return state.go(Step.MY_LIST), ()
        if event.choice == "lang":
            return state.go(Step.LANGUAGE, return_to=Step.MENU.value), ()
        if event.choice == "help":
            return state, (note("help.text"),)
    raise Invalid(Msg("error.use_buttons"))


async def _on_language(state: State, event: Event, ctx: Context) -> tuple[State, Notes]:
    if isinstance(event, Pressed) and event.choice.startswith("lang:"):
        lang = event.choice.removeprefix("lang:")
        new_state = state.evolve(lang=lang).go(_return_step(state))
        return new_state.with_data(return_to=None), (note("lang.changed"),)
    raise Invalid(Msg("error.use_buttons"))


async def _on_account(state: State, event: Event, ctx: Context) -> tuple[State, Notes]:
    if isinstance(event, Pressed) and event.choice.startswith("acc:"):
        account_id = int(event.choice.removeprefix("acc:"))
        account = next(a for a in await _accounts(state, ctx) if a.id == account_id)
        draft = {
            **state.draft,
            "account_id": account.id,
            "account_code": account.code,
            "kind": account.kind,
            "address": account.address,
            "mp_id": None,
            "mp_code": None,
        }
        return await _advance(ctx, state.with_data(draft=draft)), ()
    raise Invalid(Msg("error.use_buttons"))


async def _on_metering_point(state: State, event: Event, ctx: Context) -> tuple[State, Notes]:
    if isinstance(event, Pressed) and event.choice.startswith("mp:"):
        mp_id = int(event.choice.removeprefix("mp:"))
        points = await ctx.registry.metering_points(int(state.draft["account_id"]))
        point = next(p for p in points if p.id == mp_id)
        draft = {**state.draft, "mp_id": point.id, "mp_code": point.code, "address": point.address}
        return await _advance(ctx, state.with_data(draft=draft)), ()
    raise Invalid(Msg("error.use_buttons"))


async def _on_reason(state: State, event: Event, ctx: Context) -> tuple[State, Notes]:
    if isinstance(event, Pressed) and event.choice.startswith("reason:"):
        reason = event.choice.removeprefix("reason:")
        notes = (note("reason.safety_advice"),) if reason == SAFETY_REASON else ()
        return await _advance(ctx, state.with_data(draft={**state.draft, "reason": reason})), notes
    raise Invalid(Msg("error.use_buttons"))


async def _on_description(state: State, event: Event, ctx: Context) -> tuple[State, Notes]:
    if isinstance(event, Pressed) and event.choice == "keep":
        return await _advance(ctx, state), ()
    if not isinstance(event, Text):
        raise Invalid(Msg("description.hint"))
    text = validate.description(event.text)
    return await _advance(ctx, state.with_data(draft={**state.draft, "description": text})), ()


async def _on_attachments(state: State, event: Event, ctx: Context) -> tuple[State, Notes]:
    draft = state.draft
    if isinstance(event, Photo):
        if not event.ref or len(event.ref) > 512:
            raise Invalid(Msg("attachments.hint"))
        key = "attachments.photo_replaced" if draft.get("photo") else "attachments.photo_saved"
        return state.with_data(draft={**draft, "photo": event.ref}), (note(key),)
    if isinstance(event, Location):
        (lat_min, lat_max), (lon_min, lon_max) = AZ_BOUNDS
        if not (lat_min <= event.latitude <= lat_max and lon_min <= event.longitude <= lon_max):
            raise Invalid(Msg("attachments.location_outside"))
        location = [round(event.latitude, 6), round(event.longitude, 6)]
        return state.with_data(draft={**draft, "location": location}), (note("attachments.location_saved"),)
    if isinstance(event, Pressed):
        if event.choice == "done":
            return await _advance(ctx, state), ()
        if event.choice == "remove":
            removed = state.with_data(draft={**draft, "photo": None, "location": None})
            return removed, (note("attachments.removed"),)
    raise Invalid(Msg("attachments.hint"))


async def _on_mobile(state: State, event: Event, ctx: Context) -> tuple[State, Notes]:
    if isinstance(event, Pressed) and event.choice == "keep":
        phone = _prefilled_mobile(state)
        return await _advance(ctx, state.with_data(draft={**state.draft, "mobile": phone})), ()
    if isinstance(event, Contact) and event.own:
        phone = validate.mobile(event.phone)
    elif isinstance(event, Text):
        phone = validate.mobile(event.text)
    else:
        raise Invalid(Msg("mobile.hint"))
    extra = [p for p in state.draft.get("extra") or [] if p != phone]
    return await _advance(ctx, state.with_data(draft={**state.draft, "mobile": phone, "extra": extra})), ()


async def _on_extra_phones(state: State, event: Event, ctx: Context) -> tuple[State, Notes]:
    draft = state.draft
    extra = list(draft.get("extra") or [])
    if isinstance(event, Pressed):
        if event.choice == "done":
            return await _advance(ctx, state.with_data(draft={**draft, "extra": extra})), ()
        if event.choice == "clear":
            return state.with_data(draft={**draft, "extra": []}), (note("extra.cleared"),)
    if not isinstance(event, Text):
        raise Invalid(Msg("extra.hint"))
    if len(extra) >= validate.MAX_EXTRA_PHONES:
        raise Invalid(Msg("extra.full", {"max": validate.MAX_EXTRA_PHONES}))
    phone = validate.any_phone(event.text)
    if phone == draft.get("mobile") or phone in extra:
        raise Invalid(Msg("extra.duplicate"))
    extra.append(phone)
    state = state.with_data(draft={**draft, "extra": extra})
    added = (note("extra.added", phone=validate.display_phone(phone)),)
    if len(extra) >= validate.MAX_EXTRA_PHONES:
        return await _advance(ctx, state), added
    return state, added


async def _on_email(state: State, event: Event, ctx: Context) -> tuple[State, Notes]:
    draft = state.draft
    if isinstance(event, Pressed):
        if event.choice == "skip":
            return await _advance(
                ctx, state.with_data(draft={**draft, "email": None, "email_asked": True})
            ), ()
        if event.choice == "keep":
            return await _advance(ctx, state), ()
    if not isinstance(event, Text):
        raise Invalid(Msg("email.hint"))
    address = validate.email(event.text)
    return await _advance(ctx, state.with_data(draft={**draft, "email": address, "email_asked": True})), ()


async def _on_review(state: State, event: Event, ctx: Context) -> tuple[State, Notes]:
    if isinstance(event, Pressed):
        if event.choice.startswith("edit:"):
            target = EDITABLE[event.choice.removeprefix("edit:")]
            return state.go(target, editing=True, before_edit=state.draft), ()
        if event.choice == "send":
            return await _send(state, ctx)
    raise Invalid(Msg("review.hint"))


async def _send(state: State, ctx: Context) -> tuple[State, Notes]:
    draft = state.draft
    phone = str(state.data["phone"])
    accounts = {a.id: a for a in await ctx.registry.accounts_by_phone(phone)}
    account = accounts.get(int(draft["account_id"]))
    mp_id = draft.get("mp_id")
    if account is None or (
        account.kind == "non_residential"
        and mp_id not in {p.id for p in await ctx.registry.metering_points(account.id)}
    ):
        return state.go(Step.ACCOUNT, editing=True), (note("review.account_gone"),)
    number = draft.get("number") or await ctx.applications.reserve_number()
    registered = await ctx.applications.register(_application(state, ctx, number, account))
    data = {k: v for k, v in state.data.items() if k in ("phone", "own_phone")}
    key = "review.registered" if registered.created else "review.already_registered"
    return state.evolve(step=Step.MENU, data=data), (note(key, number=registered.number),)


def _application(state: State, ctx: Context, number: str, account: AccountView) -> ApplicationDraft:
    """The draft as the service registers it, once its account has been checked again."""
    draft = state.draft
    mp_id = draft.get("mp_id")
    return ApplicationDraft(
        number=number,
        subscriber=ctx.subscriber,
        applicant_phone=str(state.data["phone"]),
        lang=state.lang,
        account_id=account.id,
        metering_point_id=int(mp_id) if mp_id is not None else None,
        reason=str(draft["reason"]),
        description=str(draft["description"]),
        photo_ref=draft.get("photo"),
        latitude=(draft.get("location") or [None, None])[0],
        longitude=(draft.get("location") or [None, None])[1],
        mobile=str(draft["mobile"]),
        extra_phones=tuple(draft.get("extra") or ()),
        email=draft.get("email"),
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
    if isinstance(event, Text | Photo):  # written with the application open: to its department
        return await _to_staff(state, int(state.data["view_app"]), event, ctx)
    raise Invalid(Msg("error.use_buttons"))


async def _to_staff(
    state: State, application_id: int, event: Text | Photo, ctx: Context
) -> tuple[State, Notes]:
    application = await ctx.applications.get_mine(ctx.subscriber, state.data.get("phone"), application_id)
    if application is None:
        raise Invalid(Msg("app.not_found"))
    if isinstance(event, Photo):
        text, photo = (validate.message(event.caption) if event.caption.strip() else ""), event.ref
    else:
        text, photo = validate.message(event.text), None
    if not await ctx.applications.message_staff(application_id, text, photo):
        raise DialogError(Msg("app.no_department"))
    return state, (note("app.message_sent", number=application.number),)


async def _on_confirm_cancel(state: State, event: Event, ctx: Context) -> tuple[State, Notes]:
    if isinstance(event, Pressed) and event.choice == "cancel_yes":
        app_id = int(state.data["view_app"])
        application = await ctx.applications.get_mine(ctx.subscriber, state.data.get("phone"), app_id)
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
    choices += [Choice("lang", Msg("menu.lang")), Choice("help", Msg("menu.help"))]
    return Message((Msg("menu.prompt"),), tuple(choices))


async def _ask_language(state: State, ctx: Context) -> Message:
    choices = tuple(Choice(f"lang:{code}", Msg(f"lang.name_{code}")) for code in LANGUAGES)
    return Message((Msg("lang.ask"),), (*choices, BACK))


async def _ask_account(state: State, ctx: Context) -> Message:
    accounts = await _accounts(state, ctx)
    choices = [Choice(f"acc:{a.id}", _account_label(a)) for a in accounts]
    return Message((Msg("account.ask"),), (*_page(state, choices), BACK, CANCEL))


async def _ask_metering_point(state: State, ctx: Context) -> Message:
    draft = state.draft
    if int(draft.get("account_id") or 0) not in {a.id for a in await _accounts(state, ctx)}:
        # The registry moved the main code to someone else since it was chosen: show nothing of it.
        return Message((Msg("review.account_gone"),), (BACK, CANCEL))
    points = await ctx.registry.metering_points(int(draft["account_id"]))
    choices = [Choice(f"mp:{p.id}", Msg("mp.label", {"code": p.code, "address": p.address})) for p in points]
    text = Msg("mp.ask", {"code": draft["account_code"], "count": len(points)})
    return Message((text,), (*_page(state, choices), BACK, CANCEL))


async def _ask_reason(state: State, ctx: Context) -> Message:
    choices = tuple(Choice(f"reason:{r}", Msg(f"reason.{r}")) for r in REASONS)
    return Message((Msg("reason.ask"),), (*choices, BACK, CANCEL))


async def _ask_description(state: State, ctx: Context) -> Message:
    parts = [Msg("description.ask", {"min": validate.DESCRIPTION_MIN, "max": validate.DESCRIPTION_MAX})]
    choices: list[Choice] = []
    current = state.draft.get("description")
    if current:
        parts.append(Msg("description.current", {"text": current}))
        choices.append(Choice("keep", Msg("common.keep")))
    return Message(tuple(parts), (*choices, BACK, CANCEL))


async def _ask_attachments(state: State, ctx: Context) -> Message:
    draft = state.draft
    parts = [Msg("attachments.ask")]
    attached = bool(draft.get("photo") or draft.get("location"))
    if draft.get("photo"):
        parts.append(Msg("attachments.have_photo"))
    if draft.get("location"):
        parts.append(Msg("attachments.have_location"))
    choices = [Choice("done", Msg("attachments.continue" if attached else "attachments.skip"))]
    if attached:
        choices.append(Choice("remove", Msg("attachments.remove")))
    return Message(tuple(parts), (*choices, BACK, CANCEL), request=Request.LOCATION)


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
    parts = [Msg("extra.ask", {"max": validate.MAX_EXTRA_PHONES})]
    if extra:
        parts.append(Msg("extra.current", {"phones": ", ".join(validate.display_phone(p) for p in extra)}))
    choices = [Choice("done", Msg("common.continue" if extra else "common.skip"))]
    if extra:
        choices.append(Choice("clear", Msg("extra.clear")))
    return Message(tuple(parts), (*choices, BACK, CANCEL))


async def _ask_email(state: State, ctx: Context) -> Message:
    current = state.draft.get("email")
    choices = [Choice("skip", Msg("email.skip"))]
    parts = [Msg("email.ask")]
    if current:
        parts.append(Msg("email.current", {"email": current}))
        choices.insert(0, Choice("keep", Msg("common.keep")))
    return Message(tuple(parts), (*choices, BACK, CANCEL))


async def _ask_review(state: State, ctx: Context) -> Message:
    draft = state.draft
    parts = [Msg("review.title", {"number": draft.get("number", "—")})]
    for holder in await ctx.registry.holders_by_phone(str(state.data.get("phone", ""))):
        parts.append(
            Msg("review.applicant", {"name": holder.full_name, "fin": validate.mask_fin(holder.fin)})
        )
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
    parts.append(Msg("review.description", {"text": draft.get("description", "")}))
    parts.append(Msg("review.photo_yes" if draft.get("photo") else "review.photo_no"))
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
    apps = await ctx.applications.list_mine(ctx.subscriber, state.data.get("phone"))
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
        ctx.subscriber, state.data.get("phone"), int(state.data["view_app"])
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
    if app.result:
        parts.append(Msg("app.result", {"text": app.result}))
    if app.due_at is not None and app.open:
        parts.append(Msg("app.due", {"date": app.due_at}))
    parts.append(Msg("app.write_hint"))
    choices = [Choice("cancel_app", Msg("app.cancel"))] if app.cancellable else []
    return Message(tuple(parts), (*choices, BACK))


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
    Step.DESCRIPTION: StepRule(_on_description, _ask_description),
    Step.ATTACHMENTS: StepRule(_on_attachments, _ask_attachments),
    Step.MOBILE: StepRule(_on_mobile, _ask_mobile),
    Step.EXTRA_PHONES: StepRule(_on_extra_phones, _ask_extra_phones),
    Step.EMAIL: StepRule(_on_email, _ask_email),
    Step.REVIEW: StepRule(_on_review, _ask_review),
    Step.MY_LIST: StepRule(_on_my_list, _ask_my_list),
    Step.APP_DETAIL: StepRule(_on_app_detail, _ask_app_detail),
    Step.CONFIRM_CANCEL: StepRule(_on_confirm_cancel, _ask_confirm_cancel),
}


# ---- helpers: small pure functions over State ---------------------------------------------------


def _park(state: State) -> State:
    """Leave the application flow but remember where, so the menu can offer to resume.

    An edit in progress stays one: resuming it returns to the review card when done.
    """
    step = _return_step(state) if state.step == Step.LANGUAGE else state.step
    if step in FLOW and state.draft:
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
        navigation.append(Choice(f"page:{page - 1}", Msg("common.prev")))
    if page < pages - 1:
        navigation.append(Choice(f"page:{page + 1}", Msg("common.next", {"page": page + 2, "pages": pages})))
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
    for candidate in (state.draft.get("mobile"), state.data.get("own_phone"), state.data.get("phone")):
        if candidate and validate.is_az_mobile(str(candidate)):
            return str(candidate)
    return None


async def _accounts(state: State, ctx: Context) -> Sequence[AccountView]:
    return await ctx.registry.accounts_by_phone(str(state.data.get("phone", "")))
