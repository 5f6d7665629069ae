"""The catalogs: every key the code uses is in az, ru and en, with the same placeholders."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from babel.messages.pofile import read_po

from dialogs.catalog import EDITABLE, REASONS
from dialogs.lifecycle import NEEDS_RESULT, Status
from locales import CATALOG_DIR, LANGUAGES, MissingMessage, Msg, catalog, placeholders, translate

ROOT = Path(__file__).parents[1]
SOURCE = [ROOT / folder for folder in ("isiqbot", "bot", "dialogs", "storage", "locales")]
# A literal key in a call that makes a message: Msg("x.y"), note("x.y"), self.t("x.y"), …
KEY_CALL = re.compile(r"""(?:Msg|note|\.t|IllegalTransition|Invalid|DialogError)\(\s*"([a-z_]+\.[a-z_]+)\"""")
# Keys that are the same in every language on purpose: formats, names of languages, emoji labels.
SAME_EVERYWHERE = {
    # Layout only: the words in them are other messages, put in place.
    "staff.open_line",
    "staff.find_line",
    "staff.stats_line",
    "staff.stats_title",
    "staff.card_status",  # "Status" is the Azerbaijani word too
    "email.when",
    "staff.via_sms",
    "wa.use_my_number",  # the phone number itself
    "page.when",
    "menu.lang",
    "lang.name_az",
    "lang.name_ru",
    "lang.name_en",
    "account.residential",
    "mp.label",
    "my.line",
    "my.open",
    "app.history_line",
    "terminal.sms",
    "terminal.staff_line",
    "terminal.staff_history",
    "visit.window",  # the window itself, in numbers
}
AZ_LETTERS = set("əğıöüçşƏĞİÖÜÇŞ")


def keys_in_code() -> set[str]:
    keys = set()
    for path in (path for folder in SOURCE for path in folder.rglob("*.py")):
        keys |= set(KEY_CALL.findall(path.read_text(encoding="utf-8")))
    keys |= {f"reason.{r}" for r in REASONS}
    keys |= {f"status.{s.value}" for s in Status}
    keys |= {f"lang.name_{code}" for code in LANGUAGES}
    keys |= {f"review.edit_{name}" for name in EDITABLE}
    keys |= {"notify.status", "notify.status_result", "identify.otp_wrong"}
    keys |= {f"app.result_{s.value}" for s in NEEDS_RESULT} | {f"result.{s.value}" for s in NEEDS_RESULT}
    keys |= {"notify.status_refused"}
    return keys


def test_code_keys_are_found() -> None:
    keys = keys_in_code()
    assert len(keys) > 100
    assert "identify.ask_phone" in keys and "review.send" in keys


@pytest.mark.parametrize("lang", LANGUAGES)
def test_every_key_used_in_code_is_in_the_catalog(lang: str) -> None:
    missing = sorted(keys_in_code() - set(catalog(lang)))
    assert not missing, f"missing from {lang}: {missing}"


def test_catalogs_hold_the_same_keys_as_the_template() -> None:
    with (CATALOG_DIR / "messages.pot").open("rb") as handle:
        template = {str(m.id) for m in read_po(handle) if m.id}
    for lang in LANGUAGES:
        assert set(catalog(lang)) == template, lang


def test_placeholders_agree_between_languages() -> None:
    for key, az in catalog("az").items():
        for lang in ("ru", "en"):
            assert placeholders(catalog(lang)[key]) == placeholders(az), (key, lang)


def test_no_message_is_left_untranslated() -> None:
    az, ru, en = (catalog(lang) for lang in LANGUAGES)

    def words(text: str) -> bool:
        return bool(re.search(r"[A-Za-z]{3}", re.sub(r"\{\w+\}", "", text)))

    for key in az:
        if key in SAME_EVERYWHERE:
            continue
        assert az[key] != en[key] or not words(az[key]), key
        assert ru[key] != en[key] or not words(ru[key]), key


def test_azerbaijani_is_written_with_its_letters() -> None:
    az = catalog("az")
    sentences = [text for key, text in az.items() if key not in SAME_EVERYWHERE and len(text) > 40]
    with_letters = [text for text in sentences if AZ_LETTERS & set(text)]
    assert len(with_letters) == len(sentences), set(sentences) - set(with_letters)


def test_russian_is_in_cyrillic() -> None:
    for key, text in catalog("ru").items():
        if key not in SAME_EVERYWHERE and len(text) > 20:
            assert re.search(r"[А-Яа-яЁё]", text), key


@pytest.mark.parametrize("lang", LANGUAGES)
def test_every_message_renders(lang: str) -> None:
    for key, template in catalog(lang).items():
        params = {name: "X" for name in placeholders(template)}
        assert translate(Msg(key, params), lang)


def test_a_missing_key_fails_loudly() -> None:
    with pytest.raises(MissingMessage):
        translate(Msg("no.such_key"), "az")


def test_nested_messages_are_translated_in_the_same_language() -> None:
    msg = Msg("notify.status", {"number": "TX-2026-000001", "status": Msg("status.in_progress")})
    assert translate(msg, "az") == "ℹ️ TX-2026-000001 nömrəli müraciətinizin statusu: icradadır."
    assert translate(msg, "ru") == "ℹ️ Статус вашей заявки № TX-2026-000001: в работе."
    assert translate(msg, "en") == "ℹ️ Your application TX-2026-000001 is now: in progress."


def test_subscriber_text_in_parameters_is_not_a_template() -> None:
    msg = Msg("review.description", {"text": "{number} {0} {__class__}"})
    assert translate(msg, "az") == "Təsvir: {number} {0} {__class__}"


def test_times_are_shown_in_baku_even_when_the_database_dropped_the_zone() -> None:
    from datetime import UTC, datetime

    naive = datetime(2026, 11, 27, 9, 0)  # how SQLite hands back 09:00 UTC
    aware = naive.replace(tzinfo=UTC)
    assert (
        translate(Msg("app.history_line", {"date": naive, "status": "x"}), "az") == "• 27.11.2026 13:00 — x"
    )
    assert (
        translate(Msg("app.history_line", {"date": aware, "status": "x"}), "az") == "• 27.11.2026 13:00 — x"
    )
