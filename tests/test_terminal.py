"""The terminal channel's mapping of typed lines to events, and its rendering."""

from __future__ import annotations

import math

from bot.channels.terminal import parse_input, render
from dialogs.events import Command, Contact, Location, Photo, Pressed, Text
from dialogs.replies import Choice, Message, Request
from locales import Msg

QUESTION = Message(
    (Msg("reason.ask"),),
    (Choice("reason:no_power", Msg("reason.no_power")), Choice("back", Msg("common.back"))),
    request=Request.LOCATION,
)


def test_a_number_presses_that_button_of_the_current_question() -> None:
    assert parse_input("1\n", QUESTION, 7) == Pressed("reason:no_power", 7)
    assert parse_input(" 2 ", QUESTION, 7) == Pressed("back", 7)


def test_numbers_that_are_not_buttons_are_text() -> None:
    for line in ("0", "3", "²", "١", "168808605066007", "-1"):
        assert parse_input(line, QUESTION, 7) == Text(line)


def test_stand_ins_for_platform_buttons() -> None:
    assert parse_input("/contact +994 50 111 22 33", QUESTION, 1) == Contact("+994 50 111 22 33", own=True)
    assert parse_input("/photo sayğac.jpg", QUESTION, 1) == Photo("terminal:sayğac.jpg")
    assert parse_input("/location 40,41 49.87", QUESTION, 1) == Location(40.41, 49.87)
    broken = parse_input("/location here", QUESTION, 1)
    assert isinstance(broken, Location) and math.isnan(broken.latitude)
    assert parse_input("/LANG ru", QUESTION, 1) == Command("lang", "ru")
    assert parse_input("/", QUESTION, 1) == Text("/")


def test_render_numbers_the_choices_and_adds_the_hint() -> None:
    shown = render(QUESTION, "az")
    assert shown.splitlines()[0] == "Müraciətin səbəbini seçin:"
    assert "/location 40.41 49.87" in shown
    assert shown.splitlines()[-2:] == ["  1. 🔌 İşıq yoxdur", "  2. ⬅️ Geri"]
