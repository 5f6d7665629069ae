"""The import rules of the house, checked on the source.

The top-level packages stand in layers, each importing only those below it:

    locales  ←  dialogs (the domain: the conversation, the lifecycle, who is told what)
             ←  storage (tables, repositories)  ←  bot (the shell: channels, staff, notify, web)

Inside `bot/`, each channel lives in its own folder of `bot/channels/` and imports no other channel;
outside the channels only the composition root (`bot/app.py`) knows them by name.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
LAYERS = ("locales", "dialogs", "storage", "bot")
DRIVERS = ("aiogram", "aiohttp", "sqlalchemy", "sqlmodel", "alembic", "asyncpg", "aiosqlite", "jinja2")
MAY_USE_DRIVERS = {"storage": ("sqlalchemy", "sqlmodel", "alembic", "asyncpg", "aiosqlite")}
CHANNELS = ROOT / "bot" / "channels"
COMPOSITION_ROOT = ROOT / "bot" / "app.py"


def imports_of(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def under(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def channel_folders() -> list[Path]:
    return sorted(p for p in CHANNELS.iterdir() if p.is_dir() and (p / "__init__.py").exists())


@pytest.mark.parametrize("layer", LAYERS)
def test_a_layer_imports_only_the_layers_below_it(layer: str) -> None:
    above = LAYERS[LAYERS.index(layer) + 1 :]
    drivers = [d for d in DRIVERS if layer != "bot" and d not in MAY_USE_DRIVERS.get(layer, ())]
    files = list((ROOT / layer).rglob("*.py"))
    assert files
    for path in files:
        for name in imports_of(path):
            for banned in (*above, *drivers):
                assert not under(name, banned), f"{path.relative_to(ROOT)} imports {name}"


def test_there_are_channels_to_check() -> None:
    assert {p.name for p in channel_folders()} >= {"telegram", "whatsapp"}


@pytest.mark.parametrize("folder", channel_folders(), ids=lambda p: p.name)
def test_a_channel_imports_no_other_channel(folder: Path) -> None:
    others = [f"bot.channels.{p.name}" for p in channel_folders() if p != folder]
    for path in folder.rglob("*.py"):
        for name in imports_of(path):
            assert not any(under(name, other) for other in others), f"{path.relative_to(ROOT)} imports {name}"


def test_outside_the_channels_only_the_composition_root_imports_one() -> None:
    named = [f"bot.channels.{p.name}" for p in channel_folders()]
    for path in (ROOT / "bot").rglob("*.py"):
        if path == COMPOSITION_ROOT or CHANNELS in path.parents:
            continue
        for name in imports_of(path):
            where = path.relative_to(ROOT)
            assert not any(under(name, channel) for channel in named), f"{where} imports {name}"


def test_no_platform_is_named_outside_its_channel() -> None:
    """A string "telegram" or "whatsapp" outside the channels is a rule about a channel kept elsewhere."""
    platforms = {p.name for p in channel_folders()}
    for layer in ("dialogs", "storage", "bot"):
        for path in (ROOT / layer).rglob("*.py"):
            if CHANNELS in path.parents or path == COMPOSITION_ROOT or "migrations" in path.parts:
                continue
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Constant) and isinstance(node.value, str):
                    where = path.relative_to(ROOT)
                    assert node.value.lower() not in platforms, f"{where} names {node.value!r}"
