"""/metrics of `isiqbot run`, scraped as Prometheus does, from processes started as operators start them.

What a process counts (updates, sends, 429s, codes) is its own; what the database holds is exported by
one replica at a time, the holder of the `metrics` lease, and taken over when it stops. /metrics is not
served to the public: a request through the proxy needs METRICS_TOKEN, and METRICS_PORT moves it to a
port of its own.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from tests.fake_telegram import TOKEN, FakeTelegram, TelegramUser
from tests.processes import ISIQBOT, free_port, isiqbot_env

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples(text: str) -> Samples:
    """Every sample of the exposition by name and labels (the format is parsed, not searched)."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    async with aiohttp.ClientSession() as http, http.get(url, headers=headers) as response:
        return response.status, await response.text()


@contextmanager
def process(tmp_path: Path, **settings: str) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    port = free_port()
    env = isiqbot_env(tmp_path, "shared.db", HTTP_PORT=str(port), DEADLINE_CHECK_SECONDS="0.5", **settings)
    bot = subprocess.Popen([ISIQBOT, "run"], cwd=tmp_path, env=env, stderr=subprocess.DEVNULL)
    try:
        yield bot, port
    finally:
        if bot.poll() is None:
            bot.send_signal(signal.SIGTERM)
            try:
                bot.wait(timeout=20)
            except subprocess.TimeoutExpired:
                bot.kill()


async def until(check, what: str, within: float = 30):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + within
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within} s: {what}")
        await asyncio.sleep(0.1)


async def scrape(port: int, headers: dict[str, str] | None = None) -> Samples | None:
    try:
        status, body = await get(f"http://127.0.0.1:{port}/metrics", headers)
    except aiohttp.ClientConnectionError:
        return None  # not listening yet
    assert status == 200, body
    return samples(body)


@asynccontextmanager
async def running(tmp_path: Path, **settings: str) -> AsyncIterator[tuple[subprocess.Popen[bytes], int]]:
    with process(tmp_path, **settings) as (bot, port):
        await until(lambda: _ready(port), "the process answers /healthz")
        yield bot, port


async def _ready(port: int) -> bool:
    try:
        return (await get(f"http://127.0.0.1:{port}/healthz"))[0] == 200
    except aiohttp.ClientConnectionError:
        return False


def reporter(metrics: Samples) -> float:
    return metrics[("isiqbot_metrics_reporter", ())]


def database_families(metrics: Samples) -> set[str]:
    wide = (
        "isiqbot_applications",
        "isiqbot_outbox",
        "isiqbot_outbox_due",
        "isiqbot_outbox_oldest_due_seconds",
    )
    return {name for name, _ in metrics if name in wide}


async def test_two_replicas_export_the_database_once_and_the_second_takes_over(tmp_path: Path) -> None:
    async with running(tmp_path) as (first, first_port), running(tmp_path) as (_, second_port):
        one = await scrape(first_port)
        two = await scrape(second_port)
        assert one is not None and two is not None
        assert (reporter(one), reporter(two)) == (1.0, 0.0)
        assert "isiqbot_applications" in database_families(one) and "isiqbot_outbox" in database_families(one)
        assert database_families(two) == set()  # a sum over the replicas counts them once

        first.send_signal(signal.SIGTERM)  # a clean stop gives the lease up …
        assert first.wait(timeout=20) == 0

        async def taken_over() -> Samples | None:
            metrics = await scrape(second_port)
            return metrics if metrics is not None and reporter(metrics) == 1.0 else None

        now = await until(
            taken_over, "the second replica reports the database", within=10
        )  # … at its next turn
        assert "isiqbot_applications" in database_families(now)


async def test_metrics_are_not_for_the_public(tmp_path: Path) -> None:
    proxied = {"X-Forwarded-For": "203.0.113.7"}  # what the reverse proxy adds to a request from outside
    async with running(tmp_path, METRICS_TOKEN="scrape-token-0123") as (_, port):
        url = f"http://127.0.0.1:{port}/metrics"
        assert (await get(url, proxied))[0] == 403
        assert (await get(url, proxied | {"Authorization": "Bearer wrong"}))[0] == 403
        status, body = await get(url, proxied | {"Authorization": "Bearer scrape-token-0123"})
        assert status == 200 and "isiqbot_updates_total" in body
        assert (await get(url))[0] == 200  # Prometheus on this machine or the private network

    metrics_port = free_port()
    async with running(tmp_path, METRICS_PORT=str(metrics_port)) as (_, port):
        assert (await get(f"http://127.0.0.1:{port}/metrics"))[0] == 404  # not on the public port at all
        status, body = await get(f"http://127.0.0.1:{metrics_port}/metrics", proxied)
        assert status == 200 and "isiqbot_metrics_reporter 1.0" in body


async def test_updates_sends_and_429s_are_counted_by_channel(tmp_path: Path, fake: FakeTelegram) -> None:
    async with running(tmp_path, TELEGRAM_BOT_TOKEN=TOKEN, TELEGRAM_API_URL=fake.url) as (_, port):
        user = TelegramUser(fake, 701)
        assert "Azərişıq" in await user.text("/start")
        update = fake.push(user._message(text="/start"))
        await fake.processed(update)
        await fake.processed(fake.push(user._message(text="/start"), update_id=update))  # delivered again

        async def counted() -> Samples | None:
            metrics = await scrape(port)
            repeated = ("isiqbot_updates_total", (("channel", "telegram"), ("outcome", "repeated")))
            return metrics if metrics is not None and metrics.get(repeated) == 1.0 else None

        metrics = await until(counted, "the update delivered again counted as repeated")
        handled = ("isiqbot_updates_total", (("channel", "telegram"), ("outcome", "handled")))
        assert metrics[handled] == 2.0  # the question asked again after it is not another update
        assert metrics[("isiqbot_update_seconds_count", (("channel", "telegram"),))] == 3.0
        assert metrics[("isiqbot_update_seconds_sum", (("channel", "telegram"),))] > 0

        fake.retry_after = 1
        fake.throttled_until = time.monotonic() + 2  # Telegram answers 429 for two seconds
        await fake.processed(fake.push(user._message(text="/start")))

        async def throttled() -> Samples | None:
            metrics = await scrape(port)
            key = ("isiqbot_rate_limited_total", (("channel", "telegram"),))
            return metrics if metrics is not None and metrics.get(key, 0) >= 1 else None

        await until(throttled, "the 429 counted")
