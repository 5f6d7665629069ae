"""Which department serves which region, and its staff chat: read from the TOML file of DEPARTMENTS_FILE.

A bad file is refused at start with every problem listed, one per line; see departments.example.toml.
"""

from __future__ import annotations

import difflib
import json
import re
import string
import tomllib
import unicodedata
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

FALLBACK_KEY = "default"
LANGS = ("az", "ru", "en")
FALLBACK_NAMES: Mapping[str, str] = MappingProxyType(
    {
        "az": "Texniki xidmət şöbəsi",
        "ru": "Отдел технического обслуживания",
        "en": "Technical service department",
    }
)
MAX_NAME = 100
MAX_REPLIES = 12  # canned replies offered in a department's chat: one button each
MAX_REPLY_TITLE = 40
MAX_REPLY_TEXT = 1000
REPLY_FIELDS = ("number",)  # what a canned reply may name: {number}, the application's number

_KEY = re.compile(r"[a-z0-9_-]{1,32}")
_TOP_KEYS = ("departments", "fallback_staff", "fallback_admins_may_act", "replies")
_DEPARTMENT_KEYS = ("name", "chat_id", "staff", "regions", "admins_may_act", "lang", "replies")
_REPLY_KEYS = ("title", "text")


def _fold(text: str) -> str:
    """Region text for comparison: NFC, spaces squeezed, lower case by Azerbaijani rules (İ→i, I→ı)."""
    text = unicodedata.normalize("NFC", text)
    text = text.replace("İ", "i").replace("I", "ı").casefold().replace("i\u0307", "i")
    return " ".join(text.split())


@dataclass(frozen=True, slots=True)
class Reply:
    """A canned reply: a button title for staff, and the text a subscriber gets in their language."""

    key: str
    titles: Mapping[str, str] = field(hash=False)
    texts: Mapping[str, str] = field(hash=False)

    def title(self, lang: str) -> str:
        return self.titles.get(lang) or self.titles["az"]

    def text(self, lang: str, number: str) -> str:
        """The text in `lang` (else Azerbaijani), with the application's number filled in."""
        return (self.texts.get(lang) or self.texts["az"]).format(number=number)  # checked when read


@dataclass(frozen=True, slots=True)
class Department:
    """One department: its names, its staff chat, the staff who may act, and the regions it serves."""

    key: str
    names: Mapping[str, str] = field(hash=False)
    chat_id: int
    staff: frozenset[int]
    regions: tuple[str, ...]
    admins_may_act: bool = False
    lang: str = "az"
    replies: tuple[Reply, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "names", MappingProxyType(dict(self.names)))
        object.__setattr__(self, "staff", frozenset(self.staff))
        object.__setattr__(self, "regions", tuple(self.regions))

    def name(self, lang: str) -> str:
        """The name in lang, else in Azerbaijani, else any name there is, else the key."""
        return self.names.get(lang) or self.names.get("az") or next(iter(self.names.values()), self.key)

    def reply(self, key: str) -> Reply | None:
        return next((r for r in self.replies if r.key == key), None)


class DepartmentsError(Exception):
    """DEPARTMENTS_FILE cannot be used; the message has one line per problem, each naming the file."""

    def __init__(self, source: str, problems: Sequence[str]) -> None:
        self.source = source
        self.problems = tuple(problems)
        super().__init__("\n".join(f"{source}: {problem}" for problem in self.problems))


