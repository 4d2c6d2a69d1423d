"""A local HTTP server speaking the documented requests and answers of X API v2 and LinkedIn's Posts API.

Tests queue the answers to give (``server.fail_next(...)``) and read what was
asked (``server.requests``); posts it accepted, and any the account already
had (``server.posts``, dated by ``created_at`` / ``createdAt``), are listed
back by the lookup endpoints, newest first, as the real platforms do (X's
timeline honours ``start_time``).
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


@dataclass
class Recorded:
    method: str
    path: str
    query: dict
    headers: Message  # names are case-insensitive, as in HTTP
    body: dict | None


@dataclass
class PlatformServer:
    url: str = ""
    requests: list[Recorded] = field(default_factory=list)
    posts: list[dict] = field(default_factory=list)
    # (status, headers, body) answers to give before behaving normally.
    failures: list[tuple[int, dict, dict]] = field(default_factory=list)
    # Seconds a POST takes before the post exists and is answered: time to kill its caller.
    post_delay: float = 0.0

    def fail_next(self, status: int, *, headers: dict | None = None, body: dict | None = None) -> None:
        self.failures.append((status, headers or {}, body or {"title": "failure", "status": status}))

    def posted(self) -> list[Recorded]:
        return [r for r in self.requests if r.method == "POST"]


def x_time(moment: datetime) -> str:
    """A time as X API v2 writes ``created_at``: ``2026-12-01T10:00:00.000Z``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _handler(server: PlatformServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:  # quiet test output
            pass

        def _answer(self, status: int, body: dict | None, headers: dict | None = None) -> None:
            raw = json.dumps(body).encode() if body is not None else b""
            # A caller killed while we took our time hangs up: the post exists all the same.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self.send_response(status)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

        def _handle(self) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else None
            server.requests.append(Recorded(self.command, parts.path, parse_qs(parts.query), self.headers, body))
            if server.failures:
                status, headers, failure = server.failures.pop(0)
                return self._answer(status, failure, headers)
            if self.headers.get("Authorization", "").split(" ")[-1] in ("", "revoked"):
                return self._answer(401, {"title": "Unauthorized", "detail": "Invalid or expired token"})
            if self.command == "POST":
                time.sleep(server.post_delay)
            if (self.command, parts.path) == ("POST", "/2/tweets"):
                tweet = {"id": str(1_800_000_000 + len(server.posts)), "text": body["text"]}
                server.posts.append({**tweet, "created_at": x_time(datetime.now(UTC))})
                return self._answer(201, {"data": tweet})
            if self.command == "GET" and parts.path.startswith("/2/users/"):
                start = parse_qs(parts.query).get("start_time", [""])[0]
                since = datetime.fromisoformat(start) if start else datetime.min.replace(tzinfo=UTC)
                tweets = [t for t in reversed(server.posts) if datetime.fromisoformat(t["created_at"]) >= since]
                return self._answer(200, {"data": tweets, "meta": {"result_count": len(tweets)}})
            if (self.command, parts.path) == ("GET", "/2/tweets"):
                metrics = {
                    "like_count": 7, "retweet_count": 2, "quote_count": 1, "reply_count": 3, "impression_count": 900,
                }  # fmt: skip
                ids = parse_qs(parts.query)["ids"][0].split(",")
                return self._answer(200, {"data": [{"id": i, "text": "", "public_metrics": metrics} for i in ids]})
            if (self.command, parts.path) == ("POST", "/rest/posts"):
                if self.headers.get("X-Restli-Protocol-Version") != "2.0.0" or not self.headers.get("LinkedIn-Version"):
                    return self._answer(400, {"message": "Missing version headers", "status": 400})
                urn = f"urn:li:share:{7_000_000 + len(server.posts)}"
                created = int(datetime.now(UTC).timestamp() * 1000)
                server.posts.append(
                    {"id": urn, "commentary": body["commentary"], "author": body["author"], "createdAt": created}
                )
                return self._answer(201, None, {"x-restli-id": urn})
            if (self.command, parts.path) == ("GET", "/rest/posts"):
                return self._answer(200, {"elements": list(reversed(server.posts)), "paging": {"count": 20}})
            return self._answer(404, {"title": "Not Found"})

        do_GET = do_POST = _handle

    return Handler


@contextmanager
def platform_server() -> Iterator[PlatformServer]:
    server = PlatformServer()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(server))
    server.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        httpd.shutdown()
        httpd.server_close()
