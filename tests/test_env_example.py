"""`.env.example` lists every setting of DESIGN.md, and a copy of it is a working configuration."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bot.core.settings import DEFAULT_DATABASE_URL, Settings
from tests.chat import ALL_SETTINGS as SETTINGS

ROOT = Path(__file__).parents[1]
EVERY_SETTING = set(SETTINGS)


def test_every_setting_is_listed_with_a_comment() -> None:
    lines = (ROOT / ".env.example").read_text(encoding="utf-8").splitlines()
    listed = {m.group(1) for line in lines if (m := re.match(r"^([A-Z_]+)=", line))}
    assert listed == EVERY_SETTING
    for index, line in enumerate(lines):
        if re.match(r"^[A-Z_]+=", line):
            above = [x for x in lines[:index] if x.strip()]
            assert above and (above[-1].startswith("#") or re.match(r"^[A-Z_]+=", above[-1])), line


def test_a_copy_of_the_example_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in EVERY_SETTING:
        monkeypatch.delenv(name, raising=False)
    env_file = tmp_path / ".env"
    env_file.write_text((ROOT / ".env.example").read_text(encoding="utf-8"), encoding="utf-8")
    settings = Settings(env_file=env_file)
    assert settings.database.database_url == DEFAULT_DATABASE_URL
    assert settings.telegram.bot_token is None and settings.staff.staff_chat_id is None
    assert not settings.whatsapp.enabled and settings.smtp.host is None
    assert settings.http.http_port == 8080