class Departments:
    """The departments of the file, plus the fallback department of STAFF_CHAT_ID when it is set."""

    def __init__(
        self,
        departments: Sequence[Department],
        fallback_chat_id: int | None,
        *,
        fallback_staff: Iterable[int] = (),
        fallback_admins_may_act: bool = False,
        fallback_replies: Sequence[Reply] = (),
    ) -> None:
        self._departments = tuple(departments)
        self._by_key: dict[str, Department] = {}
        self._by_region: dict[str, Department] = {}
        self._by_chat: dict[int, Department] = {}
        for department in self._departments:
            if department.key == FALLBACK_KEY or department.key in self._by_key:
                raise ValueError(f"department key {department.key!r} is reserved or used twice")
            if department.chat_id in self._by_chat:
                other = self._by_chat[department.chat_id].key
                raise ValueError(
                    f"chat {department.chat_id} belongs to departments {other!r} and {department.key!r}"
                )
            self._by_key[department.key] = department
            self._by_chat[department.chat_id] = department
            for region in department.regions:
                folded = _fold(region)
                if folded in self._by_region:
                    other = self._by_region[folded].key
                    raise ValueError(
                        f"region {region!r} is served by departments {other!r} and {department.key!r}"
                    )
                self._by_region[folded] = department
        self._fallback: Department | None = None
        if fallback_chat_id is not None:
            staff = frozenset(fallback_staff).union(*(d.staff for d in self._departments))
            self._fallback = Department(
                key=FALLBACK_KEY,
                names=FALLBACK_NAMES,
                chat_id=fallback_chat_id,
                staff=staff,
                regions=(),
                admins_may_act=fallback_admins_may_act,
                replies=tuple(fallback_replies),
            )
            self._by_key[FALLBACK_KEY] = self._fallback
            self._by_chat.setdefault(fallback_chat_id, self._fallback)  # a department with this chat wins

    @classmethod
    def load(cls, path: Path | None, fallback_chat_id: int | None) -> Departments:
        """The departments of the file at path; None means no file: only the fallback department."""
        if path is None:
            return cls([], fallback_chat_id)
        source = f"DEPARTMENTS_FILE {path}"
        try:
            text = path.read_text(encoding="utf-8-sig")
        except UnicodeDecodeError as exc:
            raise DepartmentsError(source, [f"not UTF-8 text ({exc.reason} at byte {exc.start})"]) from None
        except OSError as exc:
            raise DepartmentsError(source, [f"cannot be read: {exc.strerror or exc}"]) from None
        return cls.parse(text, fallback_chat_id, source)

    @classmethod
    def parse(cls, text: str, fallback_chat_id: int | None, source: str = "DEPARTMENTS_FILE") -> Departments:
        """The departments described by the TOML text; DepartmentsError lists everything wrong with it."""
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise DepartmentsError(source, [f"not valid TOML: {_one_line(str(exc))}"]) from None
        except RecursionError:
            raise DepartmentsError(source, ["not valid TOML: nested too deeply"]) from None
        problems: list[str] = []
        for key in data:
            if key not in _TOP_KEYS:
                problems.append(f"unknown top-level key {_quote(key)}{_did_you_mean(key, _TOP_KEYS)}")
        fallback_staff = _staff(data.get("fallback_staff", []), "fallback_staff", problems, may_be_empty=True)
        fallback_admins = _flag(data, "fallback_admins_may_act", "fallback_admins_may_act", problems)
        shared = _replies(data.get("replies", {}), "replies", problems)
        departments = _departments(data.get("departments"), problems, shared)
        if problems:
            raise DepartmentsError(source, problems)
        return cls(
            departments,
            fallback_chat_id,
            fallback_staff=fallback_staff,
            fallback_admins_may_act=fallback_admins,
            fallback_replies=shared,
        )

    @property
    def fallback(self) -> Department | None:
        """The department of STAFF_CHAT_ID, for regions no department serves; None when it is not set."""
        return self._fallback

    def for_region(self, region: str | None) -> Department | None:
        """The department serving region, else the fallback department, else None."""
        if region is not None:
            found = self._by_region.get(_fold(region))
            if found is not None:
                return found
        return self.fallback

    def by_key(self, key: str) -> Department | None:
        """The department with this key ("default" is the fallback department)."""
        return self._by_key.get(key)

    def by_chat(self, chat_id: int) -> Department | None:
        """The department whose staff chat this is; a department wins over the fallback on a shared chat."""
        return self._by_chat.get(chat_id)

    @property
    def chats(self) -> frozenset[int]:
        """Every staff chat id, the fallback's included."""
        return frozenset(self._by_chat)

    def __iter__(self) -> Iterator[Department]:
        return iter(self._departments)

    def __len__(self) -> int:
        return len(self._departments)

    def __repr__(self) -> str:
        keys = ", ".join(d.key for d in self._departments)
        fallback = self.fallback.chat_id if self.fallback else None
        return f"Departments([{keys}], fallback_chat_id={fallback})"


