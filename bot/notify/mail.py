"""E-mail: the registration and result messages, text and HTML from Jinja2 templates, sent with aiosmtplib.

Every sentence comes from the catalogs in the subscriber's language; the templates only lay them out.
The HTML is autoescaped, so nothing a subscriber wrote is read as markup. Without `SMTP_HOST` the
message is only logged, with the address masked.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate
from typing import Any, Protocol

import aiosmtplib

from bot.core.context import bind
from bot.core.links import PublicLinks
from bot.core.templates import TEMPLATES
from bot.notify.outbox import Permanent, Temporary, delivery_key
from dialogs.validate import mask_email
from locales import Msg, translate
from storage import applications
from storage.applications import account_label
from storage.db import Database, as_utc
from storage.models import Application, Notification

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SmtpConfig:
    host: str
    port: int
    sender: str
    user: str | None = None
    password: str | None = None
    security: str = "starttls"  # starttls | tls | none
    timeout: float = 20.0


class Mailer(Protocol):
    async def send(self, message: EmailMessage) -> str | None: ...


class SmtpMailer:
    def __init__(self, config: SmtpConfig) -> None:
        self.config = config

    async def send(self, message: EmailMessage) -> str | None:
        c = self.config
        try:
            await aiosmtplib.send(
                message,
                hostname=c.host,
                port=c.port,
                username=c.user,
                password=c.password,
                use_tls=c.security == "tls",
                start_tls=True if c.security == "starttls" else False,
                timeout=c.timeout,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            raise Permanent(f"SMTP refused the recipient: {_reason(exc)}") from exc
        except aiosmtplib.SMTPResponseException as exc:
            if 500 <= exc.code < 600:  # 5xx: refused for good; 4xx: try again later
                raise Permanent(f"SMTP {exc.code}: {exc.message}"[:200]) from exc
            raise Temporary(f"SMTP {exc.code}: {exc.message}"[:200]) from exc
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise Temporary(f"SMTP: {type(exc).__name__}: {exc}"[:200]) from exc
        return str(message["Message-ID"])


class LogMailer:
    async def send(self, message: EmailMessage) -> str | None:
        log.info(
            "e-mail to %s (no SMTP_HOST, so only logged): %s",
            mask_email(str(message["To"])),
            message["Subject"],
        )
        return None


class EmailSender:
    """The outbox's sender for e-mail: the summary and the link, in the subscriber's language."""

    def __init__(self, db: Database, mailer: Mailer, sender: str, links: PublicLinks) -> None:
        self.db = db
        self.mailer = mailer
        self.sender = sender
        self.links = links

    async def deliver(self, notification: Notification) -> str | None:
        if notification.application_id is None:
            raise Permanent("an e-mail without an application")
        async with self.db.transaction() as session:
            application = await session.get(Application, notification.application_id)
            if application is None:
                raise Permanent("the application is gone")
            bind(application=application.number)
            history = (await applications.histories(session, [notification.application_id]))[
                notification.application_id
            ]
        return await self.mailer.send(self.compose(notification, application, history))

    def compose(self, notification: Notification, application: Application, history: Any) -> EmailMessage:
        lang = notification.lang
        event = str(notification.payload.get("event", "registered"))

        def t(key: str, **params: Any) -> str:
            return translate(Msg(key, params), lang)

        status = Msg(f"status.{application.status}")
        rows = [
            (t("email.number"), application.number),
            (t("email.status"), translate(status, lang)),
            (t("email.account"), account_label(application)),
            (t("email.address"), application.address or "—"),
            (t("email.reason"), t(f"reason.{application.reason}")),
            (t("email.description"), application.description or "—"),
            (t("email.date"), translate(Msg("email.when", {"date": as_utc(application.created_at)}), lang)),
        ]
        if application.result:
            rows.append((t(f"result.{application.status}"), application.result))
        context = {
            "lang": lang,
            "subject": t(f"email.subject_{event}", number=application.number),
            "greeting": t("email.greeting"),
            "lead": t(f"email.lead_{event}", number=application.number, status=status),
            "rows": rows,
            "history_title": t("email.history"),
            "history": [
                (
                    translate(Msg("email.when", {"date": as_utc(c.created_at)}), lang),
                    translate(Msg(f"status.{c.new_status}"), lang),
                )
                for c in history
            ],
            "link_text": t("email.link"),
            "link": self.links.status_page(notification.application_id or 0),
            "footer": t("email.footer"),
        }
        message = EmailMessage()
        message["Subject"] = context["subject"]
        message["From"] = self.sender
        message["To"] = notification.user_key
        message["Date"] = formatdate(localtime=False)
        # The same at every attempt: a copy sent again after a lost answer is the same message to the
        # recipient's mailbox, not a second one.
        domain = self.sender.rsplit("@", 1)[-1].strip("> ") or "isiqbot"
        message["Message-ID"] = f"<{delivery_key(notification)}@{domain}>"
        message.set_content(TEMPLATES.get_template("email.txt.j2").render(context))
        message.add_alternative(TEMPLATES.get_template("email.html.j2").render(context), subtype="html")
        message["Content-Language"] = lang  # after the body: setting the content clears Content-* headers
        return message


def _reason(exc: aiosmtplib.SMTPRecipientsRefused) -> str:
    return "; ".join(f"{e.code} {e.message}" for e in exc.recipients)[:200]
