"""Settings from the environment or `.env`: one class per concern, secrets as SecretStr.

Impossible combinations are refused when the settings load, with the variable named, so a
misconfigured deployment stops at start instead of failing on the first subscriber.
"""

from __future__ import annotations

import re
from datetime import timedelta
from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path
from typing import Annotated, Literal, TypeVar

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from bot.core.departments import Departments, DepartmentsError
from bot.core.links import MIN_SECRET_BYTES, LinkSigner
from bot.core.policy import StaffPolicy

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./data/isiqbot.db"
S = TypeVar("S", bound=BaseSettings)
Network = IPv4Network | IPv6Network


def _config(prefix: str = "") -> SettingsConfigDict:
    return SettingsConfigDict(
        env_prefix=prefix, env_file=".env", env_file_encoding="utf-8", env_ignore_empty=True, extra="ignore"
    )


def networks(value: str, name: str) -> tuple[Network, ...]:
    """Comma-separated IP addresses and CIDR networks, IPv4 or IPv6; an address is a network of one."""
    found: list[Network] = []
    for part in filter(None, (p.strip() for p in value.split(","))):
        try:
            found.append(ip_network(part))
        except ValueError:
            try:
                meant = ip_network(part, strict=False)
            except ValueError:
                raise ValueError(
                    f"{name}: {part!r} is not an IP address or network; "
                    "write e.g. 10.0.0.1, 10.0.0.0/8, fd00::/8"
                ) from None
            raise ValueError(
                f"{name}: {part!r} has host bits set; "
                f"write {meant}, or {part.split('/')[0]} for that one address"
            ) from None
    return tuple(found)


def _http_url(value: str | None, name: str) -> str | None:
    if value is None or value == "":
        return None
    if not value.startswith(("http://", "https://")):
        raise ValueError(f"{name} must start with http:// or https://")
    return value.rstrip("/")


class DatabaseSettings(BaseSettings):
    """Where state is kept: the database, and Redis for what several processes share at once."""

    model_config = _config()
    database_url: str = DEFAULT_DATABASE_URL
    redis_url: str | None = None  # the sending budgets shared by every process; memory when unset
    # Processed update ids, sent notifications of closed applications and one-time-code records are
    # deleted after this many days (applications and their audit trail are kept).
    retention_days: float = Field(default=30, ge=1, le=3650)

    @field_validator("redis_url")
    @classmethod
    def _redis(cls, value: str | None) -> str | None:
        if value and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("REDIS_URL must start with redis://, rediss:// or unix://")
        return value or None

    @field_validator("database_url")
    @classmethod
    def _supported(cls, value: str) -> str:
        if not value.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError("DATABASE_URL must start with sqlite+aiosqlite:// or postgresql+asyncpg://")
        return value


class TelegramSettings(BaseSettings):
    model_config = _config("TELEGRAM_")
    bot_token: SecretStr | None = None
    api_url: str = "https://api.telegram.org"
    webhook_url: str | None = None
    webhook_secret: SecretStr | None = None
    # Telegram's paid broadcasts (allow_paid_broadcast, charged in Stars): bulk news at up to this
    # many messages a second, beside the free 30. Unset: the free 30 a second for everything.
    paid_broadcast_mps: int | None = Field(default=None, ge=1, le=1000)

    @field_validator("api_url")
    @classmethod
    def _api_url(cls, value: str) -> str:
        return _http_url(value, "TELEGRAM_API_URL") or "https://api.telegram.org"

    @field_validator("webhook_url")
    @classmethod
    def _webhook_url(cls, value: str | None) -> str | None:
        if value and not value.startswith("https://"):
            raise ValueError("TELEGRAM_WEBHOOK_URL must be an https:// address (Telegram calls only HTTPS)")
        return value or None

    @field_validator("webhook_secret")
    @classmethod
    def _secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", value.get_secret_value()):
            raise ValueError("TELEGRAM_WEBHOOK_SECRET must be 1-256 characters of A-Z, a-z, 0-9, _ and -")
        return value

    @model_validator(mode="after")
    def _combination(self) -> TelegramSettings:
        if self.webhook_url and self.bot_token is None:
            raise ValueError("TELEGRAM_WEBHOOK_URL is set but TELEGRAM_BOT_TOKEN is not")
        if self.webhook_url and self.webhook_secret is None:
            raise ValueError(
                "TELEGRAM_WEBHOOK_URL needs TELEGRAM_WEBHOOK_SECRET to authenticate Telegram's calls"
            )
        return self