def _departments(table: Any, problems: list[str], shared: Sequence[Reply] = ()) -> list[Department]:
    """Every valid department of the [departments] table; what is wrong goes to problems."""
    if table is None:
        problems.append("no [departments] table: describe at least one department, e.g. [departments.baki]")
        return []
    if not isinstance(table, dict):
        problems.append(f"departments must be a table of [departments.<key>] tables, not {_show(table)}")
        return []
    if not table:
        problems.append("[departments] is empty: describe at least one department, e.g. [departments.baki]")
        return []
    found: list[Department] = []
    region_owner: dict[str, str] = {}
    chat_owner: dict[int, str] = {}
    for key, value in table.items():
        department = _department(key, value, problems, region_owner, chat_owner, shared)
        if department is not None:
            found.append(department)
    return found


def _department(
    key: str,
    value: Any,
    problems: list[str],
    region_owner: dict[str, str],
    chat_owner: dict[int, str],
    shared: Sequence[Reply] = (),
) -> Department | None:
    """The department of one [departments.<key>] table, or None (with problems) if it is not valid.

    region_owner and chat_owner hold the departments read so far, to refuse a region or chat given twice;
    what parsed well in a department with other problems is checked too, so that all is reported at once.
    """
    where = f"department {_quote(key)}"
    before = len(problems)
    _check_key(key, where, problems)
    if not isinstance(value, dict):
        problems.append(f"{where}: must be a table of name, chat_id, staff, regions..., not {_show(value)}")
        return None
    for name in value:
        if name not in _DEPARTMENT_KEYS:
            problems.append(f"{where}: unknown key {_quote(name)}{_did_you_mean(name, _DEPARTMENT_KEYS)}")
    admins_may_act = _flag(value, "admins_may_act", f"{where}: admins_may_act", problems)
    names = _names(value.get("name"), where, problems)
    chat_id = _chat_id(value.get("chat_id"), where, problems)
    staff = _department_staff(value, where, problems, admins_may_act=admins_may_act)
    regions = _regions(value.get("regions"), where, problems)
    own = _replies(value.get("replies", {}), f"{where}: replies", problems)
    replies = [*own, *(r for r in shared if r.key not in {o.key for o in own})]  # its own first
    if len(replies) > MAX_REPLIES:
        problems.append(f"{where}: {len(replies)} replies with the shared ones; at most {MAX_REPLIES}")
    lang = value.get("lang", "az")
    if lang not in LANGS:
        problems.append(f"{where}: lang must be one of az, ru, en, not {_show(lang)}")
    _claim_regions(key, where, regions, region_owner, problems)
    _claim_chat(key, where, chat_id, chat_owner, problems)
    if len(problems) > before or chat_id is None:  # a chat_id of None has its problem listed already
        return None
    return Department(
        key=key,
        names=names,
        chat_id=chat_id,
        staff=staff,
        regions=regions,
        admins_may_act=admins_may_act,
        lang=lang,
        replies=tuple(replies),
    )


def _replies(table: Any, where: str, problems: list[str]) -> list[Reply]:
    """The canned replies of a [replies.<key>] table (title and text in az, ru, en)."""
    if not isinstance(table, dict):
        problems.append(f"{where} must be a table of [replies.<key>] tables, not {_show(table)}")
        return []
    found: list[Reply] = []
    for key, value in table.items():
        here = f"{where} {_quote(key)}"
        before = len(problems)
        if not _KEY.fullmatch(key):
            problems.append(f"{here}: the key must be 1-32 characters of a-z, 0-9, _ and -")
        if not isinstance(value, dict):
            problems.append(f"{here}: must be a table of title and text, not {_show(value)}")
            continue
        for name in value:
            if name not in _REPLY_KEYS:
                problems.append(f"{here}: unknown key {_quote(name)}{_did_you_mean(name, _REPLY_KEYS)}")
        titles = _texts(value.get("title"), f"{here}: title", MAX_REPLY_TITLE, problems)
        texts = _texts(value.get("text"), f"{here}: text", MAX_REPLY_TEXT, problems)
        for lang, text in texts.items():
            for _, name, spec, conversion in _fields(text, f"{here}: text.{lang}", problems):
                if name is not None and (name not in REPLY_FIELDS or spec or conversion):
                    shown = (
                        "{"
                        + name
                        + (f"!{conversion}" if conversion else "")
                        + (f":{spec}" if spec else "")
                        + "}"
                    )
                    problems.append(f"{here}: text.{lang} has {shown}; only {{number}} is filled in")
        if len(problems) == before:
            found.append(Reply(key, titles, texts))
    if len(table) > MAX_REPLIES:
        problems.append(f"{where}: {len(table)} replies; at most {MAX_REPLIES}")
    return found


