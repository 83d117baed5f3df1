"""A loopback Telegram Bot API for tests: records every call, holds long polls, and can be taken down."""

from __future__ import annotations

import contextlib
import email.parser
import email.policy
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

from tests.patience import patience

TOKEN = "123456:TEST-token"
BOT = {"id": 123456, "is_bot": True, "first_name": "picometer", "username": "picometer_test_bot"}


class BotApi:
    def __init__(self, port: int = 0) -> None:
        self.calls: list[tuple[float, str, dict[str, Any]]] = []
        self.down = False  # answer 502 to everything, like an outage
        self._updates: list[dict[str, Any]] = []
        self._next_update = 1
        self._next_message = 100
        self._cond = threading.Condition()
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                api._handle(self)

            do_GET = do_POST

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> BotApi:
        self._thread.start()
        return self

    def stop(self) -> None:
        with self._cond:
            self._cond.notify_all()
        self.server.shutdown()
        self.server.server_close()

    # ---------------------------------------------------------------- what tests use

    def sent(self) -> list[dict[str, Any]]:
        return [p for _, m, p in self.calls if m == "sendMessage"]

    def wait_sent(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + patience(timeout)
        while len(self.sent()) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(self.sent())} messages sent, wanted {count}: {self.sent()}")
            time.sleep(0.05)
        return self.sent()

    def command(self, chat_id: int, text: str) -> None:
        """A user in `chat_id` sends `text` to the bot."""
        self._push(
            {
                "message": {
                    "message_id": self._next_message,
                    "date": int(time.time()),
                    "chat": {"id": chat_id, "type": "private"},
                    "from": {"id": chat_id, "is_bot": False, "first_name": "Ana", "username": "ana"},
                    "text": text,
                    "entities": [{"type": "bot_command", "offset": 0, "length": len(text.split()[0])}],
                }
            }
        )

    def press(self, chat_id: int, data: str) -> None:
        """A user in `chat_id` presses an inline button carrying `data`."""
        self._push(
            {
                "callback_query": {
                    "id": str(self._next_update),
                    "chat_instance": "1",
                    "from": {"id": chat_id, "is_bot": False, "first_name": "Ana"},
                    "data": data,
                    "message": {
                        "message_id": 1,
                        "date": int(time.time()),
                        "chat": {"id": chat_id, "type": "private"},
                        "text": "alert",
                    },
                }
            }
        )

    def _push(self, update: dict[str, Any]) -> None:
        with self._cond:
            self._updates.append({"update_id": self._next_update, **update})
            self._next_update += 1
            self._next_message += 1
            self._cond.notify_all()

    # ---------------------------------------------------------------- the API

    def documents(self) -> list[dict[str, Any]]:
        """sendDocument calls: chat_id, caption, and the file as filename and bytes under "document"."""
        return [p for _, m, p in self.calls if m == "sendDocument"]

    def _handle(self, req: BaseHTTPRequestHandler) -> None:
        length = int(req.headers.get("content-length") or 0)
        body = req.rfile.read(length) if length else b""
        content_type = req.headers.get("content-type") or ""
        if "json" in content_type:
            params = json.loads(body or b"{}")
        elif content_type.startswith("multipart/form-data"):
            params = _form_data(content_type, body)
        else:
            params = {k: v[0] for k, v in parse_qs(body.decode("utf-8")).items()}
        path = req.path.split("?")[0]
        token, _, method = path.removeprefix("/bot").partition("/")
        if self.down:
            return self._reply(req, 502, {"ok": False, "error_code": 502, "description": "Bad Gateway"})
        self.calls.append((time.monotonic(), method, params))
        if token != TOKEN:
            return self._reply(req, 401, {"ok": False, "error_code": 401, "description": "Unauthorized"})
        result: Any = True
        if method == "getMe":
            result = BOT
        elif method == "getUpdates":
            result = self._get_updates(int(params.get("offset") or 0), float(params.get("timeout") or 0))
        elif method == "sendDocument":
            result = {
                "message_id": self._next_message,
                "date": int(time.time()),
                "chat": {"id": int(params["chat_id"]), "type": "private"},
                "document": {"file_id": "f1", "file_unique_id": "u1", "file_name": params["document"]["filename"]},
            }
            self._next_message += 1
        elif method == "sendMessage":
            result = {
                "message_id": self._next_message,
                "date": int(time.time()),
                "chat": {"id": int(params["chat_id"]), "type": "private"},
                "text": params.get("text", ""),
            }
            self._next_message += 1
        self._reply(req, 200, {"ok": True, "result": result})

    def _get_updates(self, offset: int, timeout: float) -> list[dict[str, Any]]:
        deadline = time.monotonic() + min(timeout, 2.0)  # short holds keep test shutdowns quick
        with self._cond:
            self._updates = [u for u in self._updates if u["update_id"] >= offset]
            while not self._updates and time.monotonic() < deadline and not self.down:
                self._cond.wait(deadline - time.monotonic())
            return list(self._updates)

    @staticmethod
    def _reply(req: BaseHTTPRequestHandler, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        req.send_response(status)
        req.send_header("content-type", "application/json")
        req.send_header("content-length", str(len(data)))
        req.end_headers()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the daemon left a long poll
            req.wfile.write(data)


def _form_data(content_type: str, body: bytes) -> dict[str, Any]:
    """A multipart/form-data body (how a file is uploaded): text fields as str, files as name and bytes."""
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"content-type: {content_type}\r\n\r\n".encode() + body
    )
    params: dict[str, Any] = {}
    for part in message.iter_parts():
        name = str(part.get_param("name", header="content-disposition"))
        data = part.get_payload(decode=True)
        assert isinstance(data, bytes)
        if part.get_filename():
            params[name] = {"filename": part.get_filename(), "bytes": data}
        else:
            params[name] = data.decode("utf-8")
    return params
