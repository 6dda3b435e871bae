"""The console's routes: its page and static files, the log-in that exchanges an API token for a session cookie,
the session's CSRF token and log-out, and the reads only the console's pages need. None of it is in the OpenAPI
document: it is the console's, not the API's."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, HTTPException, Query, Request, Response, status
from fastapi.responses import FileResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from quorum.types import RiskProfile

from .. import queries as gateway_queries
from ..deps import Cmd, Conn, Mode, Reader, Settings, console_sessions, session_principal, token_principal, too_many
from ..settings import GatewaySettings
from . import queries
from .schemas import ChartOut, LoginRequest, MarketOut, RiskProfilesOut, SessionOut
from .sessions import COOKIE, SessionStore

STATIC = Path(__file__).parent / "static"
CONSOLE_HEADER = "X-Quorum-Console"  # a cross-site form cannot set it, so it cannot log a browser in
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
                               "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
ASSET_HEADERS = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"}

router = APIRouter(prefix="/console", include_in_schema=False)


class _Assets(StaticFiles):
    """The console's scripts and styles, revalidated on each load so an upgraded gateway serves its own."""

    async def get_response(self, path: str, scope: Any) -> Response:
        response = await super().get_response(path, scope)
        response.headers.update(ASSET_HEADERS)
        return response


def install(app: FastAPI, settings: GatewaySettings) -> None:
    app.state.console_sessions = SessionStore(settings.console_idle_timeout_s, settings.console_max_sessions)
    app.include_router(router)
    app.mount("/console/static", _Assets(directory=STATIC), name="console-static")


# --- the page -------------------------------------------------------------------------------------------------
@router.get("")
async def console_root() -> RedirectResponse:
    return RedirectResponse("/console/", status_code=status.HTTP_308_PERMANENT_REDIRECT)


@router.get("/")
async def console_page() -> FileResponse:
    return FileResponse(STATIC / "index.html", media_type="text/html", headers=PAGE_HEADERS)


# --- the session ----------------------------------------------------------------------------------------------
def _answer(store: SessionStore, session_id: str, role: str, token_id: str) -> SessionOut:
    session = store.find(session_id)
    if session is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "the console session expired or is unknown: log in again")
    return SessionOut(token_id=token_id, role=role, csrf_token=session.csrf_token,
                      idle_timeout_s=store.idle_timeout_s, seconds_left=store.seconds_left(session))


@router.post("/session", response_model=SessionOut)
async def log_in(request: Request, response: Response, commands: Cmd, body: LoginRequest) -> SessionOut:
    """Exchange an API token for a session cookie: HttpOnly (no script reads it), SameSite=Strict (no other site's
    page sends it), Secure over https. The answer carries the session's CSRF token."""
    if request.headers.get(CONSOLE_HEADER) != "1":
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"log in from the console: the {CONSOLE_HEADER}: 1 header "
                                                       "is missing")
    who = await token_principal(request, body.token.get_secret_value())
    if who is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "invalid API token")
    wait = request.app.state.gateway.limiter.take(who.token_id)
    if wait:
        raise too_many("rate limit exceeded for this token", wait)
    store = console_sessions(request)
    previous = request.cookies.get(COOKIE)
    if previous:
        store.close(previous)
    session_id, _ = store.open(who)
    response.set_cookie(COOKIE, session_id, httponly=True, samesite="strict", path="/",
                        secure=request.url.scheme == "https")
    await commands.record(who.actor, "console_login", "CONFIRMED", {"role": who.role.value})
    return _answer(store, session_id, who.role.value, who.token_id)


@router.get("/session", response_model=SessionOut)
async def current_session(request: Request) -> SessionOut:
    """The signed-in session (a reloaded page asks for its CSRF token again)."""
    who = await session_principal(request)
    if who is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "not logged in to the console")
    return _answer(console_sessions(request), request.cookies[COOKIE], who.role.value, who.token_id)


@router.delete("/session", status_code=status.HTTP_204_NO_CONTENT)
async def log_out(request: Request, commands: Cmd) -> Response:
    """End the session (its CSRF token is needed, like any change) and clear the cookie; an expired or unknown
    session only has its cookie cleared."""
    store, session_id = console_sessions(request), request.cookies.get(COOKIE)
    if session_id and store.find(session_id) is not None:
        who = await session_principal(request)
        assert who is not None
        store.close(session_id)
        await commands.record(who.actor, "console_logout", "CONFIRMED", {})
    response = Response(status_code=status.HTTP_204_NO_CONTENT)
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict", secure=request.url.scheme == "https")
    return response


# --- reads only the console needs -------------------------------------------------------------------------------
@router.get("/markets", response_model=list[MarketOut])
async def chart_markets(_: Reader, conn: Conn) -> list[MarketOut]:
    """The symbols and timeframes a chart can show."""
    return await queries.markets(conn)


@router.get("/chart", response_model=ChartOut)
async def chart(_: Reader, conn: Conn, mode: Mode, symbol: Annotated[str, Query(pattern=r"^[A-Z0-9]+/[A-Z0-9]+$")],
                timeframe: Annotated[str, Query(pattern=r"^[0-9]+[mhdw]$")] = "1h",
                limit: Annotated[int, Query(ge=10, le=1000)] = 200) -> ChartOut:
    """A symbol's latest candles with its fills and the open position's entry, stop-loss and take-profit."""
    return await queries.chart(conn, mode, symbol, timeframe, limit)


@router.get("/risk-profiles", response_model=RiskProfilesOut)
async def risk_profiles(_: Reader, conn: Conn, settings: Settings) -> RiskProfilesOut:
    """Every profile's limits beside the active one, so a switch shows what it changes."""
    active = await gateway_queries.risk_profile(conn, settings.risk_profile.value)
    return RiskProfilesOut(active=active, profiles={p.value: settings.risk_config.profiles[p].model_dump(mode="json")
                                                     for p in RiskProfile if p in settings.risk_config.profiles})