def _fields(
    text: str, what: str, problems: list[str]
) -> list[tuple[str, str | None, str | None, str | None]]:
    """The placeholders of a text, as `string.Formatter` reads them; a stray brace is a problem."""
    try:
        return list(string.Formatter().parse(text))
    except ValueError:
        problems.append(f"{what} has a stray {{ or }}: write {{number}} for the number, {{{{ for a brace")
        return []


def _texts(value: Any, what: str, limit: int, problems: list[str]) -> dict[str, str]:
    """A table { az = ..., ru = ..., en = ... } of non-empty texts of at most `limit` characters."""
    if not isinstance(value, dict):
        shown = "missing" if value is None else f"not {_show(value)}"
        problems.append(f"{what} must be a table {{ az = ..., ru = ..., en = ... }}, {shown}")
        return {}
    texts: dict[str, str] = {}
    for lang in value:
        if lang not in LANGS:
            problems.append(f"{what} has unknown language {_quote(lang)} (only az, ru, en)")
    for lang in LANGS:
        text = value.get(lang)
        if not isinstance(text, str) or not text.strip():
            problems.append(f"{what}.{lang} is missing or empty")
        elif len(text.strip()) > limit:
            problems.append(f"{what}.{lang} is longer than {limit} characters")
        else:
            texts[lang] = unicodedata.normalize("NFC", text.strip())
    return texts


def _check_key(key: str, where: str, problems: list[str]) -> None:
    if key == FALLBACK_KEY:
        problems.append(f'{where}: the key "{FALLBACK_KEY}" is reserved for the STAFF_CHAT_ID department')
    elif not _KEY.fullmatch(key):
        problems.append(f"{where}: the key must be 1-32 characters of a-z, 0-9, _ and -")


def _flag(table: dict[str, Any], key: str, what: str, problems: list[str]) -> bool:
    """A true-or-false setting of the table, false when it is not given (or not true or false)."""
    value = table.get(key, False)
    if isinstance(value, bool):
        return value
    problems.append(f"{what} must be true or false, not {_show(value)}")
    return False


def _chat_id(value: Any, where: str, problems: list[str]) -> int | None:
    """The staff group's id; None when it is missing or not one (the problem says which)."""
    if value is None:
        problems.append(f"{where}: chat_id is missing (the staff group's id, e.g. -1001234567890)")
    elif not isinstance(value, int) or isinstance(value, bool):
        problems.append(f"{where}: chat_id must be an integer such as -1001234567890, not {_show(value)}")
    elif value == 0:
        problems.append(f"{where}: chat_id must not be 0")
    else:
        return value
    return None


def _department_staff(
    value: dict[str, Any], where: str, problems: list[str], *, admins_may_act: bool
) -> frozenset[int]:
    """The staff who may act; a department whose chat admins may act needs no list, but may have one."""
    if "staff" in value or not admins_may_act:
        return _staff(value.get("staff"), f"{where}: staff", problems, may_be_empty=admins_may_act)
    return frozenset()


def _claim_regions(
    key: str, where: str, regions: Sequence[str], region_owner: dict[str, str], problems: list[str]
) -> None:
    """Mark the regions as served by department `key`; a region an earlier department serves is a problem."""
    for region in regions:
        owner = region_owner.setdefault(_fold(region), key)
        if owner != key:
            problems.append(
                f"{where}: region {_quote(region)} is already served by department {_quote(owner)}"
            )


