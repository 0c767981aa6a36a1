"""The web server: the JSON API (``web.api``), its OpenAPI description and the pages (``web.pages``), one Starlette app.

Starlette rather than a larger framework: it is already here through Dagster's webserver, the API's validation and
OpenAPI come from one declaration per endpoint (``web.params``), and the pages are server-rendered Jinja2 (no build
step, no script needed to read them). Every request's reads run on one shared store session (``store.shared``),
which gives the embedded store up whenever a Dagster step waits for it: requests wait during a backfill, never fail.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request as HttpRequest
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from polo_pipelines.drilldown.periods import DeltaError, UnknownEntity
from polo_pipelines.drilldown.service import to_json
from polo_pipelines.rules import book, ruleset
from polo_pipelines.rules.ruleset import RuleError
from polo_pipelines.store.shared import SharedStore
from polo_pipelines.store.storage import StoreError
from polo_pipelines.web import api
from polo_pipelines.web.params import BadParam
from polo_pipelines.web.security import Forbidden, Guard

log = logging.getLogger("polo.web")
MAX_BODY = 64 * 1024  # a rule is a few hundred bytes


class Polo:
    """What every handler shares: the store session, the rule file, the guard and the clock."""

    def __init__(self, shared: SharedStore, rules_path: Path, guard: Guard, today: Callable[[], dt.date]):
        self.shared, self.rules_path, self.guard, self.today = shared, rules_path, guard, today

    def run(self, endpoint: api.Endpoint, query: dict[str, str], path: dict[str, str], body: Any = None) -> Any:
        return self.submit(endpoint, query, path, body).result()

    def submit(self, endpoint: api.Endpoint, query: dict[str, str], path: dict[str, str], body: Any = None):
        """The endpoint's answer, computed on the shared store session: its future."""
        values, today = endpoint.values(query), self.today()

        def work(store):
            remember = lambda key, compute: self.shared.remembered(store, key, compute)  # noqa: E731
            return endpoint.answer(store, api.Request(values, path, body, today, self.rules_path, remember))

        return self.shared.submit(work)


def status_of(exc: BaseException) -> tuple[int, dict[str, Any]]:
    """An error as a status and a JSON body that says what was wrong (never a secret: these messages name ids)."""
    if isinstance(exc, BadParam):
        return 400, {"error": str(exc), "parameter": exc.name}
    if isinstance(exc, (UnknownEntity, book.UnknownRule)):
        return 404, {"error": str(exc)}
    if isinstance(exc, book.RuleTaken):
        return 409, {"error": str(exc)}
    if isinstance(exc, (DeltaError, RuleError)):
        return 400, {"error": str(exc)}
    if isinstance(exc, Forbidden):
        return exc.status, {"error": str(exc)}
    if isinstance(exc, StoreError):
        return 503, {"error": str(exc)}
    return 500, {"error": f"the server failed: {type(exc).__name__} (see its log)"}


def json_answer(status: int, body: Any) -> Response:
    """The body as JSON. Answers are plain JSON values already (``answer`` and ``frame_json`` made them); what is not
    (a mapping of another kind, a result with ``as_json``) goes through ``to_json``."""
    return Response(orjson.dumps(body, default=to_json), status_code=status, media_type="application/json")


def api_route(polo: Polo, endpoint: api.Endpoint) -> Route:
    async def handle(request: HttpRequest) -> Response:
        try:
            body = None
            if endpoint.changes_rules:
                polo.guard.check_bearer(request.headers.get("authorization"))
            if endpoint.body:
                raw = await request.body()
                if len(raw) > MAX_BODY:
                    return json_answer(413, {"error": f"the body is over {MAX_BODY} bytes"})
                try:
                    body = json.loads(raw or b"null")
                except ValueError as exc:
                    raise RuleError(f"the body is not JSON: {exc}") from None
            # awaited on the loop: the store's own thread computes it, no thread of the pool is held meanwhile
            answer = await asyncio.wrap_future(polo.submit(endpoint, dict(request.query_params), dict(request.path_params), body))
            return json_answer(200, answer)
        except Exception as exc:  # noqa: BLE001  (every error becomes its status)
            status, doc = status_of(exc)
            if status == 500:
                log.exception("%s %s failed", request.method, request.url.path)
            return json_answer(status, doc)

    return Route(endpoint.path, handle, methods=[endpoint.method], name=endpoint.name)


def docs_page(request: HttpRequest) -> HTMLResponse:
    from polo_pipelines.web.pages import render

    return HTMLResponse(render("docs.html", request, spec=api.openapi(), title="API"))


def create_app(
    dsn: str | None = None,
    *,
    rules_path: Path | None = None,
    token: str | None = None,
    token_file: Path | None = None,
    today: Callable[[], dt.date] | None = None,
    shared: SharedStore | None = None,
) -> Starlette:
    """The app over the store at ``dsn`` (default: the configured one) and the rule file (default: POLO_RULES_FILE)."""
    from polo_pipelines.web import pages

    polo = Polo(
        shared or SharedStore(dsn),
        rules_path or ruleset.rules_file(),
        Guard(token, token_file),
        today or (lambda: dt.datetime.now(dt.UTC).date()),
    )
    routes = [api_route(polo, e) for e in api.ENDPOINTS]
    routes += [
        Route("/openapi.json", lambda r: JSONResponse(api.openapi()), name="openapi"),
        Route("/docs", docs_page, name="docs"),
        *pages.routes(polo),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        yield
        polo.shared.close()

    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.polo = polo
    return app
