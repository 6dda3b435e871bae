"""Everything a route needs, provided in ONE place as FastAPI dependencies: who is calling and whether their role
may (bearer token or the console's session cookie, rate limits), a database connection, the settings, the
command layer, service health and the bus. Each reads the gateway the app was built for (``app.state.gateway``),
so several gateways can run in one process; routes never see the service itself."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Query, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from nats.aio.client import Client as NATS
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from . import queries
from .auth import Principal, Role, authenticate, still_valid
from .backtests import BacktestJobs
from .commands import Commands
from .console.sessions import BACKGROUND_HEADER, COOKIE, CSRF_HEADER, SAFE_METHODS, SessionStore
from .schemas import ServiceHealth
from .settings import GatewaySettings

bearer = HTTPBearer(auto_error=False, description="API token")


def _gateway(request: Request) -> Any:
    return request.app.state.gateway


def too_many(detail: str, wait: float) -> HTTPException:
    return HTTPException(status.HTTP_429_TOO_MANY_REQUESTS, detail, headers={"Retry-After": f"{max(1, round(wait))}"})


async def token_principal(request: Request, presented: str) -> Principal | None:
    """Who an API token belongs to (None: nobody). A client that failed too often gets 429 before any lookup:
    guessing tokens must not cost the database a query each."""
    gw = _gateway(request)
    client = request.client.host if request.client else "unknown"
    wait = gw.auth_failures.blocked(client)
    if wait:
        raise too_many("too many failed authentications from this client", wait)
    bootstrap = gw.settings.api_token.get_secret_value()
    if gw.engine is None:
        who = await authenticate(None, presented, bootstrap)
    else:
        async with gw.engine.connect() as conn:
            who = await authenticate(conn, presented, bootstrap)
    if who is None:
        gw.auth_failures.take(client)
        gw.auth_failures.forget_idle()
    return who


def console_sessions(request: Request) -> SessionStore:
    store: SessionStore = request.app.state.console_sessions
    return store


async def session_principal(request: Request) -> Principal | None:
    """Who the console's session cookie belongs to (None: no cookie). A state-changing request must carry the
    session's CSRF token; a session whose token was revoked ends at once."""
    session_id = request.cookies.get(COOKIE)
    if not session_id:
        return None
    store = console_sessions(request)
    session = store.find(session_id)
    if session is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "the console session expired or is unknown: log in again")
    if request.method not in SAFE_METHODS and not session.csrf_matches(request.headers.get(CSRF_HEADER)):
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"a request with the session cookie that changes anything "
                                                       f"needs the session's CSRF token in the {CSRF_HEADER} header")
    gw = _gateway(request)
    if gw.engine is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "gateway is starting")
    async with gw.engine.connect() as conn:
        who = await still_valid(conn, session.principal, gw.settings.api_token.get_secret_value())
    if who is None:
        store.close(session_id)
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "the console session's API token was revoked")
    if BACKGROUND_HEADER not in request.headers:
        store.touch(session)
    return who


def require(role: Role) -> Any:
    """A bearer token, or else the console's session cookie (bearer clients never need the cookie's CSRF
    token: a browser does not attach their token by itself)."""
    async def check(request: Request, creds: Annotated[HTTPAuthorizationCredentials | None,
                                                        Depends(bearer)]) -> Principal:
        gw = _gateway(request)
        if creds is not None:
            who = await token_principal(request, creds.credentials)
        else:
            who = await session_principal(request)
        if who is None:
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, "missing or invalid bearer token",
                                headers={"WWW-Authenticate": "Bearer"})
        wait = gw.limiter.take(who.token_id)
        if wait:
            raise too_many("rate limit exceeded for this token", wait)
        if not who.role.allows(role):
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"the {who.role} role may not do this ({role} needed)")
        return who

    return Depends(check)


async def operator(who: Annotated[Principal, require(Role.OPERATOR)]) -> str:
    return who.actor


async def connection(request: Request) -> AsyncIterator[AsyncConnection]:
    engine = _gateway(request).engine
    if engine is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "gateway is starting")
    async with engine.connect() as conn:
        yield conn


async def settings(request: Request) -> GatewaySettings:
    return _gateway(request).settings


async def trading_mode(request: Request) -> str:
    return _gateway(request).settings.trading_mode.value


async def commands(request: Request) -> Commands:
    return _gateway(request).commands


async def jobs(request: Request) -> BacktestJobs:
    return _gateway(request).jobs


async def active_config_hash(request: Request,
                             conn: Annotated[AsyncConnection, Depends(connection)]) -> str | None:
    """The hash of the configuration the council decides with: the ACTIVE optimizer configuration's when an
    operator (or the optimizer) made one active, else the services' settings' (None: the gateway could not build
    them)."""
    return await queries.active_configuration_hash(conn) or _gateway(request).active_config_hash


async def service_health(request: Request) -> dict[str, ServiceHealth]:
    """From the watcher's cache: a request never touches JetStream."""
    gw = _gateway(request)
    return gw.health.snapshot(gw.clock.now(), gw.settings.health_stale_s)


async def engine(request: Request) -> AsyncEngine | None:
    """For a response that reads after the route returned (a streamed export opens its own connection)."""
    return _gateway(request).engine


async def bus(request: Request) -> NATS | None:
    return _gateway(request).nc


Reader = Annotated[Principal, require(Role.VIEWER)]
Admin = Annotated[Principal, require(Role.ADMIN)]
Actor = Annotated[str, Depends(operator)]
Conn = Annotated[AsyncConnection, Depends(connection)]
Settings = Annotated[GatewaySettings, Depends(settings)]
Mode = Annotated[str, Depends(trading_mode)]
Cmd = Annotated[Commands, Depends(commands)]
Jobs = Annotated[BacktestJobs, Depends(jobs)]
ActiveConfig = Annotated[str | None, Depends(active_config_hash)]
Health = Annotated[dict[str, ServiceHealth], Depends(service_health)]
Engine = Annotated[AsyncEngine, Depends(engine)]
Bus = Annotated[NATS, Depends(bus)]
Limit = Annotated[int, Query(ge=1, le=500)]
Offset = Annotated[int, Query(ge=0, le=10_000_000)]
