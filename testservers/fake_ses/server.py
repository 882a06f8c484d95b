"""The HTTP side of FakeSES: a threading server whose handlers pass every request to
:meth:`FakeSES._handle` and write its answer (or drop the connection, as a fault asks)."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from testservers.base import LOCALHOST
from testservers.fake_ses.protocol import _error, _json, _parse_v1, _parse_v2, _Refusal, _Reply

if TYPE_CHECKING:
    from testservers.fake_ses.fake import FakeSES


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # many benchmark clients connect at once

    def __init__(self, fake: FakeSES, port: int) -> None:
        super().__init__((LOCALHOST, port), _Handler)
        self.fake = fake
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()

    def close_connections(self) -> None:
        with self.connections_lock:
            for connection in self.connections:
                with contextlib.suppress(OSError):  # already closed by the client
                    connection.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    # botocore keeps connections alive; HTTP/1.1 with Content-Length on every answer allows it
    protocol_version = "HTTP/1.1"
    # An answer is two writes (headers, then body). With Nagle's algorithm the body waits for
    # the client to acknowledge the headers, which a kept-alive client delays by up to 40 ms:
    # every send after a connection's first took ``latency`` + 40 ms. TCP_NODELAY avoids it.
    disable_nagle_algorithm = True
    server: _Server

    def setup(self) -> None:
        super().setup()
        with self.server.connections_lock:
            self.server.connections.add(self.connection)

    def finish(self) -> None:
        with self.server.connections_lock:
            self.server.connections.discard(self.connection)
        with contextlib.suppress(OSError):  # flushing to a client that already left
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        pass  # one stderr line per request would drown test and benchmark output

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        url = urllib.parse.urlsplit(self.path)
        try:
            reply = _route(self.server.fake, self.command, url.path, url.query, body)
        except Exception as exc:  # a bug or a bad fault_plan must not hang the client
            reply = _json(500, {"message": repr(exc)}, {"x-amzn-ErrorType": "InternalFailure"})
        if reply.drop:  # no answer at all: the socket is closed once this returns
            self.close_connection = True
            return
        try:
            self.send_response(reply.status)
            self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(reply.body)))
            if reply.aws:
                self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(reply.body)
        except OSError:  # the client gave up waiting (a "timeout" fault)
            self.close_connection = True


def _route(fake: FakeSES, method: str, path: str, query: str, body: bytes) -> _Reply:
    if path.startswith("/_fake/"):
        return _control(fake, method, path, query, body)
    if path.startswith("/v2/"):
        if method == "POST" and path == "/v2/email/outbound-emails":
            return fake._send(2, lambda: _parse_v2(body))
        if method == "GET" and path == "/v2/email/account":
            return fake._account_query(2)
        unknown = _Refusal(f"No operation for {method} {path}", (404, "NotFoundException"))
        return _error(2, unknown)
    params = dict(urllib.parse.parse_qsl(body.decode("utf-8") or query, keep_blank_values=True))
    action = params.get("Action")
    if action == "SendRawEmail":
        return fake._send(1, lambda: _parse_v1(params))
    if action == "GetSendQuota":
        return fake._account_query(1)
    return _error(1, _Refusal(f"FakeSES does not implement {action}.", (400, "InvalidAction")))


def _control(fake: FakeSES, method: str, path: str, query: str, body: bytes) -> _Reply:
    try:
        data = json.loads(body) if body.strip() else {}
        if method == "GET" and path == "/_fake/messages":
            options = urllib.parse.parse_qs(query)
            raw = options.get("raw", ["0"])[0].lower() in ("1", "true", "yes")
            since = int(options.get("since", ["0"])[0])  # lets a benchmark fetch only news
            with fake._lock:
                messages = fake.messages[since:]
            return _json(200, [message.to_json(raw=raw) for message in messages])
        if method == "GET" and path == "/_fake/stats":
            return _json(200, fake.stats())
        if method == "POST" and path == "/_fake/reset":
            fake.reset()
        elif method == "POST" and path == "/_fake/inject":
            fake.inject(str(data["fault"]), int(data.get("times", 1)))
        elif method == "POST" and path == "/_fake/config":
            fake.configure(**data)
        else:
            return _json(404, {"error": f"no control endpoint {method} {path}"})
        return _json(200, fake.stats())
    except (ValueError, KeyError, TypeError) as exc:
        return _json(400, {"error": f"{type(exc).__name__}: {exc}"})
