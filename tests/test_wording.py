"""The catalogs' wording: the bot speaks in one polite voice, "we", and names codes as the portal does.

The bot is "we" ("biz", "мы"), never "I" ("mən", "я"), whether it talks to a subscriber or to staff.
An account is named by its code, as on the e-gov.az form and the bill: "abonent kodu" (residential)
or "Baş kod" (non-residential); "hesab" / "счёт" are not the portal's words for it ("счёт" is also
the bill, which is "квитанция").
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from babel.messages.pofile import read_po

LOCALES = Path(__file__).parents[1] / "locales"
LANGUAGES = ("az", "ru", "en")

# Labels where the person who presses them speaks, not the bot, in every language they are in.
# Nobody else is quoted in the catalogs: what subscribers and staff write arrives only through
# placeholders, which are taken out before the check.
NOT_THE_BOT = {
    "identify.share_button": "the subscriber's button: «📱 Nömrəmi göndər» / «Share my number»",
    "menu.resume": "the subscriber's button: «Back to my unfinished application»",
    "reason.no_power": "the reason the subscriber picks: «No power at my premises»",
    "outage.watch": "the subscriber's button: «🔔 Tell me when power is back»",
    "outage.file": "the subscriber's button: «📝 Yenə də müraciət etmək istəyirəm»",
    "staff.btn_take": "a staff member's button: «🙋 Götürürəm» / «🙋 Беру» / «🙋 I'll take it»",
}
# The portal's name of the list of one's applications, in the subscriber's voice like a button.
SECTION = {"az": "Müraciətlərim", "ru": "Мои заявки", "en": "My applications"}

# Azerbaijani first person singular: pronouns, and verb endings that only a verb has (present
# -ıram/-irəm/-uram/-ürəm, aorist -aram/-ərəm, future -acağam/-əcəyəm, perfect -mışam/-mişəm,
# past -dım/-dim/-dum/-düm). Nouns with a past-like ending are let through by name.
AZ_FIRST_PERSON = re.compile(
    r"\b(?:mən|məni|mənə|məndə|məndən|mənim|özüm)\b"
    r"|\b\w+(?:ır|ir|ur|ür)(?:am|əm)\b"
    r"|\b\w+(?:ar|ər)(?:am|əm)\b"
    r"|\b\w+(?:acağ|əcəy)(?:am|əm)\b"
    r"|\b\w+(?:mış|miş|muş|müş)(?:am|əm)\b"
    r"|\b\w+(?:dı|di|du|dü|tı|ti|tu|tü)m\b",
    re.IGNORECASE,
)
AZ_NOUNS = {"addım", "adım", "qədim", "artım", "satım", "kodum", "müddətim"}
# Russian: the pronouns, and verbs the bot would say of itself ("я отправил", "могу").
RU_FIRST_PERSON = re.compile(
    r"\b(?:я|мне|меня|мной|мой|моя|моё|мои|моего|моей|моих|могу|смогу|хочу|знаю|вижу|понимаю|буду)\b"
    r"|(?<!абонент )(?<!сотрудник )\b(?:отправил|сделал|нашёл|нашел|получил|проверил|записал|передал"
    r"|понял|прочитал|прочёл)а?\b",
    re.IGNORECASE,
)
EN_FIRST_PERSON = re.compile(r"\bI(?:'m|'ve|'ll|'d)?\b|\b(?:me|my|mine|myself)\b", re.IGNORECASE)
FIRST_PERSON = {"az": AZ_FIRST_PERSON, "ru": RU_FIRST_PERSON, "en": EN_FIRST_PERSON}

# "hesab" in any form names an account; "hesab-faktura" is a bill and "hesablamaq" is to count.
AZ_ACCOUNT = re.compile(r"\bhesab(?!-faktura|lan|lam|lad|lay)\w*", re.IGNORECASE)
RU_ACCOUNT = re.compile(r"\bсч[её]т(?:а|у|ом|е|ы|ов|ам|ами|ах)?\b", re.IGNORECASE)  # not "счётчик"


def messages(lang: str) -> dict[str, str]:
    with (LOCALES / lang / "LC_MESSAGES" / "messages.po").open("rb") as handle:
        return {str(m.id): str(m.string) for m in read_po(handle, locale=lang) if m.id and m.string}


def spoken(lang: str, text: str) -> str:
    """What the bot itself says: without quoted labels, placeholders, commands and the section's name."""
    text = re.sub(r"«[^»]*»", " ", text)
    text = re.sub(r"\{\w+\}", " ", text)
    text = re.sub(r"/\w+", " ", text)
    return re.sub(re.escape(SECTION[lang]), " ", text, flags=re.IGNORECASE)


def first_person(lang: str, text: str) -> list[str]:
    found = [m.group() for m in FIRST_PERSON[lang].finditer(spoken(lang, text))]
    return [word for word in found if lang != "az" or word.lower() not in AZ_NOUNS]


@pytest.mark.parametrize("lang", LANGUAGES)
def test_the_bot_says_we_and_never_i(lang: str) -> None:
    said_by_i = {
        "az": "Bu növ mesajı oxuya bilmirəm. Kodu göndərdim, mən gözləyəcəyəm, baxaram.",
        "ru": "Такие сообщения я не могу прочитать. Отправил код. Мне не удалось.",
        "en": "I cannot read this. I've sent it; let me check my list.",
    }[lang]
    said_by_us = {
        "az": "Telegram-da «📱 Nömrəmi göndər» basın: növbəti addım. Müraciətlərim. Proqram. Bayram.",
        "ru": "Абонент отправил фото. Неисправен счётчик. «Отправить мой номер». /my — Мои заявки.",
        "en": "We will send it. Press «Share my number» or /my. My applications. Item, time, timer.",
    }[lang]
    assert len(first_person(lang, said_by_i)) >= 3 and first_person(lang, said_by_us) == [], lang
    offending = {
        key: first_person(lang, text)
        for key, text in messages(lang).items()
        if key not in NOT_THE_BOT and first_person(lang, text)
    }
    assert not offending, f"{lang}: the bot speaks as «I» in {offending}"


@pytest.mark.parametrize(("lang", "pattern"), [("az", AZ_ACCOUNT), ("ru", RU_ACCOUNT)])
def test_an_account_is_named_by_its_code_not_hesab_or_schyot(lang: str, pattern: re.Pattern[str]) -> None:
    wrong = {"az": "Hesab: 1; hansı hesaba; Hesabınız; hesabı", "ru": "Счёт: 1; к какому счёту; счета; счет"}
    right = {"az": "Abonent kodu / Baş kod; hesablanır", "ru": "Код абонента; счётчик; квитанция"}
    assert len(pattern.findall(wrong[lang])) == 4 and not pattern.findall(right[lang])
    named = {key: pattern.findall(text) for key, text in messages(lang).items() if pattern.search(text)}
    assert not named, f"{lang}: an account is called «hesab»/«счёт» in {named}"
