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
from sqlmodel import col, select

from storage import registry
from storage.db import Database
from storage.models import Account
from tests.processes import ISIQBOT, free_port, isiqbot_env, run_isiqbot

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


# --- isiqbot registry import: the guard against a cut-short export, and what it did --------------------
# These run on SQLite and on PostgreSQL (the `db_url` fixture), the command as its own process.

SAMPLE_HEADER, *SAMPLE_ROWS = registry.SAMPLE_CSV.read_text(encoding="utf-8").splitlines()  # 43 accounts
HOW_TO_GO_ON = [
    "  An export that was cut short looks like this: check the file first. If these accounts are",
    "  really gone, import it again with --allow-deactivate, or set another limit with",
    "  --max-deactivate PERCENT.",
]


def registry_file(tmp_path: Path, name: str, rows: list[str]) -> Path:
    path = tmp_path / name
    path.write_text("\n".join([SAMPLE_HEADER, *rows]) + "\n", encoding="utf-8")
    return path


def registry_import(tmp_path: Path, db_url: str, file: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    env = isiqbot_env(tmp_path, DATABASE_URL=db_url, LOG_LEVEL="WARNING")  # no migration log on stderr
    return run_isiqbot(tmp_path, "registry", "import", str(file), *flags, env=env)


def summary(file: Path, counts: str, persons: str, accounts: str, points: str) -> list[str]:
    return [
        f"{file}: imported {counts}",
        f"  persons: {persons}",
        f"  accounts: {accounts}",
        f"  metering points: {points}",
    ]


async def active_codes(db_url: str) -> set[str]:
    db = Database(db_url)
    try:
        async with db.transaction() as session:
            return set((await session.scalars(select(Account.code).where(col(Account.active)))).all())
    finally:
        await db.dispose()


async def test_registry_import_refuses_a_cut_short_export(tmp_path: Path, db_url: str) -> None:
    full = registry_file(tmp_path, "full.csv", SAMPLE_ROWS)
    done = registry_import(tmp_path, db_url, full)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == summary(
        full,
        "25 persons, 43 accounts, 25 metering points",
        "25 added, 0 changed",
        "43 added, 0 changed, 0 deactivated",
        "25 added, 0 changed, 0 deactivated",
    )
    everyone = await active_codes(db_url)
    assert len(everyone) == 43

    cut = registry_file(tmp_path, "cut.csv", SAMPLE_ROWS[:2])  # two residential accounts of one person
    done = registry_import(tmp_path, db_url, cut)
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert done.stdout == ""
    assert done.stderr.splitlines() == [
        f"{cut}: nothing was imported: it would set 41 of 43 active accounts inactive (95.35%), "
        "more than the limit of 5%.",
        *HOW_TO_GO_ON,
    ]
    assert await active_codes(db_url) == everyone

    done = registry_import(tmp_path, db_url, cut, "--allow-deactivate")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == summary(
        cut,
        "1 persons, 2 accounts, 0 metering points",
        "0 added, 0 changed",
        "0 added, 0 changed, 41 deactivated",
        "0 added, 0 changed, 25 deactivated",
    )
    assert await active_codes(db_url) == {"591210350344663", "895630945463382"}

    done = registry_import(tmp_path, db_url, full)  # everyone back: nothing is deactivated, so no flag
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == summary(
        full,
        "25 persons, 43 accounts, 25 metering points",
        "0 added, 0 changed",
        "0 added, 41 changed, 0 deactivated",  # active again
        "0 added, 25 changed, 0 deactivated",
    )
    assert await active_codes(db_url) == everyone


async def test_registry_import_max_deactivate(tmp_path: Path, db_url: str) -> None:
    full = registry_file(tmp_path, "full.csv", SAMPLE_ROWS)
    assert registry_import(tmp_path, db_url, full).returncode == 0

    # The last rows of the sample are residential accounts of their own: 2 of 43 is 4.65%, under 5%.
    two_gone = registry_file(tmp_path, "two-gone.csv", SAMPLE_ROWS[:-2])
    done = registry_import(tmp_path, db_url, two_gone)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == summary(
        two_gone,
        "23 persons, 41 accounts, 25 metering points",
        "0 added, 0 changed",
        "0 added, 0 changed, 2 deactivated",
        "0 added, 0 changed, 0 deactivated",
    )
    assert len(await active_codes(db_url)) == 41
    assert registry_import(tmp_path, db_url, full).returncode == 0

    # 3 of 43 is 6.98%: over the default, over 6.9, under 7.
    three_gone = registry_file(tmp_path, "three-gone.csv", SAMPLE_ROWS[:-3])
    done = registry_import(tmp_path, db_url, three_gone)
    assert done.returncode == 1
    assert done.stderr.splitlines()[0] == (
        f"{three_gone}: nothing was imported: it would set 3 of 43 active accounts inactive (6.98%), "
        "more than the limit of 5%."
    )
    done = registry_import(tmp_path, db_url, three_gone, "--max-deactivate", "6.9")
    assert done.returncode == 1
    assert done.stderr.splitlines()[0].endswith("(6.98%), more than the limit of 6.9%.")
    assert len(await active_codes(db_url)) == 43
    done = registry_import(tmp_path, db_url, three_gone, "--max-deactivate", "7%")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[2] == "  accounts: 0 added, 0 changed, 3 deactivated"
    assert len(await active_codes(db_url)) == 40


async def test_registry_import_first_import_is_never_refused(tmp_path: Path, db_url: str) -> None:
    small = registry_file(tmp_path, "small.csv", SAMPLE_ROWS[-2:])
    done = registry_import(tmp_path, db_url, small, "--max-deactivate", "0")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == summary(
        small,
        "2 persons, 2 accounts, 0 metering points",
        "2 added, 0 changed",
        "2 added, 0 changed, 0 deactivated",
        "0 added, 0 changed, 0 deactivated",
    )
    assert await active_codes(db_url) == {"590869685200678", "599805035871914"}


async def test_registry_import_refuses_a_formula(tmp_path: Path, db_url: str) -> None:
    formula = '"=HYPERLINK(""http://evil"",""x"")"'  # quoted as a spreadsheet saves it
    rows = [*SAMPLE_ROWS[:2], SAMPLE_ROWS[2].replace("Quliyev Rauf Tofiq oğlu", formula)]
    rows[0] = rows[0].removesuffix(",Yasamal") + ",@SUM(1+1)"
    bad = registry_file(tmp_path, "bad.csv", rows)
    done = registry_import(tmp_path, db_url, bad)
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert done.stderr.splitlines() == [
        f"{bad}: nothing was imported; 2 problem(s):",
        "  line 2: region looks like a spreadsheet formula (it starts with '@')",
        "  line 4: full_name looks like a spreadsheet formula (it starts with '=')",
    ]
    assert await active_codes(db_url) == set()


@pytest.mark.parametrize(
    ("flags", "error"),
    [
        (["--max-deactivate", "101"], "argument --max-deactivate: a percentage from 0 to 100, not '101'"),
        (["--max-deactivate", "-1"], "argument --max-deactivate: a percentage from 0 to 100, not '-1'"),
        (["--max-deactivate", "nan"], "argument --max-deactivate: a percentage from 0 to 100, not 'nan'"),
        (["--max-deactivate", "five"], "argument --max-deactivate: not a number: 'five'"),
        (
            ["--max-deactivate", "10", "--allow-deactivate"],
            "argument --allow-deactivate: not allowed with argument --max-deactivate",
        ),
    ],
)
def test_registry_import_flags_are_checked(tmp_path: Path, flags: list[str], error: str) -> None:
    file = registry_file(tmp_path, "full.csv", SAMPLE_ROWS)
    done = run_isiqbot(tmp_path, "registry", "import", str(file), *flags, env=isiqbot_env(tmp_path))
    assert done.returncode == 2
    assert done.stderr.splitlines()[-1] == f"isiqbot registry import: error: {error}"
    assert not (tmp_path / "isiqbot.db").exists()  # refused before the database is opened
