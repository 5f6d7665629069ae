"""The chaos suite's figures, printed at the end of the run (`make test` runs the short version,
`make chaos` the long one)."""

from __future__ import annotations

import os
from typing import Any

import pytest

FIGURES: list[str] = []
LONG = os.environ.get("ISIQBOT_CHAOS") == "long"
SUBSCRIBERS = int(os.environ.get("CHAOS_SUBSCRIBERS") or (100 if LONG else 20))
HOSTILE = int(os.environ.get("CHAOS_HOSTILE") or (10_000 if LONG else 1_000))


def figure(line: str) -> None:
    FIGURES.append(line)
    print(line)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if FIGURES:
        terminalreporter.section(f"chaos figures ({'long' if LONG else 'short'} run)")
        for line in FIGURES:
            terminalreporter.write_line(line)


@pytest.fixture
def scale() -> int:
    return SUBSCRIBERS
