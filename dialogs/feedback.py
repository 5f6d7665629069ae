"""After the result: the subscriber rates a completed application, or reopens it, from its page in
"My applications".

    APP_DETAIL ─rate→ RATE_STARS ─1…5→ RATE_COMMENT ─text / skip→ APP_DETAIL
        └─reopen→ REOPEN_REASON ─text→ APP_DETAIL (reopened: back with the department)

The rating is stored once, with its comment, when the comment is given or skipped; a low one reaches
the department's thread (`notices.rated`). Reopening is offered within REOPEN_DAYS of the completion,
once; the department's thread hears it with the reason. A button that no longer fits (rated from
another chat meanwhile, the window closed) is explained by `why_not` rather than called stale.
"""

from __future__ import annotations

from datetime import datetime

from dialogs import identify, notices, validate
from dialogs.errors import Invalid
from dialogs.events import Event, Pressed, Text
from dialogs.ports import ApplicationView, Context
from dialogs.replies import BACK, Choice, Message, Notes, note
from dialogs.state import State, Step
from locales import Msg

STARS = range(1, 6)
STAR_LABELS = (
    Msg("rating.stars_1"),
    Msg("rating.stars_2"),
    Msg("rating.stars_3"),
    Msg("rating.stars_4"),
    Msg("rating.stars_5"),
)
LOW = notices.LOW_RATING  # a rating this low is told to the department, and the thanks say so
RATE = Choice("rate", Msg("rating.rate"))  # on a completed application's page until it is rated
REOPEN = Choice("reopen", Msg("reopen.button"))  # on a completed application's page, within the window


async def viewed(state: State, ctx: Context) -> ApplicationView | None:
    """The application the subscriber has open, if it is still theirs to see."""
    app_id = state.data.get("view_app")
    if not isinstance(app_id, int):
        return None
    return await ctx.applications.get_mine(ctx.subscriber, identify.confirmed(state), app_id)


def after_result(app: ApplicationView, now: datetime) -> tuple[list[Msg], list[Choice]]:
    """What a closed application's page adds: rate it until it is rated, reopen it while it may be."""
    lines: list[Msg] = []
    choices = [RATE] if app.rateable else []
    if app.reopenable(now):
        lines.append(Msg("reopen.until", {"date": app.reopen_until}))
        choices.append(REOPEN)
    return lines, choices


def why_not(app: ApplicationView | None, choice: str, now: datetime) -> Msg | None:
    """Why a button of these that is no longer shown may not be pressed; None: it is simply stale."""
    if choice not in (RATE.id, REOPEN.id):
        return None
    if app is None:
        return Msg("app.not_found")
    if choice == REOPEN.id:
        return _why_not_reopen(app)
    if app.stars is not None:
        return Msg("rating.already", {"number": app.number, "stars": app.stars})
    return Msg("rating.not_completed", {"number": app.number})


def _why_not_reopen(app: ApplicationView) -> Msg:
    if app.reopened:
        return Msg("reopen.already", {"number": app.number})
    if app.reopen_until is None:  # not completed (any more)
        return Msg("reopen.not_completed", {"number": app.number})
    return Msg("reopen.too_late", {"number": app.number})  # the one reason left: the window closed


async def explain(state: State, choice: str, ctx: Context) -> Msg | None:
    """Why a button the current question no longer shows was pressed in vain, when we can say it."""
    if state.step == Step.APP_DETAIL:
        return why_not(await viewed(state, ctx), choice, ctx.now)
    if state.step == Step.RATE_STARS and choice.startswith("stars:"):  # not one of the five
        return Msg("rating.stars_range", {"min": STARS[0], "max": STARS[-1]})
    return None


# ---- step handlers ------------------------------------------------------------------------------


async def on_stars(state: State, event: Event, ctx: Context) -> tuple[State, Notes]:
    if isinstance(event, Pressed) and event.choice.startswith("stars:"):
        return state.go(Step.RATE_COMMENT, rate_stars=int(event.choice.removeprefix("stars:"))), ()
    if isinstance(event, Text):  # a number typed instead of pressed: fine, if it is one of the five
        typed = validate.clean_text(event.text)
        if typed.isdigit() and int(typed) in STARS:
            return state.go(Step.RATE_COMMENT, rate_stars=int(typed)), ()
        if typed.lstrip("-+").isdigit():
            raise Invalid(Msg("rating.stars_range", {"min": STARS[0], "max": STARS[-1]}))
    raise Invalid(Msg("rating.stars_hint"))


