"""Telegram on the daemon's own event loop (python-telegram-bot): delivers the outbox in order, with
backoff while Telegram is unreachable, and answers commands and buttons from the configured chats only.

Imported only when [telegram].enabled, so a daemon without it does not pay for the library."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import structlog
from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.constants import ParseMode
from telegram.error import BadRequest, Forbidden, InvalidToken, RetryAfter, TelegramError
from telegram.ext import Application, CallbackContext, CallbackQueryHandler, MessageHandler, filters

from picometer.clock import Clock
from picometer.config import TelegramConfig
from picometer.store.outbox import Message, Outbox
from picometer.watch.commands import STALE_S, Commands

log = structlog.get_logger("picometer.telegram")

BACKOFF_S = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0)  # waits between failed deliveries while Telegram is unreachable
POLL_TIMEOUT_S = 50  # long polling: one open request, answered when a command arrives


def retry_seconds(e: RetryAfter) -> float:
    wait = e.retry_after
    return wait.total_seconds() if isinstance(wait, timedelta) else float(wait)


class TelegramBot:
    def __init__(
        self,
        config: TelegramConfig,
        token: str,
        outbox: Outbox,
        commands: Commands,
        clock: Clock,
        on_sent: Callable[[Message], None] = lambda m: None,
    ) -> None:
        self.config = config
        self.outbox = outbox
        self.commands = commands
        self.clock = clock
        self.on_sent = on_sent
        self.connected = False
        self.failures = 0  # deliveries failed in a row
        self._wake = asyncio.Event()
        base = config.api_base.rstrip("/")
        builder = Application.builder().token(token).base_url(f"{base}/bot").base_file_url(f"{base}/file/bot")
        self.app = builder.get_updates_read_timeout(POLL_TIMEOUT_S + 10).build()
        if config.commands:
            chats = filters.Chat(chat_id=list(config.chat_ids))
            self.app.add_handler(MessageHandler(filters.COMMAND & chats, self._on_command))
            self.app.add_handler(CallbackQueryHandler(self._on_button))

    def wake(self) -> None:
        """New messages in the outbox: deliver now rather than at the next backoff step."""
        self._wake.set()

    async def run(self) -> None:
        """Connect (retrying while Telegram is unreachable), start answering, then deliver forever."""
        await self._connect()
        if self.config.commands and self.app.updater is not None:
            await self.app.start()
            await self.app.updater.start_polling(
                timeout=POLL_TIMEOUT_S,
                bootstrap_retries=-1,
                allowed_updates=["message", "callback_query"],
                error_callback=lambda e: log.warning("telegram polling failed, retrying", error=str(e)),
            )
        await self._deliver_forever()

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            if self.app.updater is not None and self.app.updater.running:
                await self.app.updater.stop()
            if self.app.running:
                await self.app.stop()
            if self.connected:
                await self.app.shutdown()

    async def _connect(self) -> None:
        step = 0
        while True:
            try:
                await self.app.initialize()
            except InvalidToken:
                log.error("Telegram refused the bot token: check [telegram].bot_token (from @BotFather)")
            except TelegramError as e:
                log.warning("Telegram unreachable, alerts wait in the outbox", error=str(e))
            else:
                self.connected = True
                log.info("telegram connected", bot=self.app.bot.username, pending=self.outbox.pending())
                return
            await asyncio.sleep(BACKOFF_S[min(step, len(BACKOFF_S) - 1)])
            step += 1

    async def _deliver_forever(self) -> None:
        while True:
            self._wake.clear()
            message = self.outbox.next_due(self.clock.now())
            if message is None:
                await self._sleep(self._until_next())
                continue
            wait = await self._deliver(message)
            if wait:
                await self._sleep(wait)

    def _until_next(self) -> float | None:
        """Seconds until a held message (quiet hours) may go; None: only a wake brings work."""
        at = self.outbox.next_time()
        return None if at is None else max((at - self.clock.now()).total_seconds(), 0.5)

    async def _sleep(self, seconds: float | None) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)

    async def _deliver(self, message: Message) -> float:
        """Send one message; the seconds to wait before the next try (0 after a success)."""
        dropped = self.outbox.take_dropped(message.chat)
        text = message.text
        if dropped:
            text += f"\n({dropped} older, less urgent alerts were dropped while Telegram was unreachable)"
        markup = None
        if message.buttons:
            markup = InlineKeyboardMarkup(
                [[InlineKeyboardButton(label, callback_data=f"a:{action}") for label, action in message.buttons]]
            )
        try:
            if message.document is not None:
                await self._send_document(message, text)
            else:
                await self.app.bot.send_message(message.chat, text, parse_mode=ParseMode.HTML, reply_markup=markup)
        except OSError as e:  # the file is gone (deleted by hand): nothing to send
            log.error("telegram document not found; dropped", chat=message.chat, path=message.document, error=str(e))
            self.outbox.done(message.id)
            return 0.0
        except RetryAfter as e:
            return retry_seconds(e)
        except (BadRequest, Forbidden) as e:
            # The chat is gone or blocked the bot, or Telegram rejects this text: retrying cannot help.
            log.error("telegram refused an alert; dropped", chat=message.chat, kind=message.kind, error=str(e))
            self.outbox.done(message.id)
            return 0.0
        except TelegramError as e:
            self.outbox.failed(message.id)
            wait = BACKOFF_S[min(self.failures, len(BACKOFF_S) - 1)]
            self.failures += 1
            log.warning("telegram delivery failed, will retry", error=str(e), retry_in_s=wait)
            return wait
        self.failures = 0
        self.outbox.done(message.id)
        self.on_sent(message)
        return 0.0

    async def _send_document(self, message: Message, caption: str) -> None:
        assert message.document is not None
        path = Path(message.document)
        data = await asyncio.to_thread(path.read_bytes)
        await self.app.bot.send_document(
            message.chat, data, filename=path.name, caption=caption, parse_mode=ParseMode.HTML
        )

    # ---------------------------------------------------------------- commands and buttons

    async def _on_command(self, update: Update, context: CallbackContext) -> None:  # type: ignore[type-arg]
        msg = update.effective_message
        if msg is None or not msg.text:
            return
        age = (self.clock.now() - msg.date).total_seconds()
        if age > STALE_S:
            await msg.reply_text(
                f"Not done: {msg.text!r} was sent at {msg.date:%H:%M} UTC while picometer was not running. "
                "Send it again if it still applies."
            )
            return
        for piece in await self.commands.answer(msg.text, by=_who(update)):
            await msg.reply_text(piece, parse_mode=ParseMode.HTML)

    async def _on_button(self, update: Update, context: CallbackContext) -> None:  # type: ignore[type-arg]
        query = update.callback_query
        if query is None or query.message is None:
            return
        if query.message.chat.id not in self.config.chat_ids:
            log.warning("button press from a chat that is not configured, ignored", chat=query.message.chat.id)
            return
        action = None
        data = query.data or ""
        if data.startswith("a:") and data[2:].isdigit():
            action = self.outbox.find_action(int(data[2:]))
        if action is None:
            await query.answer("This button has expired.")
            return
        if action.verb == "pause":
            pieces = await self.commands.run("pause", [action.target, action.duration], _who(update))
        else:
            pieces = await self.commands.run("mute", [f"{action.target}@{action.scope}", action.duration], _who(update))
        await query.answer("Done.")
        for piece in pieces:
            await self.app.bot.send_message(query.message.chat.id, piece, parse_mode=ParseMode.HTML)


def _who(update: Update) -> str:
    user = update.effective_user
    name = (user.username or user.full_name) if user else "unknown"
    return f"telegram:{name}"[:64]
