"""The `isiqbot` command as a newcomer runs it: chat in a terminal, migrate, run, and a kill mid-way."""

from __future__ import annotations

import codecs
import csv
import io
import json
import queue
import re
import signal
import sqlite3
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlmodel import col, select

from dialogs.state import Step
from locales import MissingMessage, Msg, translate
from storage import registry
from storage.db import Database
from storage.models import Account
from tests.chat import PLAIN
from tests.processes import ISIQBOT, free_port, isiqbot_env, run_isiqbot

NUMBER = re.compile(r"TX-\d{4}-\d{6}")
LOG_LINE = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ (DEBUG|INFO|WARNING|ERROR|CRITICAL) ", re.MULTILINE
)
# Typed blindly, without reading the answers: what a person's keystrokes might be while filing one.
KEYSTROKES = [
    "1",  # Yeni müraciət
    "/contact +994996510079",
    "1",
    "5",
    "Sayğacın yanında qığılcım çıxır, yanıq iyi gəlir.",
    "/photo sayğac.jpg",
    "/location 40.3777 49.8920",
    "1",
    "1",
    "1",
    "elcin@example.az",
    "1",
    "/my",
]


def env_for(tmp_path: Path) -> dict[str, str]:
    return isiqbot_env(tmp_path, "data/isiqbot.db")


def az(key: str, **params: object) -> str | None:
    """A catalog sentence as the chat shows it; None for a key the catalog does not have (any more)."""
    try:
        return translate(Msg(key, params), "az")
    except MissingMessage:
        return None


