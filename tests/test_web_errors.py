"""Every failure of the web server is answered in JSON, never with a traceback.

The app is the one `isiqbot run` serves (`Service.app`: the Telegram and WhatsApp webhooks,
`/sms/delivery`, the status page, `/healthz`, `/readyz`, `/metrics`), on a real port. Bad input is a
4xx, the database being away is 503 with Retry-After, a bug is 500 `{"error": "internal"}` logged once.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from sqlmodel import func, select

from bot.app import Service, build
from bot.channels.telegram.channel import SECRET_HEADER
from bot.web.server import MAX_JSON_DEPTH, TooDeep, loads_json
from storage import applications as storage_applications
from storage.db import Database
from storage.models import Application, Notification, ProcessedUpdate
from tests.assembly import FAST, settings_in
from tests.fake_graph import APP_SECRET, GRAPH_TOKEN, PHONE_NUMBER_ID, VERIFY_TOKEN, FakeGraph, WaUser, sign
from tests.fake_telegram import TOKEN, FakeTelegram, TelegramUser
from tests.processes import free_port

SECRET = "webhook_secret_for_tests"
SMS_TOKEN = "sms-token-for-tests"
DEEP = b"[" * 10_000 + b"]" * 10_000  # far deeper than any parser's stack
DOWN = "postgresql+asyncpg://postgres@127.0.0.1:1/isiqbot"  # nothing listens on port 1


def nested(depth: int) -> dict[str, Any]:
    """Objects within objects, `depth` in all: parses fine, but deeper than any real update."""
    value: dict[str, Any] = {"text": "x"}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


async def bug(request: web.Request) -> web.Response:
    raise RuntimeError("a bug in a handler")


@dataclass
class Site:
    url: str
    service: Service
    db: Database

    async def count(self, model: type) -> int:
        async with self.db.transaction() as session:
            return int(await session.scalar(select(func.count()).select_from(model)) or 0)


@asynccontextmanager
async def serve(db: Database, fake: FakeTelegram, graph: FakeGraph, folder: Path) -> AsyncIterator[Site]:
    settings = settings_in(
        folder,
        TELEGRAM_BOT_TOKEN=TOKEN,
        TELEGRAM_API_URL=fake.url,
        TELEGRAM_WEBHOOK_URL="https://bot.azerisiq.az/telegram/webhook",
        TELEGRAM_WEBHOOK_SECRET=SECRET,
        WHATSAPP_TOKEN=GRAPH_TOKEN,
        WHATSAPP_PHONE_NUMBER_ID=PHONE_NUMBER_ID,
        WHATSAPP_APP_SECRET=APP_SECRET,
        WHATSAPP_VERIFY_TOKEN=VERIFY_TOKEN,
        WHATSAPP_API_URL=graph.url,
        SMS_GATEWAY_TOKEN=SMS_TOKEN,
    )
    service = await build(settings, db=db, pace=FAST)
    runner = web.AppRunner(service.app(("GET", "/bug", bug)))  # the application `run` serves, and a bug
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield Site(f"http://127.0.0.1:{port}", service, db)
    finally:
        await runner.cleanup()
        await service.close()


@pytest.fixture
async def graph() -> AsyncIterator[FakeGraph]:
    server = FakeGraph()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def site(
    sample_db: Database, fake: FakeTelegram, graph: FakeGraph, tmp_path: Path
) -> AsyncIterator[Site]:
    async with serve(sample_db, fake, graph, tmp_path / "env") as served:
        yield served


@pytest.fixture
async def down(fake: FakeTelegram, graph: FakeGraph, tmp_path: Path) -> AsyncIterator[Site]:
    """The same service while its database (PostgreSQL) does not answer."""
    db = Database(DOWN)
    try:
        async with serve(db, fake, graph, tmp_path / "env") as served:
            yield served
    finally:
        await db.dispose()


async def call(
    method: str, url: str, data: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, str, dict[str, str]]:
    async with aiohttp.ClientSession() as http, http.request(method, url, data=data, headers=headers) as r:
        return r.status, await r.text(), dict(r.headers)


def error_of(status: int, body: str, headers: dict[str, str]) -> tuple[int, Any]:
    """The status and the JSON body, after checking that it is JSON and holds no traceback."""
    assert headers["Content-Type"].startswith("application/json"), (status, headers, body)
    assert "Traceback" not in body and 'File "' not in body, body
    return status, json.loads(body)


def tracebacks(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.exc_info is not None or "Traceback" in r.getMessage()]


def whatsapp_message() -> bytes:
    user = WaUser(FakeGraph(), "", "994996510079")
    return json.dumps(user.envelope(type="text", text={"body": "Salam"})).encode()


# ---- bad input: 400, and nothing reaches the dialog ---------------------------------------------------


async def test_deeply_nested_json_to_the_telegram_webhook_is_400_and_changes_nothing(
    site: Site, fake: FakeTelegram, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"{site.url}/telegram/webhook"
    headers = {SECRET_HEADER: SECRET, "Content-Type": "application/json"}
    update = {"update_id": 9001, "message": nested(MAX_JSON_DEPTH + 5)}  # parses, but deeper than allowed
    for body in (DEEP, b'{"update_id": 9000, "message": ' + DEEP + b"}", json.dumps(update).encode()):
        status, answer = error_of(*await call("POST", url, body, headers))
        assert (status, answer) == (400, {"error": "too deeply nested"})
    assert await site.count(ProcessedUpdate) == 0 and await site.count(Application) == 0
    assert fake.sent == []  # the dialog never saw it
    assert tracebacks(caplog) == []


async def test_deeply_nested_json_to_the_whatsapp_webhook_is_400_and_changes_nothing(
    site: Site, graph: FakeGraph, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"{site.url}/whatsapp/webhook"
    for body in (DEEP, b'{"object": "whatsapp_business_account", "entry": ' + DEEP + b"}"):
        headers = {"X-Hub-Signature-256": sign(body), "Content-Type": "application/json"}
        status, answer = error_of(*await call("POST", url, body, headers))
        assert status == 400 and answer["error"], answer
    assert await site.count(ProcessedUpdate) == 0 and await site.count(Application) == 0
    assert graph.sent == []
    assert tracebacks(caplog) == []


async def test_deeply_nested_json_to_a_handler_that_does_not_check_is_400(
    site: Site, caplog: pytest.LogCaptureFixture
) -> None:
    # /sms/delivery reads its body with request.json(): the RecursionError reaches the middleware.
    headers = {"Authorization": f"Bearer {SMS_TOKEN}"}
    status, answer = error_of(*await call("POST", f"{site.url}/sms/delivery", DEEP, headers))
    assert (status, answer) == (400, {"error": "too deeply nested"})
    assert await site.count(Notification) == 0
    assert tracebacks(caplog) == []


def test_json_depth_is_counted_without_recursion() -> None:
    assert loads_json(json.dumps(nested(MAX_JSON_DEPTH))) == nested(MAX_JSON_DEPTH)
    assert loads_json(b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH) is not None
    assert loads_json(b'"just a string"') == "just a string"
    for deep in (json.dumps(nested(MAX_JSON_DEPTH + 1)).encode(), b"[" * 65 + b"]" * 65, DEEP):
        with pytest.raises(TooDeep):
            loads_json(deep)
    with pytest.raises(ValueError):
        loads_json(b"{not json")


# ---- aiohttp's own refusals keep their status, in JSON ----------------------------------------------


async def test_aiohttps_own_refusals_are_json(site: Site) -> None:
    assert error_of(*await call("GET", f"{site.url}/nowhere")) == (404, {"error": "not found"})
    status, body, headers = await call("POST", f"{site.url}/metrics")
    assert error_of(status, body, headers) == (405, {"error": "method not allowed"})
    assert "GET" in headers["Allow"]  # what a 405 says, kept
    big = b"[" + b"1," * 600_000 + b"1]"  # more than the 1 MB a request may carry
    headers = {"Authorization": f"Bearer {SMS_TOKEN}"}
    status, answer = error_of(*await call("POST", f"{site.url}/sms/delivery", big, headers))
    assert status == 413 and answer["error"]


async def test_the_status_pages_own_html_answers_pass_unchanged(site: Site) -> None:
    status, body, headers = await call("GET", f"{site.url}/a/{'B' * 28}")
    assert status == 404 and headers["Content-Type"].startswith("text/html") and "<html" in body


# ---- a bug: 500, logged once, by us -------------------------------------------------------------------


async def test_a_bug_is_500_internal_and_logged_once(
    site: Site, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.clear()
    with caplog.at_level(logging.INFO):
        assert error_of(*await call("GET", f"{site.url}/bug")) == (500, {"error": "internal"})
    logged = tracebacks(caplog)
    assert [(r.name, r.levelno) for r in logged] == [("bot.web.server", logging.ERROR)]
    assert "GET /bug failed" in logged[0].getMessage() and "a bug in a handler" in caplog.text
    assert not [r for r in caplog.records if r.name.startswith("aiohttp") and r.levelno >= logging.ERROR]

    async def broken(session: object) -> dict[str, int]:
        raise KeyError("status")

    monkeypatch.setattr(storage_applications, "count_by_status", broken)
    await site.service.metrics.renew(site.service.conversations.clock())  # it reports the database
    caplog.clear()
    assert error_of(*await call("GET", f"{site.url}/metrics")) == (500, {"error": "internal"})
    assert [r.getMessage() for r in tracebacks(caplog)] == ["GET /metrics failed"]


# ---- the database away: 503 "try again" --------------------------------------------------------------


async def test_with_the_database_down_every_route_answers_503_json(
    down: Site, fake: FakeTelegram, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.clear()
    status, body, headers = await call("GET", f"{down.url}/metrics")  # the process's own metrics still
    assert status == 200 and "isiqbot_updates_total" in body
    status, answer = error_of(*await call("GET", f"{down.url}/healthz"))
    assert (status, answer) == (503, {"status": "error", "database": "unreachable"})  # as it always was
    status, answer = error_of(*await call("GET", f"{down.url}/readyz"))
    assert status == 503 and answer["status"] == "not ready"

    update = {"update_id": 501, **TelegramUser(fake, 501)._message(text="/start")}
    headers = {SECRET_HEADER: SECRET, "Content-Type": "application/json"}
    status, body, answered = await call(
        "POST", f"{down.url}/telegram/webhook", json.dumps(update).encode(), headers
    )
    assert error_of(status, body, answered) == (503, {"error": "try again"}) and "Retry-After" in answered
    body_bytes = whatsapp_message()
    headers = {"X-Hub-Signature-256": sign(body_bytes), "Content-Type": "application/json"}
    status, body, answered = await call("POST", f"{down.url}/whatsapp/webhook", body_bytes, headers)
    assert error_of(status, body, answered) == (503, {"error": "try again"}) and "Retry-After" in answered
    report = json.dumps({"id": "sms-1", "status": "delivered"}).encode()
    headers = {"Authorization": f"Bearer {SMS_TOKEN}"}
    assert error_of(*await call("POST", f"{down.url}/sms/delivery", report, headers)) == (
        503,
        {"error": "try again"},
    )
    token = down.service.settings.http.links().token(1)
    assert error_of(*await call("GET", f"{down.url}/a/{token}")) == (503, {"error": "try again"})
    assert tracebacks(caplog) == []  # expected while the database is away: warnings, no tracebacks
    assert fake.sent == []
