"""The `isiqbot` command as a newcomer runs it: chat in a terminal, migrate, run, and a kill mid-way."""

from __future__ import annotations

import json
import re
import signal
import sqlite3
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from tests.processes import ISIQBOT, free_port, isiqbot_env

APPLICATION_IN_AZERBAIJANI = [
    "1",  # Yeni müraciət
    "/contact +994996510079",
    "1",  # the only subscriber code
    "5",  # sparks, smoke or burning smell
    "Sayğacın yanında qığılcım çıxır, yanıq iyi gəlir.",
    "/photo sayğac.jpg",
    "/location 40.3777 49.8920",
    "1",  # continue
    "1",  # keep the mobile number
    "1",  # no extra numbers
    "elcin@example.az",
    "1",  # Müraciəti göndər
    "/my",
    "/staff",
    "list",
    "take 1",
    'complete 1 "Sayğac və kabel dəyişdirildi"',
    "subscriber",
    "/quit",
]


def env_for(tmp_path: Path) -> dict[str, str]:
    return isiqbot_env(tmp_path, "data/isiqbot.db")


def run_chat(tmp_path: Path, lines: list[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [ISIQBOT, "chat"],
        input="\n".join(lines) + "\n",
        capture_output=True,
        text=True,
        encoding="utf-8",
        cwd=tmp_path,
        env=env_for(tmp_path),
        timeout=timeout,
    )


def test_a_newcomer_files_an_application_and_staff_complete_it(tmp_path: Path) -> None:
    result = run_chat(tmp_path, APPLICATION_IN_AZERBAIJANI)
    out = result.stdout
    assert result.returncode == 0, result.stderr
    assert "Xoş gəlmisiniz, Məmmədov Elçin Rasim oğlu! FİN: M9*****" in out
    assert "avadanlığa yaxınlaşmayın" in out and "199" in out  # the safety advice for sparks
    number = re.search(r"Müraciət nömrəsi: (TX-\d{4}-\d{6})", out)
    assert number, out
    assert f"{number.group(1)} · 168808605066007" in out  # /my
    assert "yeni status — «icradadır»" in out and "yeni status — «icra olunub»" in out
    assert f"ℹ️ {number.group(1)} nömrəli müraciətinizin statusu: icra olunub." in out
    assert "Nəticə: Sayğac və kabel dəyişdirildi" in out
    assert "Traceback" not in result.stderr
    assert (tmp_path / "data" / "isiqbot.db").exists()  # under ./data, as DESIGN.md says


def test_chat_with_the_default_database_location(tmp_path: Path) -> None:
    env = env_for(tmp_path)
    del env["DATABASE_URL"]
    result = subprocess.run(
        [ISIQBOT, "chat", "--lang", "en"],
        input="2\n/quit\n",
        capture_output=True,
        text=True,
        encoding="utf-8",
        cwd=tmp_path,
        env=env,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "You have no applications yet." in result.stdout
    assert (tmp_path / "data" / "isiqbot.db").exists()


def test_migrate(tmp_path: Path) -> None:
    result = subprocess.run(
        [ISIQBOT, "migrate"], capture_output=True, text=True, cwd=tmp_path, env=env_for(tmp_path), timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "up to date" in result.stdout
    with sqlite3.connect(tmp_path / "data" / "isiqbot.db") as connection:
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"application", "conversation", "person", "account", "metering_point", "status_change"} <= tables


def _stored(tmp_path: Path) -> tuple[list[str], list[tuple[str, int]]]:
    with sqlite3.connect(tmp_path / "data" / "isiqbot.db") as connection:
        states = [row[0] for row in connection.execute("SELECT state FROM conversation")]
        apps = list(
            connection.execute(
                "SELECT a.number, count(s.id) FROM application a JOIN status_change s "
                "ON s.application_id = a.id GROUP BY a.number"
            )
        )
    return states, apps


@pytest.mark.parametrize("cut", [3, 5, 8, 12])
def test_killed_at_any_moment_leaves_a_whole_step(tmp_path: Path, cut: int) -> None:
    """SIGKILL while the chat works through input; the stored state is the step before or after."""
    run_chat(tmp_path, ["/quit"])  # create the database and load the sample registry first
    process = subprocess.Popen(
        [ISIQBOT, "chat"],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
        encoding="utf-8",
        cwd=tmp_path,
        env=env_for(tmp_path),
    )
    assert process.stdin is not None
    process.stdin.write("\n".join(APPLICATION_IN_AZERBAIJANI[:cut]) + "\n")
    process.stdin.flush()
    time.sleep(0.3 + cut * 0.05)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)

    states, apps = _stored(tmp_path)
    for raw in states:
        state = json.loads(raw)
        assert state["step"] in {
            "menu",
            "ask_phone",
            "account",
            "reason",
            "description",
            "attachments",
            "mobile",
            "extra_phones",
            "email",
            "review",
        }
    for _number, changes in apps:
        assert changes == 1  # registered with its one status record, never half of it
    # A restart goes on from where the conversation stood.
    result = run_chat(tmp_path, ["/my", "/quit"])
    assert result.returncode == 0 and "Traceback" not in result.stderr


def test_run_serves_health_and_metrics_and_stops_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    env = env_for(tmp_path) | {"HTTP_PORT": str(port)}
    process = subprocess.Popen(
        [ISIQBOT, "run"], cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
                    assert response.status == 200
                    assert json.loads(response.read()) == {"status": "ok"}
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise
                time.sleep(0.2)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
            assert "# TYPE isiqbot_applications gauge" in response.read().decode()
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=20)
    assert process.returncode == 0, err


def test_undecodable_input_does_not_crash_the_chat(tmp_path: Path) -> None:
    result = subprocess.run(
        [ISIQBOT, "chat"],
        input=b"/\xff\n\xfe\xfd\n/quit\n",
        capture_output=True,
        cwd=tmp_path,
        env=env_for(tmp_path) | {"LC_ALL": "C.UTF-8"},
        timeout=60,
    )
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    assert b"Traceback" not in result.stderr
