"""Who is writing: the steps that tie a chat to a phone on file before an application begins.

    ASK_PHONE ─own contact on file→ identified
        │  └─typed phone on file→ ASK_OTP ─right code→ identified
        └─"by code" / not on file→ ASK_CODE ─subscriber code→ ASK_OTP

A typed phone or a code proves nothing, so it gets a one-time SMS code to the phone on file; only a
contact the platform vouches for is trusted as it is. The limits on codes are kept by `ctx.codes`, not
in the state, so /cancel, /new or a second chat do not reset them.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime, timedelta

from dialogs import validate
from dialogs.errors import DialogError, Invalid
from dialogs.events import Contact, Event, Pressed, Text
from dialogs.ports import Context
from dialogs.replies import BACK, CANCEL, Choice, Message, Notes, Request, note
from dialogs.state import State, Step
from locales import Msg

OTP_TTL = timedelta(minutes=5)
OTP_TRIES = 3
OTP_RESEND_AFTER = timedelta(seconds=60)
OTP_MAX_PER_HOUR = 5  # codes to one phone
OTP_MAX_PER_CHAT = 10  # codes asked for from one chat, to any phones
MAX_PHONES = 5  # phones one chat may speak for (a family, a landlord): enough, and not a directory

IDENTIFY_STEPS = frozenset({Step.ASK_PHONE, Step.ASK_CODE, Step.ASK_OTP})


# ---- step handlers ------------------------------------------------------------------------------


async def on_phone(state: State, event: Event, ctx: Context) -> tuple[State, Notes]:
    if isinstance(event, Pressed) and event.choice == "by_code":
        return state.go(Step.ASK_CODE), ()
    if isinstance(event, Contact):
        return await _shared_contact(state, event, ctx)
    if isinstance(event, Text):
        try:
            phone = validate.any_phone(event.text)
        except Invalid as err:
            raise Invalid(Msg("identify.phone_hint")) from err
        if phone in confirmed(state):  # confirmed before in this chat: nothing more to prove
            return await identified(state, phone, ctx)
        _room_for(state, phone)
        if await ctx.registry.accounts_by_phone(phone):
            return await send_otp(state, phone, via="phone", ctx=ctx)
        return state.go(Step.ASK_CODE), (note("identify.phone_unknown"),)
    raise Invalid(Msg("identify.phone_hint"))


async def _shared_contact(state: State, event: Contact, ctx: Context) -> tuple[State, Notes]:
    """The platform vouches for the sender's own number: no code is needed when it is on file."""
    if not event.own:
        raise Invalid(Msg("identify.contact_not_own"))
    try:
        phone = validate.any_phone(event.phone)
    except Invalid:
        return state.go(Step.ASK_CODE), (note("identify.phone_unknown"),)
    if await ctx.registry.accounts_by_phone(phone):
        _room_for(state, phone)
        return await identified(state.with_data(own_phone=phone), phone, ctx)
    return state.with_data(own_phone=phone).go(Step.ASK_CODE), (note("identify.phone_unknown"),)


async def on_code(state: State, event: Event, ctx: Context) -> tuple[State, Notes]:
    if not isinstance(event, Text):
        raise Invalid(Msg("identify.code_hint"))
    code = validate.account_code(event.text)
    phone = await ctx.registry.phone_for_code(code)
    if phone is None:
        raise Invalid(Msg("identify.code_unknown"))
    _room_for(state, phone)
    return await send_otp(state, phone, via="code", ctx=ctx)


async def on_otp(state: State, event: Event, ctx: Context) -> tuple[State, Notes]:
    otp = dict(state.data.get("otp") or {})
    if isinstance(event, Pressed) and event.choice == "resend":
        return await send_otp(state, otp["phone"], via=otp.get("via", "code"), ctx=ctx)
    if not isinstance(event, Text):
        raise Invalid(Msg("identify.otp_hint"))
    code = validate.otp(event.text)
    expires = _parse_time(otp.get("expires"))
    if expires is None or ctx.now > expires:
        raise DialogError(Msg("identify.otp_expired"))
    if int(otp.get("tries") or 0) <= 0:
        return state, ()  # the question says it: only a new code helps now
    if not hmac.compare_digest(_otp_hash(otp["salt"], code), otp["hash"]):
        otp["tries"] = int(otp["tries"]) - 1
        if otp["tries"] <= 0:
            return state.with_data(otp=otp), ()  # the question says the tries are over, once
        return state.with_data(otp=otp), (note("identify.otp_wrong", tries=otp["tries"]),)
    return await identified(state.with_data(otp=None), otp["phone"], ctx)


def _room_for(state: State, phone: str) -> None:
    """A chat that speaks for MAX_PHONES phones may use them, but not add one more."""
    phones = confirmed(state)
    if phone not in phones and len(phones) >= MAX_PHONES:
        raise DialogError(Msg("identify.phones_full", {"max": MAX_PHONES}))


