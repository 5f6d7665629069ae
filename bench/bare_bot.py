"""A bare aiogram 3 webhook bot: the floor the outage-storm benchmark measures isiqbot against.

aiogram's own `SimpleRequestHandler` and `setup_application` on aiohttp, a Dispatcher with one
message handler and one callback handler, each answering with exactly one sendMessage. The handler
runs inside the webhook request (`handle_in_background=False`), so the request is answered only once
the message has been sent, as isiqbot answers. No storage, no limits, no logging per update.

    .venv/bin/python -m bench.bare_bot --port 8090 --api http://127.0.0.1:8081 --secret S
"""

from __future__ import annotations

import argparse
import asyncio
import signal

from aiogram import Bot, Dispatcher
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.types import CallbackQuery, Message
from aiogram.webhook.aiohttp_server import SimpleRequestHandler, setup_application
from aiohttp import web

PATH = "/telegram/webhook"
TOKEN = "7000002:bench-bare-token"  # noqa: S105 (the fake server's, not a secret)


def dispatcher() -> Dispatcher:
    dp = Dispatcher()

    @dp.message()
    async def on_message(message: Message, bot: Bot) -> None:
        await bot.send_message(message.chat.id, f"got {message.content_type}")

    @dp.callback_query()
    async def on_press(query: CallbackQuery, bot: Bot) -> None:
        chat_id = query.message.chat.id if query.message is not None else query.from_user.id
        await bot.send_message(chat_id, f"pressed {query.data}")

    return dp


async def healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok")


async def main(port: int, api: str, secret: str, token: str) -> None:
    bot = Bot(token, session=AiohttpSession(api=TelegramAPIServer.from_base(api)))
    dp = dispatcher()
    app = web.Application()
    SimpleRequestHandler(dp, bot, handle_in_background=False, secret_token=secret).register(app, path=PATH)
    setup_application(app, dp, bot=bot)
    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()  # the shutdown hook closes the bot's session


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--api", required=True, help="the Bot API server's base URL")
    parser.add_argument("--secret", required=True, help="the X-Telegram-Bot-Api-Secret-Token to expect")
    parser.add_argument("--token", default=TOKEN)
    args = parser.parse_args()
    asyncio.run(main(args.port, args.api, args.secret, args.token))
