"""The one aiohttp server of the service: /healthz, /metrics, and the routes the channels add.

Every failure is answered in JSON, never with a traceback (the `errors` middleware, on every route):
bad input is a 4xx, the database being away is 503 `{"error": "try again"}` with Retry-After, and
anything else is 500 `{"error": "internal"}`, logged once here. What a handler answers itself, such
as the status page's HTML 404 and 429, passes unchanged.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import logging
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy import text

from bot.core.settings import Network
from storage.db import Database, storage_unavailable

log = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
DB_KEY = web.AppKey("db", Database)
MAX_JSON_DEPTH = 64  # objects and arrays within each other; Telegram's and Meta's bodies need about 10
RETRY_AFTER_SECONDS = 30  # what a 503 asks a client to wait while the database is away
FORWARDED_FOR = "X-Forwarded-For"


class TooDeep(ValueError):
    """A JSON body nested deeper than MAX_JSON_DEPTH (or too deep for the parser itself)."""


def loads_json(raw: bytes | str, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """A request body as JSON. ValueError when it is not JSON; TooDeep when it is nested too deeply.

    What no text column can hold becomes U+FFFD: a lone surrogate ("\\ud800" is valid JSON, but no
    character: it cannot be encoded for a request to Telegram, the database or the log) and U+0000
    (PostgreSQL refuses it in any text).
    """
    try:
        value = json.loads(raw)
    except RecursionError:
        raise TooDeep("too deeply nested") from None
    if not isinstance(value, dict | list):
        return _text(value) if isinstance(value, str) else value
    # Walked with a list, not with recursion: the walk itself never runs out of stack.
    pending: list[tuple[dict[Any, Any] | list[Any], int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if depth > max_depth:
            raise TooDeep("too deeply nested")
        _clean(item)
        children = item.values() if isinstance(item, dict) else item
        pending.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return value


# NUL, and what json.loads leaves of a "\\ud800" that is not one half of a pair
_UNWRITABLE = re.compile("[\x00\ud800-\udfff]")


def _text(text: str) -> str:
    return _UNWRITABLE.sub("\ufffd", text)


def _clean(item: dict[Any, Any] | list[Any]) -> None:
    """The strings of one object or array (not those within it) made writable, in place."""
    if isinstance(item, list):
        for index, child in enumerate(item):
            if isinstance(child, str):
                item[index] = _text(child)
        return
    for key, child in list(item.items()):
        clean = _text(key)
        if clean != key:
            del item[key]
        item[clean] = _text(child) if isinstance(child, str) else child


def error(status: int, message: str, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)


def try_again() -> web.Response:
    """503: the database is away for now; the platform or the client comes again later."""
    return error(503, "try again", {"Retry-After": str(RETRY_AFTER_SECONDS)})


def _route(request: web.Request) -> str:
    """The route, never the path: a status page's path is its token, a working link."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "?"


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """JSON for every failure a handler raises; its own answers pass unchanged."""
    try:
        return await handler(request)
    except web.HTTPException as exc:  # aiohttp's own: 404, 405, 413 …, their status kept
        if exc.status < 400:
            raise
        kept = {k: v for k, v in exc.headers.items() if k.lower() not in ("content-type", "content-length")}
        return error(exc.status, exc.reason.lower(), kept)
    except (RecursionError, TooDeep):
        log.warning("%s %s: the body is nested too deeply (400)", request.method, _route(request))
        return error(400, "too deeply nested")
    except Exception as exc:
        if storage_unavailable(exc):
            log.warning(
                "%s %s: storage unavailable (%s), answered 503",
                request.method,
                _route(request),
                type(exc).__name__,
            )
            return try_again()
        log.exception("%s %s failed", request.method, _route(request))
        return error(500, "internal")


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    text = text.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped  # ::ffff:10.0.0.1 from a dual-stack socket is 10.0.0.1
    return address


def _trusted(address: ipaddress.IPv4Address | ipaddress.IPv6Address, proxies: Iterable[Network]) -> bool:
    return any(address in network for network in proxies)


def client_address(request: web.Request, trusted_proxies: Sequence[Network] = ()) -> str:
    """Who sent the request: the peer, unless the peer is one of `trusted_proxies`.

    From a trusted proxy, X-Forwarded-For is read from the right, as uvicorn and gunicorn do: the
    first address that is not a trusted proxy is the client (everything left of it, the client may
    have written). A header that is absent or malformed where it is read leaves the peer. The header
    of an untrusted peer is never believed.
    """
    peer = request.remote or "?"
    address = _ip(peer)
    if address is None or not _trusted(address, trusted_proxies):
        return peer
    hops = [hop for header in request.headers.getall(FORWARDED_FOR, []) for hop in header.split(",")]
    client = None
    for hop in reversed(hops):
        client = _ip(hop)
        if client is None:
            return peer
        if not _trusted(client, trusted_proxies):
            return str(client)
    return str(client) if client is not None else peer  # all trusted: the leftmost is the client


async def healthz(request: web.Request) -> web.Response:
    """200 when the database answers, 503 otherwise."""
    try:
        async with request.app[DB_KEY].transaction() as session:
            await session.execute(text("SELECT 1"))
    except Exception as exc:  # whatever the failure, the answer is "unhealthy"
        if storage_unavailable(exc):  # expected while it is away: one line, no traceback
            log.warning("health check: the database does not answer (%s)", type(exc).__name__)
        else:
            log.exception("health check: the database does not answer")
        return web.json_response({"status": "error", "database": "unreachable"}, status=503)
    return web.json_response({"status": "ok"})


def metrics_handler(export: Callable[[], Awaitable[bytes]], token: str | None, *, guarded: bool) -> Handler:
    """GET /metrics, in Prometheus's text format. `guarded` on the public port: answered only to
    whoever shows `token`, or to a direct request (no proxy's X-Forwarded-For) from this machine or a
    private network, where Prometheus scrapes from; anyone else gets 403."""

    async def metrics(request: web.Request) -> web.Response:
        if guarded and not _may_read_metrics(request, token):
            return error(403, "forbidden")
        return web.Response(body=await export(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    return metrics


def _may_read_metrics(request: web.Request, token: str | None) -> bool:
    if token is not None:
        shown = request.headers.get("Authorization", "").encode()
        if hmac.compare_digest(shown, f"Bearer {token}".encode()):
            return True
    if FORWARDED_FOR in request.headers or "Forwarded" in request.headers:
        return False  # it came through the reverse proxy, from the internet
    address = _ip(request.remote or "")
    return address is not None and (address.is_loopback or address.is_private)


Route = tuple[str, str, Handler]


def make_app(db: Database, routes: Sequence[Route] = ()) -> web.Application:
    """The service's routes, answered in JSON on every failure (`errors`)."""
    app = web.Application(client_max_size=1024 * 1024, middlewares=[errors])
    app[DB_KEY] = db
    app.router.add_get("/healthz", healthz)
    for method, path, handler in routes:
        app.router.add_route(method, path, handler)
    return app


Listener = tuple[web.Application, str, int]


async def serve(listeners: Sequence[Listener], stop: asyncio.Event) -> None:
    """Serve each application on its host and port until `stop`."""
    runners: list[web.AppRunner] = []
    try:
        for app, host, port in listeners:
            # The access log leaves out the path: a status page's path is its token, a working link.
            runner = web.AppRunner(app, access_log_format="%a %s %b %Tfs")
            runners.append(runner)
            await runner.setup()
            await web.TCPSite(runner, host, port).start()
            log.info("listening on http://%s:%s", host, port)
        await stop.wait()
    finally:
        for runner in runners:
            await runner.cleanup()
