"""The Jinja2 templates of e-mails and web pages (`bot/templates/`): HTML autoescaped, so nothing a
subscriber wrote is read as markup; a name missing from the context is an error, not an empty string."""

from __future__ import annotations

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

TEMPLATES = Environment(
    loader=PackageLoader("bot", "templates"),
    autoescape=select_autoescape(enabled_extensions=("html", "html.j2"), default_for_string=False),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