# ---- one-time codes and what follows them --------------------------------------------------------


async def send_otp(state: State, phone: str, via: str, ctx: Context) -> tuple[State, Notes]:
    """Text a fresh code to `phone` and wait for it; `via` is how the phone was found, for "back"."""
    await _check_code_limits(phone, ctx)
    code = f"{secrets.randbelow(10**validate.OTP_LENGTH):0{validate.OTP_LENGTH}d}"
    salt = secrets.token_hex(8)
    otp = {
        "phone": phone,
        "via": via,
        "salt": salt,
        "hash": _otp_hash(salt, code),
        "sent_at": ctx.now.isoformat(),
        "expires": (ctx.now + OTP_TTL).isoformat(),
        "tries": OTP_TRIES,
    }
    await ctx.codes.record(phone, ctx.subscriber, ctx.now)
    await ctx.sms.send(
        phone, Msg("sms.otp", {"code": code, "minutes": int(OTP_TTL.total_seconds() // 60)}), state.lang
    )
    return state.go(Step.ASK_OTP, otp=otp), ()


async def _check_code_limits(phone: str, ctx: Context) -> None:
    """Refuse a code too many to this phone or from this chat, or one sooner than a resend may go."""
    hour_ago = ctx.now - timedelta(hours=1)
    sent = await ctx.codes.sent_to(phone, hour_ago)
    if (
        len(sent) >= OTP_MAX_PER_HOUR
        or await ctx.codes.count_by(ctx.subscriber, hour_ago) >= OTP_MAX_PER_CHAT
    ):
        ctx.codes.refused()
        raise DialogError(Msg("identify.otp_too_many"))
    if sent and ctx.now - sent[-1] < OTP_RESEND_AFTER:
        ctx.codes.refused()
        wait = int((OTP_RESEND_AFTER - (ctx.now - sent[-1])).total_seconds()) + 1
        raise DialogError(Msg("identify.resend_wait", {"seconds": wait}))


async def identified(state: State, phone: str, ctx: Context) -> tuple[State, Notes]:
    """The chat speaks for `phone` now: greet its holders, then the application or the link that waited."""
    holders = await ctx.registry.holders_by_phone(phone)
    accounts = await ctx.registry.accounts_by_phone(phone)
    if accounts and all(a.company for a in accounts):  # a company's phone: its VÖEN, not a person's FİN
        notes = tuple(note("identify.welcome_name", name=h.full_name) for h in holders)
    else:
        notes = tuple(
            note("identify.welcome", name=h.full_name, fin=validate.mask_fin(h.fin)) for h in holders
        )
    phones = confirmed(state)
    state = state.with_data(
        phone=phones[0] if phones else phone,
        phones=[*phones, phone] if phone not in phones else phones,
        from_account=None,
    )
    link_app = state.data.get("link_app")
    if link_app is not None:
        state = state.with_data(link_app=None)
        if await ctx.applications.get_mine(ctx.subscriber, phone, int(link_app)) is None:
            return state.go(Step.MENU), (*notes, note("link.not_yours"))
        return state.go(Step.APP_DETAIL, view_app=int(link_app)), notes
    if "draft" not in state.data:
        state = state.with_data(draft={})
    return state.go(Step.ACCOUNT), notes


# ---- questions ----------------------------------------------------------------------------------


async def ask_phone(state: State, ctx: Context) -> Message:
    return Message(
        (Msg("identify.ask_phone"),),
        (Choice("by_code", Msg("identify.by_code")), BACK, CANCEL),
        request=Request.CONTACT,
    )


async def ask_code(state: State, ctx: Context) -> Message:
    return Message((Msg("identify.ask_code"),), (BACK, CANCEL))


async def ask_otp(state: State, ctx: Context) -> Message:
    otp = state.data.get("otp") or {}
    if int(otp.get("tries", OTP_TRIES)) <= 0:  # no more tries with this code: only a new one helps
        return Message(
            (Msg("identify.otp_ask_new"),), (Choice("resend", Msg("identify.resend")), BACK, CANCEL)
        )
    text = Msg(
        "identify.ask_otp",
        {
            "phone": validate.mask_phone(str(otp.get("phone", ""))),
            "minutes": int(OTP_TTL.total_seconds() // 60),
        },
    )
    return Message((text,), (Choice("resend", Msg("identify.resend")), BACK, CANCEL))


# ---- helpers ------------------------------------------------------------------------------------


def confirmed(state: State) -> list[str]:
    """The phones this chat has confirmed, the first one first."""
    phones = [str(p) for p in state.data.get("phones") or []]
    first = state.data.get("phone")
    return phones if phones else ([str(first)] if first else [])


def _otp_hash(salt: str, code: str) -> str:
    return hashlib.sha256(f"{salt}:{code}".encode()).hexdigest()


def _parse_time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None
