"""The one aiohttp server of the service: /healthz, /metrics, and the routes the channels add."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

from aiohttp import web
from sqlalchemy import text

from isiqbot.bot.metrics import METRICS
from isiqbot.bot.settings import Settings
from isiqbot.storage import applications, outbox
from isiqbot.storage.db import Database

log = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
DB_KEY = web.AppKey("db", Database)


async def healthz(request: web.Request) -> web.Response:
    """200 when the database answers, 503 otherwise."""
    try:
        async with request.app[DB_KEY].transaction() as session:
            await session.execute(text("SELECT 1"))
    except Exception:
        log.exception("health check: the database does not answer")
        return web.json_response({"status": "error", "database": "unreachable"}, status=503)
    return web.json_response({"status": "ok"})


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text format: applications by status, the outbox by state, updates and send latency."""
    async with request.app[DB_KEY].transaction() as session:
        counts = await applications.count_by_status(session)
        states = await outbox.counts_by_state(session)
    lines = [
        "# HELP isiqbot_applications Applications by status.",
        "# TYPE isiqbot_applications gauge",
        *(f'isiqbot_applications{{status="{status}"}} {count}' for status, count in sorted(counts.items())),
        "# HELP isiqbot_outbox Notifications by state.",
        "# TYPE isiqbot_outbox gauge",
        *(f'isiqbot_outbox{{state="{state}"}} {count}' for state, count in sorted(states.items())),
        *METRICS.lines(),
    ]
    return web.Response(text="\n".join(lines) + "\n", content_type="text/plain", charset="utf-8")


Route = tuple[str, str, Handler]


def make_app(db: Database, routes: Sequence[Route] = ()) -> web.Application:
    app = web.Application(client_max_size=1024 * 1024)
    app[DB_KEY] = db
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    for method, path, handler in routes:
        app.router.add_route(method, path, handler)
    return app


async def serve(settings: Settings, db: Database, stop: asyncio.Event, routes: Sequence[Route] = ()) -> None:
    # The access log leaves out the path: a status page's path is its token, a working link.
    runner = web.AppRunner(make_app(db, routes), access_log_format="%a %s %b %Tfs")
    await runner.setup()
    site = web.TCPSite(runner, settings.http.http_host, settings.http.http_port)
    await site.start()
    log.info("listening on http://%s:%s", settings.http.http_host, settings.http.http_port)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
