"""The Cloud API webhook payload, as typed models. Unknown fields are ignored; what we use is checked."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Profile(_Model):
    name: str = ""


class WaContact(_Model):
    """Who wrote: `wa_id` is the phone in digits; `user_id` the business-scoped id, when there is one."""

    profile: Profile = Profile()
    wa_id: str | None = None
    user_id: str | None = None


class Text(_Model):
    body: str = ""


class Reply(_Model):
    id: str = ""
    title: str = ""
    description: str | None = None


class Interactive(_Model):
    type: str
    button_reply: Reply | None = None
    list_reply: Reply | None = None


class Button(_Model):
    """A quick-reply button of a template message."""

    payload: str = ""
    text: str = ""


class Location(_Model):
    latitude: float
    longitude: float
    name: str | None = None
    address: str | None = None


class Media(_Model):
    id: str
    mime_type: str | None = None
    caption: str | None = None
    sha256: str | None = None
    filename: str | None = None  # a document's


class SharedPhone(_Model):
    phone: str = ""
    wa_id: str | None = None


class SharedContact(_Model):
    phones: list[SharedPhone] = Field(default_factory=list)


class Context(_Model):
    """The message this one replies to."""

    id: str | None = None
    from_: str | None = Field(default=None, alias="from")


class Error(_Model):
    code: int = 0
    title: str = ""
    message: str | None = None


class WaMessage(_Model):
    id: str
    type: str
    timestamp: str = "0"
    from_: str | None = Field(default=None, alias="from")
    from_user_id: str | None = None
    context: Context | None = None
    text: Text | None = None
    interactive: Interactive | None = None
    button: Button | None = None
    location: Location | None = None
    image: Media | None = None
    audio: Media | None = None
    document: Media | None = None
    contacts: list[SharedContact] | None = None
    errors: list[Error] | None = None


class Status(_Model):
    id: str
    status: str  # sent | delivered | read | failed
    timestamp: str = "0"
    recipient_id: str | None = None
    errors: list[Error] | None = None


class Metadata(_Model):
    display_phone_number: str = ""
    phone_number_id: str = ""


class Value(_Model):
    messaging_product: str = "whatsapp"
    metadata: Metadata = Metadata()
    contacts: list[WaContact] = Field(default_factory=list)
    messages: list[WaMessage] = Field(default_factory=list)
    statuses: list[Status] = Field(default_factory=list)
    errors: list[Error] = Field(default_factory=list)


class Change(_Model):
    field: str = ""
    value: Value = Value()


class Entry(_Model):
    id: str = ""
    changes: list[Change] = Field(default_factory=list)


class Webhook(_Model):
    object: str
    entry: list[Entry] = Field(default_factory=list)