class WhatsAppSettings(BaseSettings):
    model_config = _config("WHATSAPP_")
    token: SecretStr | None = None
    phone_number_id: str | None = None
    app_secret: SecretStr | None = None
    verify_token: SecretStr | None = None
    api_url: str = "https://graph.facebook.com/v21.0"
    public_number: str | None = None  # digits, for the status page's wa.me link
    mps: float = Field(default=80.0, gt=0, le=1000)  # messages a second, in all
    template: str | None = None  # the approved status template: parameters number, status, link
    template_languages: str = "az=az,ru=ru,en=en"  # our language → the template's language code

    @field_validator("template_languages")
    @classmethod
    def _pairs(cls, value: str) -> str:
        for pair in value.split(","):
            ours, _, theirs = pair.strip().partition("=")
            code = re.fullmatch(r"[a-z]{2}(_[A-Z]{2})?", theirs.strip())
            if ours.strip() not in ("az", "ru", "en") or code is None:
                raise ValueError(
                    "WHATSAPP_TEMPLATE_LANGUAGES must look like az=az,ru=ru,en=en_US (ours=the template's)"
                )
        return value

    def template_language(self, lang: str) -> str:
        pairs = dict(pair.strip().split("=", 1) for pair in self.template_languages.split(","))
        return pairs.get(lang, pairs.get("az", "az")).strip()

    @field_validator("public_number")
    @classmethod
    def _digits(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        digits = value.strip().lstrip("+").replace(" ", "")
        if not digits.isascii() or not digits.isdigit() or not 8 <= len(digits) <= 15:
            raise ValueError("WHATSAPP_PUBLIC_NUMBER must be a phone number in digits, e.g. 994121234567")
        return digits

    @field_validator("api_url")
    @classmethod
    def _api_url(cls, value: str) -> str:
        return _http_url(value, "WHATSAPP_API_URL") or "https://graph.facebook.com/v21.0"

    @model_validator(mode="after")
    def _combination(self) -> WhatsAppSettings:
        given = {
            "WHATSAPP_TOKEN": self.token,
            "WHATSAPP_PHONE_NUMBER_ID": self.phone_number_id,
            "WHATSAPP_APP_SECRET": self.app_secret,
            "WHATSAPP_VERIFY_TOKEN": self.verify_token,
        }
        missing = [name for name, value in given.items() if not value]
        if len(missing) not in (0, len(given)):
            raise ValueError(
                f"WhatsApp is half configured: set {', '.join(missing)} as well (or none of them)"
            )
        return self

    @property
    def enabled(self) -> bool:
        return self.token is not None


class SmsSettings(BaseSettings):
    model_config = _config("SMS_")
    gateway_url: str | None = None
    gateway_token: SecretStr | None = None
    sender: str = "Azerisiq"
    gateway_timeout: float = Field(default=10.0, gt=0, le=120)

    @field_validator("gateway_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return _http_url(value, "SMS_GATEWAY_URL")


class SmtpSettings(BaseSettings):
    model_config = _config("SMTP_")
    host: str | None = None
    port: int = Field(default=587, ge=1, le=65535)
    user: str | None = None
    password: SecretStr | None = None
    from_: str | None = Field(default=None, alias="SMTP_FROM")
    security: Literal["starttls", "tls", "none"] = "starttls"

    @field_validator("security", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _combination(self) -> SmtpSettings:
        if self.host and not self.from_:
            raise ValueError("SMTP_HOST is set but SMTP_FROM (the sender address) is not")
        if self.user and self.password is None:
            raise ValueError("SMTP_USER is set but SMTP_PASSWORD is not")
        return self


class StaffSettings(BaseSettings):
    model_config = _config()
    staff_chat_id: int | None = None
    departments_file: Path | None = None
    sla_take_hours: float = Field(default=4, gt=0, le=24 * 30)
    sla_done_days: float = Field(default=5, gt=0, le=365)
    reopen_days: float = Field(default=7, ge=0, le=365)  # 0: a completed application is not reopened
    deadline_check_seconds: float = Field(default=60, ge=0.5, le=3600)  # how often deadlines are looked at

    def policy(self) -> StaffPolicy:
        """The departments (read from DEPARTMENTS_FILE now) and the deadlines."""
        try:
            departments = Departments.load(self.departments_file, self.staff_chat_id)
        except DepartmentsError as exc:
            raise SettingsError(str(exc)) from None
        shared = next((d for d in departments if d.chat_id == self.staff_chat_id), None)
        if shared is not None:
            raise SettingsError(
                f"STAFF_CHAT_ID is the chat of department {shared.key!r}: give the applications that no "
                "department serves a group of their own, or add their regions to that department"
            )
        return StaffPolicy(
            departments,
            timedelta(hours=self.sla_take_hours),
            timedelta(days=self.sla_done_days),
            timedelta(days=self.reopen_days),
        )

    @field_validator("departments_file")
    @classmethod
    def _exists(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"DEPARTMENTS_FILE {value} does not exist")
        return value


class HttpSettings(BaseSettings):
    model_config = _config()
    public_base_url: str = "http://127.0.0.1:8080"
    link_secret: SecretStr | None = None
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8080, ge=1, le=65535)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # text: one line for people; json: one JSON object a line, for a log collector.
    log_format: Literal["text", "json"] = "text"
    # /metrics on a port of its own (not the public one); unset: on HTTP_PORT, see METRICS_TOKEN.
    metrics_port: int | None = Field(default=None, ge=1, le=65535)
    # A bearer token that opens /metrics on the public port from anywhere; without it only direct
    # requests from this machine or a private network are answered there.
    metrics_token: SecretStr | None = None
    # /readyz fails when a message has been due for longer than this (seconds): the outbox is stuck.
    readyz_outbox_max_age: float = Field(default=900, gt=0)
    # The reverse proxies whose X-Forwarded-For is believed (addresses and networks); none by default.
    trusted_proxies: Annotated[tuple[Network, ...], NoDecode] = ()

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _proxies(cls, value: object) -> object:
        return networks(value, "TRUSTED_PROXIES") if isinstance(value, str) else value

    @field_validator("public_base_url")
    @classmethod
    def _url(cls, value: str) -> str:
        return _http_url(value, "PUBLIC_BASE_URL") or "http://127.0.0.1:8080"

    @field_validator("link_secret")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        """The current key, then older ones still accepted, comma-separated; each long enough."""
        if value is None:
            return None
        if any(len(key.strip().encode()) < MIN_SECRET_BYTES for key in value.get_secret_value().split(",")):
            raise ValueError(
                f"LINK_SECRET: each key must be at least {MIN_SECRET_BYTES} characters long "
                '(make one with: python3 -c "import secrets; print(secrets.token_urlsafe(32))")'
            )
        return value

    def links(self) -> LinkSigner:
        """The signer of application links: it signs with the first key of LINK_SECRET and accepts
        every key listed. Without LINK_SECRET, one whose links die with the process."""
        if self.link_secret is None:
            return LinkSigner.ephemeral()
        keys = [key.strip().encode() for key in self.link_secret.get_secret_value().split(",")]
        return LinkSigner(*keys)

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("log_format", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value


class SettingsError(Exception):
    """Settings that cannot work together; the message names the variable."""


class Settings:
    """All settings, each concern loaded and checked on its own."""

    def __init__(self, env_file: str | Path | None = ".env") -> None:
        self.database = _load(DatabaseSettings, env_file)
        self.telegram = _load(TelegramSettings, env_file)
        self.whatsapp = _load(WhatsAppSettings, env_file)
        self.sms = _load(SmsSettings, env_file)
        self.smtp = _load(SmtpSettings, env_file)
        self.staff = _load(StaffSettings, env_file)
        self.http = _load(HttpSettings, env_file)


def _load(cls: type[S], env_file: str | Path | None) -> S:
    try:
        return cls(_env_file=env_file)
    except ValidationError as exc:
        prefix = str(cls.model_config.get("env_prefix") or "")
        lines = []
        for error in exc.errors():
            field = "_".join(str(part) for part in error.get("loc", ())).upper()
            name = field if field.startswith(prefix) else prefix + field
            message = str(error.get("msg", "")).removeprefix("Value error, ")
            lines.append(message if not field or name in message else f"{name}: {message}")
        raise SettingsError("; ".join(lines)) from None