class Console:
    """`isiqbot chat` as its own process, typed into a line at a time, each answer read before the next."""

    def __init__(self, tmp_path: Path, *args: str) -> None:
        self.process = subprocess.Popen(
            [ISIQBOT, "chat", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=tmp_path,
            env=env_for(tmp_path),
        )
        self.chunks: queue.Queue[bytes] = queue.Queue()
        self.decoder = codecs.getincrementaldecoder("utf-8")()
        self.out = ""  # everything shown so far
        self.errors: list[bytes] = []
        threading.Thread(target=self._pump, daemon=True).start()
        threading.Thread(target=self._collect_errors, daemon=True).start()
        self.screen = self.until_prompt(timeout=120)  # the start: the menu

    def _pump(self) -> None:
        assert self.process.stdout is not None
        while chunk := self.process.stdout.read1(65536):
            self.chunks.put(chunk)
        self.chunks.put(b"")

    def _collect_errors(self) -> None:
        assert self.process.stderr is not None
        while chunk := self.process.stderr.read1(65536):
            self.errors.append(chunk)

    @property
    def err(self) -> str:
        return b"".join(self.errors).decode("utf-8", errors="replace")

    def until_prompt(self, timeout: float = 30) -> str:
        """What is shown until the chat waits for the next line again (its prompt)."""
        shown = ""
        deadline = time.monotonic() + timeout
        while not shown.endswith("> "):
            try:
                chunk = self.chunks.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no prompt in {timeout} s:\n{self.out}\n{self.err}") from None
            if not chunk:
                raise AssertionError(f"the chat ended:\n{self.out}\n{self.err}")
            text = self.decoder.decode(chunk)
            shown += text
            self.out += text
        return shown

    def rest(self) -> str:
        """What is shown until the process closes its output."""
        while chunk := self.chunks.get(timeout=30):
            self.out += self.decoder.decode(chunk)
        return self.out

    def type(self, line: str) -> str:
        assert self.process.stdin is not None
        self.process.stdin.write(f"{line}\n".encode())
        self.process.stdin.flush()
        self.screen = self.until_prompt()
        return self.screen

    def choices(self) -> dict[str, str]:
        """The numbered choices of the last question: label → the number to type."""
        found: dict[str, str] = {}
        for line in self.screen.removesuffix("> ").splitlines():
            numbered = re.fullmatch(r"  (\d+)\. (.+)", line)
            if numbered:
                found[numbered.group(2)] = numbered.group(1)
            elif found and line.strip():
                found = {}  # a later message: its choices are the ones that count
        return found

    def press(self, key: str, **params: object) -> str | None:
        """The number to type for the choice labelled with this catalog sentence, if it is offered."""
        label = az(key, **params)
        return self.choices().get(label) if label else None

    def quit(self) -> int:
        assert self.process.stdin is not None
        self.process.stdin.write(b"/quit\n")
        self.process.stdin.close()
        code = self.process.wait(timeout=30)
        self.rest()
        return code

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


DESCRIPTION = "Sayğacın yanında qığılcım çıxır, yanıq iyi gəlir."


def file_application(console: Console, email: str | None = "elcin@example.az") -> str:
    """Send an application, answering what the dialog asks as a person would; returns its number.

    It follows the questions rather than a script: the phone where a contact is asked, sparks as the
    reason, a photo and a location where they may be attached, the e-mail where one is asked or may be
    added, else the first choice that goes on (never back, cancel or removing the attachments), and the
    description where only text goes on.
    """
    attachments = ["/photo sayğac.jpg", "/location 40.3777 49.8920"]
    email_given = email is None
    never = {az("common.back"), az("common.cancel"), az("attachments.remove")}
    for _ in range(40):
        screen = console.screen
        if send := console.press("review.send"):
            found = NUMBER.search(console.type(send))
            assert found, console.screen
            return found.group()
        add_email = console.press("contacts.add_email")
        if (az("terminal.contact_hint") or "?") in screen:
            console.type(f"/contact {PLAIN}")
        elif reason := console.press("reason.sparks"):
            console.type(reason)
        elif attachments and (az("terminal.location_hint") or "?") in screen:
            console.type(attachments.pop(0))
        elif not email_given and add_email:
            console.type(add_email)
        elif not email_given and console.press("email.skip"):
            console.type(str(email))
            email_given = True
        elif going_on := [number for label, number in console.choices().items() if label not in never]:
            console.type(going_on[0])
        else:
            console.type(DESCRIPTION)
    raise AssertionError(f"no application was sent:\n{console.out}")


@pytest.fixture
def console(tmp_path: Path) -> Iterator[Console]:
    """`isiqbot chat` started in tmp_path, at its first prompt."""
    running = Console(tmp_path)
    try:
        yield running
    finally:
        running.kill()


def test_a_newcomer_files_an_application_and_staff_complete_it(tmp_path: Path, console: Console) -> None:
    number = file_application(console)
    staff = ("/staff", "list", "take 1", 'complete 1 "Sayğac və kabel dəyişdirildi"', "subscriber")
    for line in ("/my", *staff):
        console.type(line)
    assert console.quit() == 0, console.err
    out = console.out
    assert "Xoş gəlmisiniz, Məmmədov Elçin Rasim oğlu! FİN: M9*****" in out
    assert "avadanlığa yaxınlaşmayın" in out and "199" in out  # the safety advice for sparks
    assert f"Müraciət nömrəsi: {number}" in out
    assert f"{number} · 168808605066007" in out  # /my
    assert "yeni status — «icradadır»" in out and "yeni status — «icra olunub»" in out
    assert f"ℹ️ {number} nömrəli müraciətinizin statusu: icra olunub." in out
    assert "Nəticə: Sayğac və kabel dəyişdirildi" in out
    assert "Traceback" not in console.err
    assert (tmp_path / "data" / "isiqbot.db").exists()  # under ./data, as DESIGN.md says


def test_the_sms_and_emails_show_in_the_chat_as_they_would_arrive(console: Console) -> None:
    number = file_application(console)
    link = re.compile(r"http://127\.0\.0\.1:8080/a/[A-Za-z0-9_-]{28}")
    sent = console.screen  # what "Send" shows: the registration, then its SMS and e-mail
    sms = az("sms.registered", number=number, link="LINK") or "?"
    header = "📩 SMS → +994 99 ***-**-79:"
    registered = re.compile(re.escape(f"{header}\n  {sms}").replace("LINK", link.pattern))
    assert registered.search(sent), sent
    subject = az("email.subject_registered", number=number)
    mail = az("terminal.email", address="e***@example.az", subject=subject)
    assert f"{mail}\n  Hörmətli abonent," in sent, sent
    assert re.search(f"{re.escape(az('email.link') or '?')}: {link.pattern}", sent), sent
    assert sent.index(header) < sent.index(mail)
    assert console.type("/my").count(header) == 0  # each is shown once

    for line in ("/staff", "take 1", 'complete 1 "Sayğac və kabel dəyişdirildi"'):
        console.type(line)
    back = console.type("subscriber")
    result = az("sms.result", number=number, status=Msg("status.completed"), link="LINK") or "?"
    completed = re.compile(re.escape(f"{header}\n  {result}").replace("LINK", link.pattern))
    assert completed.search(back), back
    subject = az("email.subject_result", number=number)
    assert f"{az('terminal.email', address='e***@example.az', subject=subject)}\n  Hörmətli abonent," in back
    assert "Nəticə: Sayğac və kabel dəyişdirildi" in back
    assert console.quit() == 0, console.err
    assert len(registered.findall(console.out)) == len(completed.findall(console.out)) == 1


def test_log_lines_go_to_a_file_not_into_the_chat(tmp_path: Path, console: Console) -> None:
    number = file_application(console)
    console.type("/staff")
    console.type("take 1")
    assert console.quit() == 0, console.err
    assert not LOG_LINE.search(console.out), console.out
    assert console.err == ""
    log = (tmp_path / "data" / "isiqbot-chat.log").read_text(encoding="utf-8")  # beside the database
    assert f"INFO bot.core.service: application {number} registered" in log
    assert "has no staff chat" not in log  # the demo's department takes every application

    verbose = subprocess.run(
        [ISIQBOT, "chat", "--verbose"],
        input="/quit\n",
        capture_output=True,
        text=True,
        encoding="utf-8",
        cwd=tmp_path,
        env=env_for(tmp_path) | {"LOG_LEVEL": "DEBUG"},
        timeout=120,
    )
    assert verbose.returncode == 0, verbose.stderr
    assert LOG_LINE.search(verbose.stderr), verbose.stderr  # with --verbose, on standard error
    assert not LOG_LINE.search(verbose.stdout)
    assert (tmp_path / "data" / "isiqbot-chat.log").read_text(encoding="utf-8") == log


def test_ctrl_c_at_the_prompt_ends_the_chat_at_once_and_quietly(console: Console) -> None:
    console.process.send_signal(signal.SIGINT)
    started = time.monotonic()
    code = console.process.wait(timeout=10)
    assert time.monotonic() - started < 5
    assert code == 0  # a way to leave, as /quit and Ctrl-D are
    assert console.rest().endswith("> \n")  # at most a line break after the "^C"
    assert console.err == ""
    assert "Traceback" not in console.out


def test_ctrl_d_still_ends_the_chat(tmp_path: Path, console: Console) -> None:
    assert console.process.stdin is not None
    console.process.stdin.close()
    assert console.process.wait(timeout=10) == 0
    assert console.err == ""


def run_chat(tmp_path: Path, lines: list[str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
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
    process.stdin.write("\n".join(KEYSTROKES[:cut]) + "\n")
    process.stdin.flush()
    time.sleep(0.3 + cut * 0.05)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)

    states, apps = _stored(tmp_path)
    for raw in states:
        state = json.loads(raw)
        assert Step(state["step"]) in Step  # a step of the dialog, never half of one
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


def with_cell(row: str, column: str, value: str) -> str:
    """A row of the sample CSV with one cell changed, the other cells (and columns) as they are."""
    cells = next(csv.reader([row]))
    cells[next(csv.reader([SAMPLE_HEADER])).index(column)] = value
    written = io.StringIO()
    csv.writer(written, lineterminator="").writerow(cells)
    return written.getvalue()


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
    rows[0] = with_cell(rows[0], "region", "@SUM(1+1)")
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
