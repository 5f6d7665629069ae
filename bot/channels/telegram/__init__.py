"""The Telegram channel on aiogram 3, used as a thin transport: types, client and webhook plumbing.

The dialog and its stored state are ours (not aiogram's FSM): `mapping` turns an update into a
neutral event, `render` turns the neutral reply into messages, `channel` ties them to the service.
"""

CHANNEL = "telegram"


def holds(ref: str) -> bool:
    """Whether a stored photo reference is a Telegram file id (other channels' carry a prefix: "wa:")."""
    return ":" not in ref
