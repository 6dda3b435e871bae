"""What the gateway does to a request before any route sees it, and the answers that keep to the documented
contract whatever route raised them.

``curl -d '{...}'`` sends JSON labelled ``application/x-www-form-urlencoded`` (curl's default) and some clients
send no content type at all. No route takes a form, so such a body is read as JSON: a JSON body works however it
is labelled, and anything else gets the usual 422 that says the JSON is malformed.

PostgreSQL cannot store a NUL character in text or JSON, so one in the path, the query or the body is refused up
front with a 400 instead of failing deep in a query with a 500."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Any
from urllib.parse import unquote_to_bytes

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute

from .schemas import ControlResult

FORM = b"application/x-www-form-urlencoded"
WITH_BODY = {"POST", "PUT", "PATCH", "DELETE"}
NUL_IN_JSON = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000", re.IGNORECASE)
NUL_REFUSED = "NUL characters (\\u0000) are not allowed in the path, the query or the body"
CONTROL_RESPONSES: dict[int | str, dict[str, Any]] = {  # what every control may answer besides its result
    409: {"model": ControlResult, "description": "refused (by the owning service, or before it was sent)"},
    504: {"model": ControlResult, "description": "no confirmation in time"}}


class JsonBodies:
    """Pure ASGI (a ``BaseHTTPMiddleware`` would buffer the SSE stream)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if "\x00" in scope["path"] or b"\x00" in unquote_to_bytes(scope.get("query_string", b"")):
            await JSONResponse({"detail": NUL_REFUSED}, status_code=400)(scope, receive, send)
            return
        if scope["method"] in WITH_BODY:
            headers = [(k, v) for k, v in scope["headers"] if k != b"content-type"]
            declared = [v for k, v in scope["headers"] if k == b"content-type"]
            if not declared or declared[0].split(b";")[0].strip().lower() == FORM:
                scope = {**scope, "headers": [*headers, (b"content-type", b"application/json")]}
            body, receive = await _buffered(receive)
            if b"\x00" in body or NUL_IN_JSON.search(body):
                await JSONResponse({"detail": NUL_REFUSED}, status_code=400)(scope, receive, send)
                return
        await self.app(scope, receive, send)


async def _buffered(receive: Any) -> tuple[bytes, Any]:
    """Read the whole body (control bodies are small) and hand the app a ``receive`` that replays it."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":  # the client went away
            return b"", receive
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    body = b"".join(chunks)
    sent = False

    async def replay() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return body, replay


def invalid(field: str, message: str) -> RequestValidationError:
    """A 422 in the documented shape (FastAPI's validation error) for a rule the schema cannot express."""
    return RequestValidationError([{"type": "value_error", "loc": ("body", field), "msg": message, "input": None}])


class Refused(Exception):
    """A control refused before it ran (a spent confirmation token, a missing master PIN, a key that may
    withdraw): answered 409 with the documented ``ControlResult``, like a refusal by the owning service."""

    def __init__(self, action: str, detail: str) -> None:
        super().__init__(detail)
        self.action, self.detail = action, detail


def install(app: FastAPI) -> None:
    app.add_middleware(JsonBodies)

    @app.exception_handler(Refused)
    async def refused(_: Request, exc: Refused) -> JSONResponse:
        body = ControlResult(action=exc.action, status="REFUSED", command_id="", detail=exc.detail)
        return JSONResponse(body.model_dump(), status_code=409)

    @app.exception_handler(405)
    async def method_not_allowed(request: Request, _: Exception) -> JSONResponse:
        """``Allow`` lists every method of the path (Starlette names only those of the first route matched)."""
        allowed = sorted({m for r in _every_route(app.routes) if isinstance(r, APIRoute)
                          and r.path_regex.match(request.url.path) for m in r.methods})
        return JSONResponse({"detail": "Method Not Allowed"}, status_code=405, headers={"Allow": ", ".join(allowed)})


def _every_route(routes: Iterable[Any]) -> Iterator[Any]:
    """The routes of included routers too: FastAPI 0.137+ keeps an included router nested in ``app.routes``
    (older versions copy its routes there). The gateway includes its routers without a prefix, so their routes'
    paths are the served ones."""
    for route in routes:
        nested = getattr(route, "original_router", None)
        if nested is None:
            yield route
        else:
            yield from _every_route(nested.routes)
