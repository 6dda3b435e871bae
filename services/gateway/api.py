"""The gateway's API assembled on the service's app: request handling and documented error answers, CORS, the
docs page, every route module's router, and the operator console."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse

from .console import routes as console
from .http import install
from .routes import (
    admin,
    audit,
    backtests,
    book,
    configurations,
    controls,
    decisions,
    models,
    proposals,
    status,
    stream,
    training,
)
from .schemas import ErrorOut
from .settings import GatewaySettings

ROUTERS = (status.router, book.router, decisions.router, audit.router, controls.router, proposals.router,
           backtests.router, configurations.router, admin.router, stream.router, training.router,
           models.router)
ANSWERS: dict[int | str, dict[str, Any]] = {  # every route may answer these; documented once, for every operation
    400: {"model": ErrorOut, "description": "malformed request: a NUL character, or an unreadable body"},
    401: {"model": ErrorOut, "description": "missing or invalid bearer token"},
    403: {"model": ErrorOut, "description": "the token's role may not do this"},
    429: {"model": ErrorOut, "description": "rate limit exceeded (see Retry-After)"},
    503: {"model": ErrorOut, "description": "the gateway is starting"},
}


def build(app: FastAPI, settings: GatewaySettings) -> None:
    app.title = "Quorum gateway"
    install(app)  # JSON however labelled, NUL refused, 409 refusals and 405 Allow as documented

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        """Swagger UI, added as a route: the base app is built with docs off, and a ``docs_url`` set after
        that adds nothing."""
        return get_swagger_ui_html(openapi_url=app.openapi_url or "/openapi.json", title="Quorum gateway API")

    app.router.responses = dict(ANSWERS)
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(settings.cors_origins),
                           allow_methods=["GET", "POST"], allow_headers=["Authorization", "Content-Type"])
    for router in ROUTERS:
        app.include_router(router)
    console.install(app, settings)  # the operator console at /console, outside the API's OpenAPI document