async def on_comment(state: State, event: Event, ctx: Context) -> tuple[State, Notes]:
    if isinstance(event, Pressed) and event.choice == "skip":
        return await _store(state, None, ctx)
    if isinstance(event, Text):
        return await _store(state, validate.comment(event.text), ctx)
    raise Invalid(Msg("rating.comment_hint", {"max": validate.COMMENT_MAX}))


async def _store(state: State, comment: str | None, ctx: Context) -> tuple[State, Notes]:
    """The rating, once: a second one (from another chat, say) leaves the first as it was."""
    stars = state.data.get("rate_stars")
    app = await viewed(state, ctx)
    back = state.go(Step.APP_DETAIL, rate_stars=None)
    if app is None:
        return state.go(Step.MY_LIST, rate_stars=None), (note("app.not_found"),)
    if not app.rateable:  # rated from another chat meanwhile, or no longer completed
        return back, (Message((why_not(app, RATE.id, ctx.now) or Msg("app.not_found"),)),)
    if not isinstance(stars, int) or stars not in STARS:  # a stored state from before a change: ask again
        return state.go(Step.RATE_STARS, rate_stars=None), ()
    if not await ctx.applications.rate(ctx.subscriber, app.id, stars, comment):
        again = await viewed(state, ctx)
        return back, (Message((why_not(again, RATE.id, ctx.now) or Msg("app.not_found"),)),)
    key = "rating.thanks_low" if stars <= LOW else "rating.thanks"
    return back, (note(key, number=app.number),)


async def on_reopen(state: State, event: Event, ctx: Context) -> tuple[State, Notes]:
    """The reason typed: the application is reopened, and goes back to its department."""
    if not isinstance(event, Text):
        raise Invalid(Msg("reopen.hint"))
    reason = validate.reopen_reason(event.text)
    app = await viewed(state, ctx)
    if app is None:
        return state.go(Step.MY_LIST), (note("app.not_found"),)
    back = state.go(Step.APP_DETAIL)
    if not app.reopenable(ctx.now):  # the window closed while they wrote, or another chat reopened it
        return back, (Message((why_not(app, REOPEN.id, ctx.now) or Msg("app.not_found"),)),)
    await ctx.applications.reopen(app.id, reason, actor=f"subscriber:{ctx.subscriber.channel}")
    return back, (note("reopen.done", number=app.number),)


# ---- questions ----------------------------------------------------------------------------------


async def ask_stars(state: State, ctx: Context) -> Message:
    app = await viewed(state, ctx)
    if app is None or not app.rateable:
        return Message((why_not(app, RATE.id, ctx.now) or Msg("app.not_found"),), (BACK,))
    choices = tuple(Choice(f"stars:{n}", label) for n, label in zip(STARS, STAR_LABELS, strict=True))
    return Message((Msg("rating.ask", {"number": app.number}),), (*choices, BACK))


async def ask_comment(state: State, ctx: Context) -> Message:
    stars = state.data.get("rate_stars")
    shown = STAR_LABELS[stars - 1] if isinstance(stars, int) and stars in STARS else "—"
    params = {"stars": shown, "max": validate.COMMENT_MAX}
    return Message((Msg("rating.ask_comment", params),), (Choice("skip", Msg("rating.skip")), BACK))


async def ask_reopen(state: State, ctx: Context) -> Message:
    app = await viewed(state, ctx)
    if app is None or not app.reopenable(ctx.now):
        return Message((why_not(app, REOPEN.id, ctx.now) or Msg("app.not_found"),), (BACK,))
    limits = {"number": app.number, "min": validate.DESCRIPTION_MIN, "max": validate.DESCRIPTION_MAX}
    return Message((Msg("reopen.ask", limits),), (BACK,))
