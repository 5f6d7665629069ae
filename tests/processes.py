"""Running `isiqbot` as its own process, the way an operator does, with a clean environment."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from tests.assembly import LINK_SECRET
from tests.chat import ALL_SETTINGS

ISIQBOT = str(Path(sys.executable).with_name("isiqbot"))


def isiqbot_env(tmp_path: Path, database: str = "isiqbot.db", **values: str) -> dict[str, str]:
    """This environment without any isiqbot setting, a SQLite file under `tmp_path`, and `values`."""
    env = {k: v for k, v in os.environ.items() if k not in ALL_SETTINGS}
    env["DATABASE_URL"] = f"sqlite+aiosqlite:///{tmp_path / database}"
    env["PYTHONIOENCODING"] = "utf-8"
    env["LINK_SECRET"] = LINK_SECRET  # `run` needs one; a test that wants none passes LINK_SECRET=""
    return env | values


def run_isiqbot(
    tmp_path: Path, *args: str, env: dict[str, str], timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [ISIQBOT, *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=timeout,
        check=False,
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
