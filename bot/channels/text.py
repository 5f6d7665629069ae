"""Text as every chat platform takes it: in pieces under its length limit."""

from __future__ import annotations

TEXT_LIMIT = 4096


def split_text(text: str, limit: int = TEXT_LIMIT) -> list[str]:
    """Pieces under a platform's limit (4096 for Telegram and WhatsApp), cut at line ends if any."""
    text = text or "…"
    pieces: list[str] = []
    while len(text) > limit:
        cut = text.rfind("\n", 0, limit)
        if cut <= 0:
            cut = limit
        pieces.append(text[:cut])
        text = text[cut:].lstrip("\n")
    pieces.append(text)
    return pieces
