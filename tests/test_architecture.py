"""The folders' import rules of DESIGN.md, checked on the source."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
DRIVERS = ("aiogram", "aiohttp", "sqlalchemy", "sqlmodel", "alembic", "asyncpg", "aiosqlite")
FORBIDDEN = {
    "dialogs": (*DRIVERS, "storage", "bot"),
    "storage": ("aiogram", "aiohttp", "dialogs", "bot", "locales"),
    "locales": (*DRIVERS, "dialogs", "storage", "bot"),
}


def imports_of(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("folder", sorted(FORBIDDEN))
def test_folder_imports_only_what_it_may(folder: str) -> None:
    files = list((ROOT / folder).rglob("*.py"))
    assert files
    for path in files:
        for name in imports_of(path):
            for banned in FORBIDDEN[folder]:
                assert not (name == banned or name.startswith(banned + ".")), f"{path.name} imports {name}"