def _claim_chat(
    key: str, where: str, chat_id: int | None, chat_owner: dict[int, str], problems: list[str]
) -> None:
    """Mark the chat as department `key`'s; the staff chat of an earlier department is a problem."""
    if chat_id is None:
        return
    owner = chat_owner.setdefault(chat_id, key)
    if owner != key:
        problems.append(f"{where}: chat_id {chat_id} is already the staff chat of department {_quote(owner)}")


def _names(value: Any, where: str, problems: list[str]) -> dict[str, str]:
    if value is None:
        problems.append(f"{where}: name is missing (name = {{ az = ..., ru = ..., en = ... }})")
        return {}
    if not isinstance(value, dict):
        problems.append(
            f"{where}: name must be a table {{ az = ..., ru = ..., en = ... }}, not {_show(value)}"
        )
        return {}
    names: dict[str, str] = {}
    for lang in value:
        if lang not in LANGS:
            problems.append(f"{where}: name has unknown language {_quote(lang)} (only az, ru, en)")
    for lang in LANGS:
        text = value.get(lang)
        if text is None:
            problems.append(f"{where}: name.{lang} is missing")
        elif not isinstance(text, str):
            problems.append(f"{where}: name.{lang} must be text, not {_show(text)}")
        elif not text.strip():
            problems.append(f"{where}: name.{lang} is empty")
        elif len(text.strip()) > MAX_NAME:
            problems.append(f"{where}: name.{lang} is longer than {MAX_NAME} characters")
        else:
            names[lang] = unicodedata.normalize("NFC", text.strip())
    return names


def _staff(value: Any, what: str, problems: list[str], *, may_be_empty: bool) -> frozenset[int]:
    """Telegram user ids: a list of positive integers."""
    if value is None:
        problems.append(f"{what} is missing (the Telegram user ids of the staff, e.g. [100001, 100002])")
        return frozenset()
    if not isinstance(value, list):
        problems.append(f"{what} must be a list of Telegram user ids, not {_show(value)}")
        return frozenset()
    bad = [item for item in value if not isinstance(item, int) or isinstance(item, bool) or item <= 0]
    if bad:
        problems.append(f"{what} must hold positive integers (Telegram user ids), not {_show(bad[0])}")
        return frozenset()
    if not value and not may_be_empty:
        problems.append(f"{what} is empty: list the staff's Telegram user ids, or set admins_may_act = true")
    return frozenset(value)


def _regions(value: Any, where: str, problems: list[str]) -> tuple[str, ...]:
    if value is None:
        problems.append(f'{where}: regions is missing (e.g. regions = ["Xətai", "Yasamal"])')
        return ()
    if not isinstance(value, list):
        problems.append(f"{where}: regions must be a list of region names, not {_show(value)}")
        return ()
    if not value:
        problems.append(f"{where}: regions is empty: list the regions the department serves")
        return ()
    regions: list[str] = []
    seen: set[str] = set()
    for item in value:
        if not isinstance(item, str):
            problems.append(f"{where}: regions must hold region names (text), not {_show(item)}")
        elif not _fold(item):
            problems.append(f"{where}: regions holds an empty region name")
        elif _fold(item) in seen:
            problems.append(f"{where}: region {_quote(item)} is listed twice")
        else:
            seen.add(_fold(item))
            regions.append(" ".join(unicodedata.normalize("NFC", item).split()))
    return tuple(regions)


def _quote(text: str) -> str:
    """Text in double quotes on one line, control characters escaped, cut when long."""
    if len(text) > 40:
        text = text[:40] + "…"
    return json.dumps(text, ensure_ascii=False)


def _show(value: Any) -> str:
    """A TOML value for a message, the way an operator wrote it, on one short line."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return _quote(value)
    if isinstance(value, int | float):
        return _one_line(repr(value))[:40]
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a table"
    return f"a {type(value).__name__} ({_one_line(str(value))[:40]})"


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _did_you_mean(word: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1)
    allowed = ", ".join(choices)
    return f" (did you mean {close[0]}?)" if close else f" (allowed: {allowed})"
