"""Links that name one application without saying which: signed, opaque and short.

A token is the application's id (6 bytes) followed by 15 bytes of an HMAC-SHA256 tag over it, in
URL-safe base64 without padding: exactly 28 characters of [A-Za-z0-9_-]. That fits a Telegram
`/start` payload (at most 64 characters) and a status-page link in an SMS (at most 32). Without the
secret nobody can make a token for another application; the tag has 120 bits, so guessing is hopeless.
Ownership is still checked where a token is used: a token forwarded to someone else opens nothing.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from locales import Msg

ID_BYTES = 6
TAG_BYTES = 15
TOKEN_LENGTH = 28  # 4 * (ID_BYTES + TAG_BYTES) / 3
_TOKEN = re.compile(rf"[A-Za-z0-9_-]{{{TOKEN_LENGTH}}}")
_PURPOSE = b"isiqbot/application-link/v1"
MIN_SECRET_BYTES = 32


class LinkSigner:
    """Makes application tokens with one secret and checks them with it and any older ones
    (`LINK_SECRET=new,old`): a rotation does not break the links already sent by SMS."""

    def __init__(self, secret: bytes, *older: bytes) -> None:
        if any(len(key) < MIN_SECRET_BYTES for key in (secret, *older)):
            raise ValueError(f"the link secret must have at least {MIN_SECRET_BYTES} bytes")
        # A key of its own for this purpose, so the secret could sign something else one day safely.
        self._keys = [hmac.new(key, _PURPOSE, hashlib.sha256).digest() for key in (secret, *older)]

    @classmethod
    def ephemeral(cls) -> LinkSigner:
        """A signer whose tokens die with the process: for the terminal demo and tests."""
        return cls(secrets.token_bytes(MIN_SECRET_BYTES))

    def token(self, application_id: int) -> str:
        if not 0 < application_id < 1 << (8 * ID_BYTES):
            raise ValueError(f"application id {application_id} does not fit a link")
        body = application_id.to_bytes(ID_BYTES, "big")
        return base64.urlsafe_b64encode(body + self._tag(self._keys[0], body)).decode("ascii")

    def application_id(self, token: str) -> int | None:
        """The application a token names, or None for anything that is not a token we made."""
        if not _TOKEN.fullmatch(token):
            return None
        try:
            raw = base64.urlsafe_b64decode(token)
        except (binascii.Error, ValueError):
            return None
        body, tag = raw[:ID_BYTES], raw[ID_BYTES:]
        if not any(hmac.compare_digest(tag, self._tag(key, body)) for key in self._keys):
            return None
        application_id = int.from_bytes(body, "big")
        return application_id or None

    @staticmethod
    def _tag(key: bytes, body: bytes) -> bytes:
        return hmac.new(key, body, hashlib.sha256).digest()[:TAG_BYTES]


class PublicLinks:
    """The addresses people are sent: the status page at `{PUBLIC_BASE_URL}/a/{token}`."""

    def __init__(self, signer: LinkSigner, base_url: str) -> None:
        self.signer = signer
        self.base_url = base_url.rstrip("/")

    def status_page(self, application_id: int) -> str:
        return f"{self.base_url}/a/{self.signer.token(application_id)}"


@dataclass(frozen=True, slots=True)
class ChatLink:
    """A link that opens a chat with us, for the status page: "continue in Telegram"."""

    kind: str  # the channel's name; the button's look on the page (`a.telegram`)
    url: str
    label: Msg
