"""Settings from the environment: the defaults, secrets kept out of sight, impossible combinations refused."""

from __future__ import annotations

import re
import subprocess
from ipaddress import IPv4Network, IPv6Network
from pathlib import Path

import pytest
from pydantic import SecretStr

from bot.core.settings import DEFAULT_DATABASE_URL, Settings, SettingsError
from tests.chat import ALL_SETTINGS
from tests.processes import isiqbot_env, run_isiqbot

ALL_VARS = ALL_SETTINGS

WEBHOOK = "https://bot.azerisiq.az/telegram/webhook"
BOT_TOKEN = "7301234567:AAH-bot-token-do-not-leak"
WEBHOOK_SECRET = "webhook_secret-do-not-leak"
WHATSAPP_FULL = {
    "WHATSAPP_TOKEN": "EAAG-whatsapp-token-do-not-leak",
    "WHATSAPP_PHONE_NUMBER_ID": "109876543210987",
    "WHATSAPP_APP_SECRET": "app-secret-do-not-leak",
    "WHATSAPP_VERIFY_TOKEN": "verify-token-do-not-leak",
}
SECRETS = {
    "TELEGRAM_BOT_TOKEN": BOT_TOKEN,
    "TELEGRAM_WEBHOOK_SECRET": WEBHOOK_SECRET,
    "WHATSAPP_TOKEN": WHATSAPP_FULL["WHATSAPP_TOKEN"],
    "WHATSAPP_APP_SECRET": WHATSAPP_FULL["WHATSAPP_APP_SECRET"],
    "WHATSAPP_VERIFY_TOKEN": WHATSAPP_FULL["WHATSAPP_VERIFY_TOKEN"],
    "SMS_GATEWAY_TOKEN": "sms-token-do-not-leak",
    "SMTP_PASSWORD": "smtp-password-do-not-leak",
}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No setting from the machine running the tests, and no `.env` in the working folder."""
    for name in ALL_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


def setenv(monkeypatch: pytest.MonkeyPatch, values: dict[str, str]) -> None:
    for name, value in values.items():
        monkeypatch.setenv(name, value)


def load() -> Settings:
    return Settings(env_file=None)


def refused(monkeypatch: pytest.MonkeyPatch, values: dict[str, str]) -> str:
    setenv(monkeypatch, values)
    with pytest.raises(SettingsError) as caught:
        load()
    return str(caught.value)


def test_defaults() -> None:
    settings = load()
    assert settings.database.database_url == DEFAULT_DATABASE_URL == "sqlite+aiosqlite:///./data/isiqbot.db"
    assert (settings.http.http_host, settings.http.http_port) == ("127.0.0.1", 8080)
    assert settings.http.public_base_url == "http://127.0.0.1:8080"
    assert settings.http.log_level == "INFO"
    assert settings.telegram.api_url == "https://api.telegram.org"
    assert settings.telegram.bot_token is None
    assert settings.telegram.webhook_url is None  # long polling
    assert settings.telegram.webhook_secret is None
    assert settings.whatsapp.api_url == "https://graph.facebook.com/v21.0"
    assert settings.whatsapp.enabled is False
    assert settings.sms.gateway_url is None  # SMS go to the log
    assert settings.smtp.host is None  # e-mails go to the log
    assert settings.smtp.port == 587
    assert settings.staff.staff_chat_id is None
    assert settings.staff.departments_file is None


def test_a_full_configuration_is_read(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    departments = tmp_path / "departments.yaml"
    departments.write_text("Nəsimi: -1001234567890\n", encoding="utf-8")
    setenv(
        monkeypatch,
        {
            "DATABASE_URL": "postgresql+asyncpg://isiqbot:pw@db.internal:5432/isiqbot",
            "TELEGRAM_BOT_TOKEN": BOT_TOKEN,
            "TELEGRAM_API_URL": "http://127.0.0.1:8081/",
            "TELEGRAM_WEBHOOK_URL": WEBHOOK,
            "TELEGRAM_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "STAFF_CHAT_ID": "-1001234567890",
            "DEPARTMENTS_FILE": str(departments),
            **WHATSAPP_FULL,
            "WHATSAPP_API_URL": "http://127.0.0.1:8082/v21.0/",
            "SMS_GATEWAY_URL": "https://sms.example.az/api/send",
            "SMS_GATEWAY_TOKEN": SECRETS["SMS_GATEWAY_TOKEN"],
            "SMS_SENDER": "Azerisiq",
            "SMTP_HOST": "smtp.example.az",
            "SMTP_PORT": "465",
            "SMTP_USER": "bot@azerisiq.az",
            "SMTP_PASSWORD": SECRETS["SMTP_PASSWORD"],
            "SMTP_FROM": "Azərişıq <bot@azerisiq.az>",
            "PUBLIC_BASE_URL": "https://bot.azerisiq.az/",
            "HTTP_HOST": "0.0.0.0",
            "HTTP_PORT": "9000",
            "LOG_LEVEL": "WARNING",
        },
    )
    s = load()
    assert s.database.database_url.startswith("postgresql+asyncpg://")
    assert s.telegram.api_url == "http://127.0.0.1:8081"  # no trailing slash: `{url}/bot{token}/...`
    assert s.telegram.webhook_url == WEBHOOK
    assert s.staff.staff_chat_id == -1001234567890
    assert s.staff.departments_file == departments
    assert s.whatsapp.enabled is True
    assert s.whatsapp.phone_number_id == "109876543210987"
    assert s.whatsapp.api_url == "http://127.0.0.1:8082/v21.0"
    assert s.sms.gateway_url == "https://sms.example.az/api/send"
    assert s.sms.sender == "Azerisiq"
    assert (s.smtp.host, s.smtp.port, s.smtp.user, s.smtp.from_) == (
        "smtp.example.az",
        465,
        "bot@azerisiq.az",
        "Azərişıq <bot@azerisiq.az>",
    )
    assert s.http.public_base_url == "https://bot.azerisiq.az"
    assert (s.http.http_host, s.http.http_port, s.http.log_level) == ("0.0.0.0", 9000, "WARNING")
    secrets = {
        "TELEGRAM_BOT_TOKEN": s.telegram.bot_token,
        "TELEGRAM_WEBHOOK_SECRET": s.telegram.webhook_secret,
        "WHATSAPP_TOKEN": s.whatsapp.token,
        "WHATSAPP_APP_SECRET": s.whatsapp.app_secret,
        "WHATSAPP_VERIFY_TOKEN": s.whatsapp.verify_token,
        "SMS_GATEWAY_TOKEN": s.sms.gateway_token,
        "SMTP_PASSWORD": s.smtp.password,
    }
    for name, value in secrets.items():
        assert isinstance(value, SecretStr), name
        assert value.get_secret_value() == SECRETS[name]


def test_secrets_do_not_show_in_repr_or_str(monkeypatch: pytest.MonkeyPatch) -> None:
    setenv(
        monkeypatch,
        {
            **SECRETS,
            "TELEGRAM_WEBHOOK_URL": WEBHOOK,
            "WHATSAPP_PHONE_NUMBER_ID": "109876543210987",
            "SMTP_HOST": "smtp.example.az",
            "SMTP_USER": "bot@azerisiq.az",
            "SMTP_FROM": "bot@azerisiq.az",
            "SMS_GATEWAY_URL": "https://sms.example.az/api/send",
        },
    )
    s = load()
    shown = [repr(s), str(s), repr(vars(s))]
    for concern in (s.database, s.telegram, s.whatsapp, s.sms, s.smtp, s.staff, s.http):
        shown += [repr(concern), str(concern), concern.model_dump_json(), f"{concern}"]
    for text in shown:
        for name, secret in SECRETS.items():
            assert secret not in text, f"{name} shows in {text!r}"
    assert "**********" in repr(s.telegram)


CASES: list[tuple[str, dict[str, str], list[str]]] = [
    (
        "webhook-without-token",
        {"TELEGRAM_WEBHOOK_URL": WEBHOOK, "TELEGRAM_WEBHOOK_SECRET": WEBHOOK_SECRET},
        ["TELEGRAM_BOT_TOKEN"],
    ),
    (
        "webhook-without-secret",
        {"TELEGRAM_WEBHOOK_URL": WEBHOOK, "TELEGRAM_BOT_TOKEN": BOT_TOKEN},
        ["TELEGRAM_WEBHOOK_SECRET"],
    ),
    (
        "webhook-over-http",
        {
            "TELEGRAM_WEBHOOK_URL": "http://bot.azerisiq.az/telegram/webhook",
            "TELEGRAM_BOT_TOKEN": BOT_TOKEN,
            "TELEGRAM_WEBHOOK_SECRET": WEBHOOK_SECRET,
        },
        ["TELEGRAM_WEBHOOK_URL"],
    ),
    ("webhook-secret-with-space", {"TELEGRAM_WEBHOOK_SECRET": "gizli söz!"}, ["TELEGRAM_WEBHOOK_SECRET"]),
    ("webhook-secret-with-slash", {"TELEGRAM_WEBHOOK_SECRET": "abc/def+ghi="}, ["TELEGRAM_WEBHOOK_SECRET"]),
    ("webhook-secret-too-long", {"TELEGRAM_WEBHOOK_SECRET": "a" * 257}, ["TELEGRAM_WEBHOOK_SECRET"]),
    ("telegram-api-url-no-scheme", {"TELEGRAM_API_URL": "api.telegram.org"}, ["TELEGRAM_API_URL"]),
    ("whatsapp-api-url-no-scheme", {"WHATSAPP_API_URL": "graph.facebook.com"}, ["WHATSAPP_API_URL"]),
    ("smtp-host-without-from", {"SMTP_HOST": "smtp.example.az"}, ["SMTP_FROM"]),
    (
        "smtp-user-without-password",
        {"SMTP_HOST": "smtp.example.az", "SMTP_FROM": "bot@azerisiq.az", "SMTP_USER": "bot"},
        ["SMTP_PASSWORD"],
    ),
    ("smtp-port-0", {"SMTP_PORT": "0"}, ["SMTP_PORT"]),
    ("database-mysql", {"DATABASE_URL": "mysql://isiqbot:pw@db.internal/isiqbot"}, ["DATABASE_URL"]),
    ("database-sync-postgres", {"DATABASE_URL": "postgresql://db.internal/isiqbot"}, ["DATABASE_URL"]),
    ("database-sync-sqlite", {"DATABASE_URL": "sqlite:///./data/isiqbot.db"}, ["DATABASE_URL"]),
    ("sms-gateway-ftp", {"SMS_GATEWAY_URL": "ftp://sms.example.az/send"}, ["SMS_GATEWAY_URL"]),
    ("sms-gateway-no-scheme", {"SMS_GATEWAY_URL": "sms.example.az/send"}, ["SMS_GATEWAY_URL"]),
    ("public-base-url-no-scheme", {"PUBLIC_BASE_URL": "bot.azerisiq.az"}, ["PUBLIC_BASE_URL"]),
    ("http-port-0", {"HTTP_PORT": "0"}, ["HTTP_PORT"]),
    ("http-port-70000", {"HTTP_PORT": "70000"}, ["HTTP_PORT"]),
    ("http-port-words", {"HTTP_PORT": "səkkiz min"}, ["HTTP_PORT"]),
    ("staff-chat-id-words", {"STAFF_CHAT_ID": "staff"}, ["STAFF_CHAT_ID"]),
    ("departments-file-missing", {"DEPARTMENTS_FILE": "/nowhere/departments.yaml"}, ["DEPARTMENTS_FILE"]),
    ("log-level-unknown", {"LOG_LEVEL": "verbose"}, ["LOG_LEVEL"]),
    ("link-secret-short", {"LINK_SECRET": "abc/def+ghi="}, ["LINK_SECRET"]),
]


@pytest.mark.parametrize(("values", "named"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_impossible_settings_are_refused(
    monkeypatch: pytest.MonkeyPatch, values: dict[str, str], named: list[str]
) -> None:
    message = refused(monkeypatch, values)
    for name in named:
        assert name in message
    for secret in (BOT_TOKEN, WEBHOOK_SECRET, "gizli söz!", "abc/def+ghi=", "pw@"):
        assert secret not in message  # the reason, never the value


@pytest.mark.parametrize(
    "given",
    [
        ["WHATSAPP_TOKEN"],
        ["WHATSAPP_TOKEN", "WHATSAPP_PHONE_NUMBER_ID"],
        ["WHATSAPP_APP_SECRET", "WHATSAPP_VERIFY_TOKEN"],
        ["WHATSAPP_TOKEN", "WHATSAPP_PHONE_NUMBER_ID", "WHATSAPP_APP_SECRET"],
        ["WHATSAPP_VERIFY_TOKEN"],
    ],
)
def test_whatsapp_half_configured_names_the_missing(
    monkeypatch: pytest.MonkeyPatch, given: list[str]
) -> None:
    message = refused(monkeypatch, {name: WHATSAPP_FULL[name] for name in given})
    named = set(re.findall(r"WHATSAPP_[A-Z_]+", message))
    assert named == set(WHATSAPP_FULL) - set(given), message
    for name in given:
        assert WHATSAPP_FULL[name] not in message


def test_complete_webhook_and_whatsapp_are_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    setenv(
        monkeypatch,
        {
            "TELEGRAM_BOT_TOKEN": BOT_TOKEN,
            "TELEGRAM_WEBHOOK_URL": WEBHOOK,
            "TELEGRAM_WEBHOOK_SECRET": "A-z_0-9" * 36 + "abcd",  # 256 characters, the longest allowed
            **WHATSAPP_FULL,
        },
    )
    s = load()
    assert s.telegram.webhook_url == WEBHOOK
    assert s.whatsapp.enabled


def test_token_without_webhook_means_long_polling(monkeypatch: pytest.MonkeyPatch) -> None:
    setenv(monkeypatch, {"TELEGRAM_BOT_TOKEN": BOT_TOKEN})
    s = load()
    assert s.telegram.webhook_url is None and s.telegram.bot_token is not None


def test_smtp_without_login_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    setenv(monkeypatch, {"SMTP_HOST": "smtp.example.az", "SMTP_FROM": "bot@azerisiq.az", "SMTP_PORT": "25"})
    s = load()
    assert (s.smtp.host, s.smtp.port, s.smtp.user, s.smtp.password) == ("smtp.example.az", 25, None, None)


@pytest.mark.parametrize(
    "url",
    [
        "sqlite+aiosqlite:////var/lib/isiqbot/isiqbot.db",
        "postgresql+asyncpg://isiqbot:pw@127.0.0.1:5432/isiqbot",
    ],
)
def test_supported_databases_are_accepted(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    setenv(monkeypatch, {"DATABASE_URL": url})
    assert load().database.database_url == url


@pytest.mark.parametrize("port", ["1", "65535"])
def test_http_port_limits_are_accepted(monkeypatch: pytest.MonkeyPatch, port: str) -> None:
    setenv(monkeypatch, {"HTTP_PORT": port})
    assert load().http.http_port == int(port)


@pytest.mark.parametrize(("given", "level"), [("debug", "DEBUG"), ("Warning", "WARNING"), ("info", "INFO")])
def test_log_level_in_any_case(monkeypatch: pytest.MonkeyPatch, given: str, level: str) -> None:
    setenv(monkeypatch, {"LOG_LEVEL": given})
    assert load().http.log_level == level


def test_trusted_proxies_default_to_nobody() -> None:
    assert load().http.trusted_proxies == ()


@pytest.mark.parametrize(
    ("given", "parsed"),
    [
        ("127.0.0.1", ["127.0.0.1/32"]),
        ("10.0.0.0/8", ["10.0.0.0/8"]),
        (" 127.0.0.1 , 10.0.0.0/8,::1,fd00::/8, ", ["127.0.0.1/32", "10.0.0.0/8", "::1/128", "fd00::/8"]),
        ("2001:DB8::/32", ["2001:db8::/32"]),
    ],
)
def test_trusted_proxies_are_addresses_and_networks(
    monkeypatch: pytest.MonkeyPatch, given: str, parsed: list[str]
) -> None:
    setenv(monkeypatch, {"TRUSTED_PROXIES": given})
    networks = load().http.trusted_proxies
    assert [str(n) for n in networks] == parsed
    assert all(isinstance(n, IPv4Network | IPv6Network) for n in networks)


@pytest.mark.parametrize(
    ("given", "reason"),
    [
        ("proxy.internal", "is not an IP address or network"),
        ("10.0.0.300", "is not an IP address or network"),
        ("10.0.0.0/33", "is not an IP address or network"),
        ("10.0.0.1 10.0.0.2", "is not an IP address or network"),  # a space is not a comma
        ("*", "is not an IP address or network"),  # trusting every peer is not offered
        ("127.0.0.1,fd00::/129", "is not an IP address or network"),
        ("10.0.0.1/8", "has host bits set; write 10.0.0.0/8, or 10.0.0.1 for that one address"),
    ],
)
def test_bad_trusted_proxies_are_refused_with_the_variable_named(
    monkeypatch: pytest.MonkeyPatch, given: str, reason: str
) -> None:
    message = refused(monkeypatch, {"TRUSTED_PROXIES": given})
    assert message.startswith("TRUSTED_PROXIES: ") and reason in message, message


def test_departments_file_that_exists(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "departments.yaml").write_text("Xətai: -1009876543210\n", encoding="utf-8")
    setenv(monkeypatch, {"DEPARTMENTS_FILE": "departments.yaml"})  # relative to the working folder
    assert load().staff.departments_file == Path("departments.yaml")


def test_env_file_is_read_and_the_environment_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    env_file = tmp_path / "custom.env"
    env_file.write_text(
        "HTTP_PORT=9090\nLOG_LEVEL=debug\nSMTP_HOST=smtp.example.az\nSMTP_FROM=bot@azerisiq.az\n",
        encoding="utf-8",
    )
    setenv(monkeypatch, {"HTTP_PORT": "9191"})
    s = Settings(env_file=env_file)
    assert (s.http.http_port, s.http.log_level, s.smtp.host) == (9191, "DEBUG", "smtp.example.az")


def test_no_env_file_means_none_is_read(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("HTTP_PORT=70000\n", encoding="utf-8")  # would be refused if read
    assert load().http.http_port == 8080
    with pytest.raises(SettingsError, match="HTTP_PORT"):
        Settings()  # the default reads `.env` in the working folder


@pytest.mark.parametrize("name", ALL_VARS)
def test_an_empty_variable_means_unset(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """`NAME=` with nothing after it (as in a `.env` copied from `.env.example`) is the default."""
    defaults = vars(load())
    setenv(monkeypatch, {name: ""})
    s = load()
    assert vars(s) == defaults
    assert s.database.database_url == DEFAULT_DATABASE_URL
    assert s.telegram.bot_token is None and s.telegram.webhook_secret is None
    assert s.staff.departments_file is None and s.staff.staff_chat_id is None
    assert (s.http.http_port, s.smtp.port, s.http.log_level) == (8080, 587, "INFO")


def test_webhook_with_an_empty_token_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    message = refused(
        monkeypatch,
        {
            "TELEGRAM_WEBHOOK_URL": WEBHOOK,
            "TELEGRAM_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "TELEGRAM_BOT_TOKEN": "",
        },
    )
    assert "TELEGRAM_BOT_TOKEN" in message


def test_env_example_lists_every_setting_and_loads_as_is() -> None:
    example = Path(__file__).resolve().parent.parent / ".env.example"
    names = re.findall(r"^([A-Z][A-Z0-9_]*)=", example.read_text(encoding="utf-8"), flags=re.MULTILINE)
    assert sorted(names) == sorted(ALL_VARS)
    s = Settings(env_file=example)  # `cp .env.example .env` must start
    assert s.database.database_url == DEFAULT_DATABASE_URL
    assert s.telegram.bot_token is None and s.telegram.webhook_url is None
    assert not s.whatsapp.enabled and s.sms.gateway_url is None and s.smtp.host is None


# --- the command line ---------------------------------------------------------------------------------


def run_cli(tmp_path: Path, values: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return run_isiqbot(tmp_path, *args, env=isiqbot_env(tmp_path, "x.db", **values))


@pytest.mark.parametrize(
    ("values", "name"),
    [
        ({"HTTP_PORT": "70000"}, "HTTP_PORT"),
        ({"DATABASE_URL": "mysql://isiqbot@db.internal/isiqbot"}, "DATABASE_URL"),
        ({"TELEGRAM_WEBHOOK_URL": WEBHOOK, "TELEGRAM_BOT_TOKEN": BOT_TOKEN}, "TELEGRAM_WEBHOOK_SECRET"),
        ({"SMTP_HOST": "smtp.example.az"}, "SMTP_FROM"),
    ],
)
def test_migrate_with_bad_settings_exits_2(tmp_path: Path, values: dict[str, str], name: str) -> None:
    done = run_cli(tmp_path, values, "migrate")
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "settings:" in done.stderr and name in done.stderr
    assert "Traceback" not in done.stderr
    assert BOT_TOKEN not in done.stderr
    assert not (tmp_path / "x.db").exists()  # stopped before touching the database


def test_run_without_a_link_secret_exits_2(tmp_path: Path) -> None:
    done = run_cli(tmp_path, {"LINK_SECRET": ""}, "run")
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "LINK_SECRET" in done.stderr and "secrets.token_urlsafe" in done.stderr
    assert not (tmp_path / "x.db").exists()


def test_run_with_a_bad_departments_file_exits_2_naming_every_problem(tmp_path: Path) -> None:
    bad = tmp_path / "departments.toml"
    bad.write_text(
        '[departments.baki]\nname = { az = "Bakı" }\nchat_id = 0\nstaff = [1]\nregions = ["Yasamal"]\n',
        encoding="utf-8",
    )
    done = run_cli(tmp_path, {"DEPARTMENTS_FILE": str(bad)}, "run")
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "baki" in done.stderr and "chat_id" in done.stderr and "ru" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_fallback_chat_may_not_be_a_departments_chat(monkeypatch: pytest.MonkeyPatch) -> None:
    example = Path(__file__).resolve().parents[1] / "departments.example.toml"
    setenv(monkeypatch, {"DEPARTMENTS_FILE": str(example), "STAFF_CHAT_ID": "-1001000000001"})
    with pytest.raises(SettingsError, match="STAFF_CHAT_ID is the chat of department 'baki'"):
        load().staff.policy()
    monkeypatch.setenv("STAFF_CHAT_ID", "-1009999999999")
    assert load().staff.policy().departments.by_chat(-1009999999999) is not None


def test_a_link_secret_signs_the_same_links_in_every_process(monkeypatch: pytest.MonkeyPatch) -> None:
    setenv(monkeypatch, {"LINK_SECRET": "s" * 40})
    first, second = load().http.links(), load().http.links()
    assert second.application_id(first.token(12)) == 12
    assert "s" * 40 not in repr(load().http)
    monkeypatch.delenv("LINK_SECRET")
    assert load().http.links().application_id(first.token(12)) is None  # ephemeral without it


def test_a_rotated_link_secret_keeps_old_links_and_signs_with_the_new_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    old, new = "o" * 40, "n" * 40
    setenv(monkeypatch, {"LINK_SECRET": old})
    sent_by_sms = load().http.links().token(12)
    monkeypatch.setenv("LINK_SECRET", f"{new}, {old}")  # rotated: the new key first
    rotated = load().http.links()
    assert rotated.application_id(sent_by_sms) == 12  # the link already sent still opens
    fresh = rotated.token(13)
    monkeypatch.setenv("LINK_SECRET", new)  # the old key dropped, later
    assert load().http.links().application_id(fresh) == 13  # signed with the new key
    assert load().http.links().application_id(sent_by_sms) is None
    monkeypatch.setenv("LINK_SECRET", f"{new},short")
    with pytest.raises(SettingsError, match="LINK_SECRET: each key must be at least 32"):
        load()
    monkeypatch.setenv("LINK_SECRET", f"{new},{old}")
    assert new not in repr(load().http) and old not in repr(load().http)  # secrets stay secret


def test_migrate_reads_dot_env_in_the_working_folder(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("LOG_LEVEL=loud\n", encoding="utf-8")
    done = run_cli(tmp_path, {}, "migrate")
    assert done.returncode == 2 and "LOG_LEVEL" in done.stderr


def test_migrate_with_good_settings(tmp_path: Path) -> None:
    done = run_cli(tmp_path, {"LOG_LEVEL": "warning"}, "migrate")
    assert done.returncode == 0, done.stderr
    assert "database schema is up to date" in done.stdout
    assert (tmp_path / "x.db").exists()
