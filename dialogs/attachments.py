"""What a subscriber may attach to an application: up to five photos, a voice note and a document.

An attachment is stored as JSON primitives, `{"kind", "ref", "mime", "size", "name"}`: `ref` is the
platform's reference to the file (a Telegram file id, or a WhatsApp media id behind `wa:`), never the
bytes. Drafts and rows written before there were several keep one photo as `photo` / `photo_ref`;
`of_draft` and `of_application` read both shapes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from dialogs.errors import Invalid
from locales import Msg

MAX_PHOTOS = 5
MAX_BYTES = 10 * 1024 * 1024  # a voice note's or a document's size, where the platform tells it
MAX_MB = MAX_BYTES // (1024 * 1024)
REF_MAX = 512
KINDS = ("photo", "voice", "document")
DOCUMENT_TYPES = frozenset({"application/pdf", "image/jpeg", "image/png", "image/webp", "image/heic"})
DOCUMENT_EXTENSIONS = {
    ".pdf": "application/pdf",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
}
VIDEOS = frozenset({"video", "video_note", "animation", "gif"})  # what a platform calls a video

Attachment = dict[str, Any]


def of_draft(draft: Mapping[str, Any]) -> list[Attachment]:
    """The draft's attachments; a draft saved with one `photo` (before there were several) too."""
    items = draft.get("attachments")
    if isinstance(items, list):
        return [dict(item) for item in items if isinstance(item, dict) and item.get("kind") in KINDS]
    photo = draft.get("photo")
    return [photo_item(str(photo))] if photo else []


def of_application(
    photo_ref: str | None, attachments: Sequence[Mapping[str, Any]] | None
) -> list[Attachment]:
    """An application's attachments; a row registered with only `photo_ref` has that one photo."""
    if attachments:
        return [dict(item) for item in attachments if item.get("kind") in KINDS]
    return [photo_item(photo_ref)] if photo_ref else []


def photo_item(ref: str) -> Attachment:
    return {"kind": "photo", "ref": ref, "mime": "image/jpeg", "size": None, "name": ""}


def count(items: Sequence[Mapping[str, Any]], kind: str) -> int:
    return sum(1 for item in items if item.get("kind") == kind)


def checked(kind: str, ref: str, mime: str, size: int | None, name: str) -> Attachment:
    """A voice note or a document as it may be kept, or the reason it may not (type, size, empty)."""
    if not ref or len(ref) > REF_MAX:
        raise Invalid(Msg("details.hint"))
    base = mime.split(";")[0].strip().lower()
    if size is not None and size <= 0:
        raise Invalid(Msg("attachments.empty"))
    if size is not None and size > MAX_BYTES:
        raise Invalid(Msg("attachments.too_big", {"max": MAX_MB}))
    if kind == "voice":
        if base and not base.startswith("audio/"):
            raise Invalid(Msg("attachments.voice_type"))
        return {"kind": "voice", "ref": ref, "mime": base or "audio/ogg", "size": size, "name": ""}
    if kind != "document":
        raise Invalid(Msg("details.hint"))
    extension = "." + name.rsplit(".", 1)[-1].lower() if "." in name else ""
    if base not in DOCUMENT_TYPES and not (
        base in ("", "application/octet-stream") and extension in DOCUMENT_EXTENSIONS
    ):
        raise Invalid(Msg("attachments.document_type"))
    if base not in DOCUMENT_TYPES:
        base = DOCUMENT_EXTENSIONS[extension]
    return {"kind": "document", "ref": ref, "mime": base, "size": size, "name": name[:128]}


def summary(items: Sequence[Mapping[str, Any]]) -> Msg | None:
    """What is attached, in words: "3 şəkil, səs yazısı, sənəd"; None when nothing is."""
    parts: list[Msg] = []
    photos = count(items, "photo")
    if photos:
        parts.append(
            Msg("attachments.kind_photo" if photos == 1 else "attachments.kind_photos", {"count": photos})
        )
    if count(items, "voice"):
        parts.append(Msg("attachments.kind_voice"))
    if count(items, "document"):
        parts.append(Msg("attachments.kind_document"))
    if not parts:
        return None
    joined = parts[-1]
    for part in reversed(parts[:-1]):
        joined = Msg("attachments.join", {"first": part, "rest": joined})
    return joined
