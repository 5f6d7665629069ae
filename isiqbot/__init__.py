"""isiqbot: technical-service applications of "Azərişıq" ASC in Telegram, WhatsApp and the terminal."""

__version__ = "0.1.0"
