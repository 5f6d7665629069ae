"""Message catalogs and the one way a text key becomes a sentence in a person's language.

Every sentence a person sees is a key in the gettext catalogs beside this file (`az`, the default, `ru`
and `en`). Code never holds the sentence itself, only a `Msg`: the key and its parameters.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from functools import cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from babel.dates import format_date, format_datetime
from babel.messages.pofile import read_po

LANGUAGES: tuple[str, ...] = ("az", "ru", "en")
DEFAULT_LANGUAGE = "az"
LOCAL_TZ = ZoneInfo("Asia/Baku")
CATALOG_DIR = Path(__file__).parent


@dataclass(frozen=True, slots=True)
class Msg:
    """A sentence to show, as a catalog key and its parameters (nested `Msg`s are translated too)."""

    key: str
    params: Mapping[str, object] = field(default_factory=dict)


class MissingMessage(KeyError):
    """A key that is not in a catalog: a programming error, caught by the catalog tests."""


def normalize_language(code: str | None) -> str:
    """Map a platform language code (`ru-RU`, `en`, `tr`…) to one we speak; anything else is az."""
    if not code:
        return DEFAULT_LANGUAGE
    base = code.strip().lower().replace("_", "-").split("-")[0]
    return base if base in LANGUAGES else DEFAULT_LANGUAGE


@cache
def catalog(lang: str) -> dict[str, str]:
    """The translated messages of one language, read once from its .po file."""
    path = CATALOG_DIR / lang / "LC_MESSAGES" / "messages.po"
    with path.open("rb") as handle:
        po = read_po(handle, locale=lang)
    return {str(m.id): str(m.string) for m in po if m.id and m.string}


def placeholders(template: str) -> set[str]:
    """The names of the `{placeholders}` a template uses."""
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


def _format_param(value: object, lang: str) -> str:
    if isinstance(value, Msg):
        return translate(value, lang)
    if isinstance(value, datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=UTC)  # we store UTC; SQLite drops the zone
        return format_datetime(aware.astimezone(LOCAL_TZ), "dd.MM.yyyy HH:mm", locale=lang)
    if isinstance(value, date):
        return format_date(value, "dd.MM.yyyy", locale=lang)
    return str(value)


def translate(msg: Msg, lang: str) -> str:
    """Render `msg` in `lang` (unknown languages fall back to az)."""
    if lang not in LANGUAGES:
        lang = DEFAULT_LANGUAGE
    try:
        template = catalog(lang)[msg.key]
    except KeyError as exc:
        raise MissingMessage(f"{msg.key!r} is not in the {lang} catalog") from exc
    if not msg.params:
        return template
    return template.format_map({k: _format_param(v, lang) for k, v in msg.params.items()})


def payload_msg(payload: dict[str, Any]) -> Msg:
    """A stored notification payload back into a `Msg` (`{"$msg": key}` values become nested messages)."""
    params = {
        name: Msg(value["$msg"]) if isinstance(value, dict) and "$msg" in value else value
        for name, value in (payload.get("params") or {}).items()
    }
    return Msg(str(payload.get("key", "")), params)
