"""A real local HTTP server answering like each platform's API, from the sample world.

With no credentials configured, a collector on the embedded store points its real client at
this server, so ``make run`` shows every platform through the same requests, pagination
and parsing code that production uses. The server checks the credential headers each API
expects (with the sample's own values), pages its answers, and speaks each API's payload
shape; tests reuse it for the happy paths.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

SAMPLE_TOKEN = "sample-token-not-a-secret"

Handler = Callable[["Request"], "Reply"]


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any
    base_url: str
    match: re.Match | None = None


@dataclass
class Reply:
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


class SampleServer:
    def __init__(self) -> None:
        self.routes: list[tuple[str, re.Pattern, Handler]] = []
        self.requests = 0
        server = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out as two writes: no 40 ms delayed-ACK stall

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = raw.decode("utf-8", "replace")
                request = Request(
                    self.command,
                    parts.path,
                    {k: v[-1] for k, v in parse_qs(parts.query).items()},
                    {k.lower(): v for k, v in self.headers.items()},
                    body,
                    server.url,
                )
                reply = server.dispatch(request)
                payload = b"" if reply.body is None else json.dumps(reply.body).encode()
                self.send_response(reply.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = _serve

            def log_message(self, *args) -> None:  # quiet: the collectors log what matters
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="polo-sample-server", daemon=True)
        self.thread.start()

    def route(self, method: str, pattern: str, handler: Handler) -> None:
        self.routes.append((method, re.compile(pattern), handler))

    def dispatch(self, request: Request) -> Reply:
        self.requests += 1
        for method, pattern, handler in self.routes:
            match = pattern.fullmatch(request.path)
            if match and method == request.method:
                request.match = match
                try:
                    return handler(request)
                except Exception as exc:  # a bug in the sample shows as a 500, as a real API would
                    return Reply(500, {"message": f"sample server error: {type(exc).__name__}: {exc}"})
        return Reply(404, {"message": f"no sample route for {request.method} {request.path}"})

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def page_of(items: list[Any], request: Request, per_page_default: int = 30) -> tuple[list[Any], dict[str, str]]:
    """GitHub-style paging: ``page``/``per_page`` in, a ``Link`` header with rel="next" out."""
    per_page = int(request.query.get("per_page", per_page_default))
    page = int(request.query.get("page", 1))
    chunk = items[(page - 1) * per_page : page * per_page]
    headers = {}
    if page * per_page < len(items):
        query = {**request.query, "page": str(page + 1)}
        headers["Link"] = f'<{request.base_url}{request.path}?{urlencode(query)}>; rel="next"'
    return chunk, headers


_lock = threading.Lock()
_servers: dict[str, SampleServer] = {}


def sample_server(world_key: str, build: Callable[[SampleServer], None]) -> SampleServer:
    """The process's sample server for one sample world (started once, routes added by ``build``)."""
    with _lock:
        server = _servers.get(world_key)
        if server is None:
            server = SampleServer()
            build(server)
            _servers[world_key] = server
        return server


def bearer(request: Request) -> Reply | None:
    """None when the request carries the sample's bearer token, else the 401 the APIs answer."""
    if request.headers.get("authorization") != f"Bearer {SAMPLE_TOKEN}":
        return Reply(401, {"message": "Bad credentials"})
    return None
