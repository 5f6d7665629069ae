"""Checks and normal forms for what subscribers type; each failure names the message to show."""

from __future__ import annotations

import re
import unicodedata

import phonenumbers
from email_validator import EmailNotValidError, validate_email

from dialogs.errors import Invalid
from locales import Msg

DESCRIPTION_MIN = 10
MESSAGE_MAX = 2000
DESCRIPTION_MAX = 1000
COMMENT_MAX = 500  # a rating's comment
MAX_EXTRA_PHONES = 2
OTP_LENGTH = 6

# Bidirectional overrides can disguise what staff read; other format characters (emoji joiners) are fine.
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c")
_ALLOWED_CONTROLS = frozenset("\n\t")
_SCRIPTS = ("LATIN", "CYRILLIC")
_CODE_RE = re.compile(r"^[0-9]{6,20}$")
_MOBILE_TYPES = (phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE)


def _check_characters(text: str) -> None:
    for ch in text:
        category = unicodedata.category(ch)
        # Cs: half of a surrogate pair (a broken emoji from a client), which no database can store.
        if ch in _BIDI_CONTROLS or category == "Cs" or (category == "Cc" and ch not in _ALLOWED_CONTROLS):
            raise Invalid(Msg("error.control_characters"))


def clean_text(text: str) -> str:
    """NFC-normalised text without surrounding space and with Windows line ends folded."""
    return unicodedata.normalize("NFC", text.replace("\r\n", "\n").replace("\r", "\n")).strip()


def description(text: str) -> str:
    """A problem description: 10–1,000 characters, in words, in a script staff can read."""
    value = clean_text(text)
    _check_characters(value)
    if len(value) < DESCRIPTION_MIN:
        raise Invalid(Msg("error.description_short", {"min": DESCRIPTION_MIN}))
    if len(value) > DESCRIPTION_MAX:
        raise Invalid(Msg("error.description_long", {"max": DESCRIPTION_MAX, "length": len(value)}))
    letters = [ch for ch in value if ch.isalpha()]
    if any(not unicodedata.name(ch, "").startswith(_SCRIPTS) for ch in letters):
        raise Invalid(Msg("error.script"))
    if len(letters) < 3:
        raise Invalid(Msg("error.description_words"))
    return value


# A reopened application's reason is checked as a description is, and explained in its own words.
_REASON_ERRORS = {
    "error.description_short": "reopen.reason_short",
    "error.description_long": "reopen.reason_long",
    "error.description_words": "reopen.reason_words",
}


def reopen_reason(text: str) -> str:
    """Why a completed application is reopened: what a description may be, 10–1,000 characters."""
    try:
        return description(text)
    except Invalid as exc:
        key = _REASON_ERRORS.get(exc.msg.key)
        if key is None:
            raise
        raise Invalid(Msg(key, exc.msg.params)) from None


def message(text: str) -> str:
    """A message to the department: 1–2,000 characters of readable text."""
    value = clean_text(text)
    _check_characters(value)
    if not value:
        raise Invalid(Msg("error.message_empty"))
    if len(value) > MESSAGE_MAX:
        raise Invalid(Msg("error.message_long", {"max": MESSAGE_MAX, "length": len(value)}))
    return value


def comment(text: str) -> str:
    """A rating's comment: 1–500 characters in a script staff read (shown as plain text, never markup)."""
    value = clean_text(text)
    _check_characters(value)
    if not value:
        raise Invalid(Msg("rating.comment_empty"))
    if len(value) > COMMENT_MAX:
        raise Invalid(Msg("rating.comment_long", {"max": COMMENT_MAX, "length": len(value)}))
    if any(ch.isalpha() and not unicodedata.name(ch, "").startswith(_SCRIPTS) for ch in value):
        raise Invalid(Msg("error.script"))  # the department reads it
    return value


def _parse_az(text: str) -> phonenumbers.PhoneNumber:
    value = clean_text(text)
    _check_characters(value)
    # phonenumbers reads letters as keypad digits ("50 FOR SALE"); a number is digits and punctuation.
    if not value or len(value) > 32 or any(ch.isalpha() for ch in value):
        raise Invalid(Msg("error.phone_format"))
    try:
        number = phonenumbers.parse(value, "AZ")
    except phonenumbers.NumberParseException as exc:
        raise Invalid(Msg("error.phone_format")) from exc
    if not phonenumbers.is_valid_number(number):
        raise Invalid(Msg("error.phone_format"))
    if phonenumbers.region_code_for_number(number) != "AZ":
        raise Invalid(Msg("error.phone_not_az"))
    return number


def e164(number: phonenumbers.PhoneNumber) -> str:
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def mobile(text: str) -> str:
    """An Azerbaijani mobile number in E.164 (+994XXXXXXXXX)."""
    number = _parse_az(text)
    if phonenumbers.number_type(number) not in _MOBILE_TYPES:
        raise Invalid(Msg("error.phone_not_mobile"))
    return e164(number)


def any_phone(text: str) -> str:
    """An Azerbaijani number, mobile or fixed line, in E.164."""
    return e164(_parse_az(text))


_PHONE_SEPARATORS = re.compile(r"[,;/\n]|\s(?:və|ve|и|and|or|или|yaxud|ya da)\s", re.IGNORECASE)


def phones(text: str, limit: int = MAX_EXTRA_PHONES + 1) -> list[str]:
    """One or more Azerbaijani numbers on a line ("050 123 45 67, 077 123 45 67"), in E.164, once each."""
    pieces = [piece.strip() for piece in _PHONE_SEPARATORS.split(clean_text(text)) if piece.strip()]
    if len(pieces) > limit:
        raise Invalid(Msg("error.phones_many", {"max": limit}))
    found: list[str] = []
    for piece in pieces or [""]:
        phone = any_phone(piece)
        if phone not in found:
            found.append(phone)
    return found


def is_az_mobile(value: str) -> bool:
    try:
        mobile(value)
    except Invalid:
        return False
    return True


def display_phone(value: str) -> str:
    """+994 50 123 45 67."""
    try:
        number = phonenumbers.parse(value, "AZ")
    except phonenumbers.NumberParseException:
        return value
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL)


def email(text: str) -> str:
    """A syntactically valid e-mail address, normalised (no DNS look-up: the chat must stay fast)."""
    value = clean_text(text)
    _check_characters(value)
    if not value or len(value) > 254:
        raise Invalid(Msg("error.email"))
    try:
        result = validate_email(value, check_deliverability=False)
    except EmailNotValidError as exc:
        raise Invalid(Msg("error.email")) from exc
    return str(result.normalized)


def account_code(text: str) -> str:
    """A subscriber code or main code as digits; spaces and dashes people type are dropped."""
    value = re.sub(r"[\s\-]", "", clean_text(text))
    if not _CODE_RE.fullmatch(value):
        raise Invalid(Msg("error.code_format"))
    return value


def otp(text: str) -> str:
    value = re.sub(r"\s", "", clean_text(text))
    if not re.fullmatch(rf"[0-9]{{{OTP_LENGTH}}}", value):
        raise Invalid(Msg("error.otp_format", {"length": OTP_LENGTH}))
    return value


def mask_fin(fin: str) -> str:
    """5AB7K2Q → 5A*****: enough for a person to recognise their own, useless to anyone else."""
    return fin[:2] + "*" * max(len(fin) - 2, 0)


def mask_phone(phone: str) -> str:
    """+994501234567 → +994 50 ***-**-67, for texts and logs."""
    digits = re.sub(r"\D", "", phone)
    if len(digits) == 12 and digits.startswith("994"):
        return f"+994 {digits[3:5]} ***-**-{digits[-2:]}"
    return "*" * max(len(digits) - 2, 0) + digits[-2:]


def mask_email(value: str) -> str:
    """elcin.m@example.az → e***@example.az."""
    local, _, domain = value.partition("@")
    return f"{local[:1]}***@{domain}" if domain else "***"
