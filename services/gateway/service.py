"""The operator's only door. Reads come from the database; every control is a typed command published
through the outbox together with its audit row, and the gateway waits for the owning service's confirmation
(or reports a timeout). All routes except health and metrics need the bearer token.

No ``from __future__ import annotations`` here: FastAPI must see the dependency aliases defined inside
``extend_app`` as real objects, not strings."""

import asyncio
import contextlib
import logging
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Query, Request, status
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import SettingsConfigDict
from quorum.council.karma import Observation, Score, scorecard
from quorum.db.tables import (
    audit_log,
    candles,
    council_controls,
    decisions,
    equity,
    fills,
    karma_votes,
    ledger_balances,
    ledger_entries,
    model_selection,
    oms_state,
    orders,
    positions,
    reconciliation_discrepancies,
    risk_balances,
    risk_drawdown,
    risk_kill_switch,
    risk_profile_state,
    risk_state,
    signals,
    strategy_failures,
    trade_proposals,
)
from quorum.events.base import Payload, UndecodableMessage, decode
from quorum.events.control import (
    ApproveProposal,
    CancelAllOrders,
    ClearEmergencyHalt,
    CloseAllPositions,
    ControlRefused,
    DisconnectRouting,
    EngageKillSwitch,
    HaltTrading,
    RejectProposal,
    ReleaseKillSwitch,
    ResumeTrading,
    SetCouncilMode,
    SetOperatingMode,
    SetRiskProfile,
    StartBackfill,
)
from quorum.risk.profiles import RiskConfig
from quorum.runtime.audit import record_audit
from quorum.runtime.handling import Context
from quorum.runtime.service import Service
from quorum.runtime.settings import ServiceSettings
from quorum.subjects import family_wildcard
from quorum.types import Action, OperatingMode, OrderStatus, RiskProfile
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from . import admin, confirm, stream
from .auth import Principal, RateLimiter, Role, authenticate
from .health import HealthCache
from .http import CONTROL_RESPONSES, Refused, install
from .schemas import (
    AuditOut,
    BackfillRequest,
    BalanceOut,
    CalibrationBinOut,
    ConfirmableRequest,
    ConfirmationRequired,
    ControlRequest,
    ControlResult,
    CouncilControlOut,
    CouncilModeRequest,
    CouncilOut,
    DecisionOut,
    DiscrepancyOut,
    EquityPoint,
    ErrorOut,
    FillOut,
    IsoDatetime,
    KarmaOut,
    KarmaScorecard,
    KillSwitchOut,
    OperatingModeRequest,
    OrderOut,
    Page,
    PortfolioOut,
    PositionOut,
    ProposalOut,
    RiskOut,
    RiskProfileChangeRequest,
    ServiceHealth,
    Status,
    StrategyFailureOut,
    SymbolScopeRequest,
    VoteOut,
)

log = logging.getLogger("quorum.gateway")
DEV_TOKEN = "dev-token-change-me"


class GatewaySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="QUORUM_GATEWAY_", extra="ignore", frozen=True)

    http_port: int = 8000
    api_token: SecretStr = Field(default=SecretStr(DEV_TOKEN), min_length=12)
    control_timeout_s: float = Field(default=10.0, gt=0, le=120)
    confirmation_ttl_s: float = Field(default=120.0, gt=0, le=3600, description="how long a confirmation token lives")
    risk_config: RiskConfig = Field(default_factory=RiskConfig, validation_alias=AliasChoices("QUORUM_RISK_CONFIG"),
                                    description="risk's configuration (read, to show the active limits)")
    health_stale_s: float = Field(default=20.0, gt=0)
    rate_limit_per_s: float = Field(default=20.0, gt=0, description="sustained requests per second per token")
    rate_limit_burst: float = Field(default=60.0, ge=1, description="requests a token may send at once")
    auth_failures_per_s: float = Field(default=0.2, gt=0, description="failed authentications per second a "
                                                                      "client address may make, sustained")
    auth_failure_burst: float = Field(default=10.0, ge=1, description="failed authentications a client may make "
                                                                      "at once before it gets 429")
    cors_origins: tuple[str, ...] = Field(default=(), description="allowed browser origins; none: CORS off")
    pin_scrypt_n: int = Field(default=2**15, ge=2**10, description="scrypt cost for the master PIN")
    exchange_base_urls: dict[str, str] = Field(default_factory=dict,
                                               description="REST base URL per exchange (mirrors, local fakes)")

    def secrets_in_use(self) -> dict[str, str]:
        return {**super().secrets_in_use(), "QUORUM_GATEWAY_API_TOKEN": self.api_token.get_secret_value()}


class GatewayService(Service):
    NAME = "gateway"
    settings: GatewaySettings

    def __init__(self, *args: object, **kwargs: object) -> None:
        self._waiters: dict[uuid.UUID, asyncio.Future[Any]] = {}
        settings: Any = args[0] if args else kwargs["settings"]
        self.limiter = RateLimiter(settings.rate_limit_per_s, settings.rate_limit_burst)
        self.auth_failures = RateLimiter(settings.auth_failures_per_s, settings.auth_failure_burst)
        self.health = HealthCache()
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    async def on_start(self) -> None:
        assert self.nc is not None
        await self.nc.subscribe(family_wildcard("control"), cb=self._on_control_event)
        self._spawn(self.health.run(self.js, self.stopping))
        with contextlib.suppress(TimeoutError):  # a first /status should already see every service
            await asyncio.wait_for(self.health.ready.wait(), timeout=5)

    async def _on_control_event(self, msg: Any) -> None:
        """Confirmations travel on JetStream subjects; a plain subscription sees them as they are stored."""
        try:
            env = decode(msg.data)
        except UndecodableMessage:
            return
        fut = self._waiters.get(env.causation_id) if env.causation_id else None
        if fut is not None and not fut.done():
            fut.set_result(env)

    # --- the API --------------------------------------------------------------------------------------
    def extend_app(self, app: FastAPI) -> None:  # noqa: C901 - the route table reads best in one place
        app.title = "Quorum gateway"
        install(app)  # JSON however labelled, NUL refused, 409 refusals and 405 Allow as documented

        @app.get("/docs", include_in_schema=False)
        async def docs() -> HTMLResponse:
            """Swagger UI, added as a route: the base app is built with docs off, and a ``docs_url`` set after
            that adds nothing."""
            return get_swagger_ui_html(openapi_url=app.openapi_url or "/openapi.json", title="Quorum gateway API")

        app.router.responses = {  # every route may answer these; documented once, for every operation
            400: {"model": ErrorOut, "description": "malformed request: a NUL character, or an unreadable body"},
            401: {"model": ErrorOut, "description": "missing or invalid bearer token"},
            403: {"model": ErrorOut, "description": "the token's role may not do this"},
            429: {"model": ErrorOut, "description": "rate limit exceeded (see Retry-After)"},
            503: {"model": ErrorOut, "description": "the gateway is starting"},
        }
        bearer = HTTPBearer(auto_error=False, description="API token")
        bootstrap = self.settings.api_token.get_secret_value()

        def too_many(detail: str, wait: float) -> HTTPException:
            return HTTPException(status.HTTP_429_TOO_MANY_REQUESTS, detail,
                                 headers={"Retry-After": f"{max(1, round(wait))}"})

        def require(role: Role) -> Any:
            async def check(request: Request, creds: Annotated[HTTPAuthorizationCredentials | None,
                                                                Depends(bearer)]) -> Principal:
                who = None
                if creds is not None:
                    client = request.client.host if request.client else "unknown"
                    wait = self.auth_failures.blocked(client)
                    if wait:  # before any lookup: guessing tokens must not cost the database a query each
                        raise too_many("too many failed authentications from this client", wait)
                    if self.engine is None:
                        who = await authenticate(None, creds.credentials, bootstrap)
                    else:
                        async with self.engine.connect() as conn:
                            who = await authenticate(conn, creds.credentials, bootstrap)
                    if who is None:
                        self.auth_failures.take(client)
                        self.auth_failures.forget_idle()
                if who is None:
                    raise HTTPException(status.HTTP_401_UNAUTHORIZED, "missing or invalid bearer token",
                                        headers={"WWW-Authenticate": "Bearer"})
                wait = self.limiter.take(who.token_id)
                if wait:
                    raise too_many("rate limit exceeded for this token", wait)
                if not who.role.allows(role):
                    raise HTTPException(status.HTTP_403_FORBIDDEN, f"the {who.role} role may not do this "
                                                                   f"({role} needed)")
                return who

            return Depends(check)

        async def operator(who: Annotated[Principal, require(Role.OPERATOR)]) -> str:
            return who.actor

        async def connection() -> AsyncIterator[AsyncConnection]:
            if self.engine is None:
                raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "gateway is starting")
            async with self.engine.connect() as conn:
                yield conn

        Actor = Annotated[str, Depends(operator)]
        Reader = Annotated[Principal, require(Role.VIEWER)]
        Conn = Annotated[AsyncConnection, Depends(connection)]
        self.roles = {"reader": Reader, "admin": Annotated[Principal, require(Role.ADMIN)], "actor": Actor,
                      "conn": Conn}
        if self.settings.cors_origins:
            app.add_middleware(CORSMiddleware, allow_origins=list(self.settings.cors_origins),
                               allow_methods=["GET", "POST"], allow_headers=["Authorization", "Content-Type"])
        Limit = Annotated[int, Query(ge=1, le=500)]
        Offset = Annotated[int, Query(ge=0, le=10_000_000)]
        mode = self.settings.trading_mode.value

        @app.get("/status", response_model=Status, tags=["read"])
        async def get_status(_: Reader, conn: Conn) -> Status:
            halt = (await conn.execute(select(risk_state).where(risk_state.c.scope == "global"))).first()
            oms = (await conn.execute(select(oms_state).where(oms_state.c.mode == mode))).first()
            kill = (await conn.execute(select(risk_kill_switch.c.engaged).where(
                risk_kill_switch.c.scope == "*"))).scalar_one_or_none()
            last = (await conn.execute(select(func.max(candles.c.ts)))).scalar_one()
            killed = (await conn.execute(select(risk_kill_switch.c.scope).where(
                risk_kill_switch.c.engaged, risk_kill_switch.c.scope != "*"))).scalars().all()
            modes = {r.symbol: r.mode for r in (await conn.execute(select(council_controls))).all()}
            model = (await conn.execute(select(model_selection))).first()
            services = self._health()
            md = services.get("market_data")
            connected = bool(oms and oms.routing_connected)
            since, refused = (None, 0) if connected else await _disconnected(conn, mode)
            return Status(trading_mode=mode, risk_profile=await self._risk_profile(conn),
                          halted=bool(halt and halt.halted), emergency_halt=bool(halt and halt.emergency),
                          halt_reason=halt.reason if halt and halt.halted else None,
                          routing_connected=connected, routing_disconnected_since=since, intents_refused=refused,
                          routing="connected" if connected else _routing_line(since, refused),
                          operating_mode=oms.operating_mode if oms else None, kill_switch_global=bool(kill),
                          killed_symbols=sorted(killed), council_modes=modes,
                          data_source=md.details if md else None,
                          model=f"{model.model_name}@{model.version}" if model else None,
                          services=services, last_candle_ts=last)

        @app.get("/portfolio", response_model=PortfolioOut, tags=["read"])
        async def get_portfolio(_: Reader, conn: Conn) -> PortfolioOut:
            """The book at a glance: equity (last mark), peak and drawdown, cash, holdings, PnL and fees."""
            last = (await conn.execute(select(equity).where(equity.c.mode == mode)
                                       .order_by(equity.c.ts.desc()).limit(1))).first()
            cash = (await conn.execute(select(ledger_balances.c.amount).where(
                ledger_balances.c.account == f"{mode.lower()}:cash:{self.settings.quote_currency}"))
            ).scalar_one_or_none() or Decimal(0)
            rows = (await conn.execute(select(positions).where(positions.c.mode == mode))).all()
            held = sum((r.quantity * (r.mark_price or r.avg_cost) for r in rows), Decimal(0))
            return PortfolioOut(
                mode=mode, equity=last.equity if last else None, peak_equity=last.peak_equity if last else None,
                drawdown=last.drawdown if last else None, cash=cash, holdings_value=held,
                realized_pnl=sum((r.realized_pnl for r in rows), Decimal(0)),
                unrealized_pnl=sum(((r.mark_price - r.avg_cost) * r.quantity for r in rows
                                    if r.mark_price is not None), Decimal(0)),
                fees_paid=sum((r.fees_paid for r in rows), Decimal(0)), positions=sum(r.quantity != 0 for r in rows))

        @app.get("/equity", response_model=Page[EquityPoint], tags=["read"])
        async def get_equity(_: Reader, conn: Conn, since: IsoDatetime | None = None,
                             until: IsoDatetime | None = None,
                             limit: Limit = 500, offset: Offset = 0) -> Page[EquityPoint]:
            """Equity marked to market with its running peak and drawdown, oldest first."""
            q = select(equity).where(equity.c.mode == mode).order_by(equity.c.ts)
            if since:
                q = q.where(equity.c.ts >= since)
            if until:
                q = q.where(equity.c.ts < until)
            rows = (await conn.execute(q.limit(limit).offset(offset))).all()
            return Page[EquityPoint](items=[EquityPoint.model_validate(r) for r in rows], limit=limit, offset=offset)

        @app.get("/positions", response_model=list[PositionOut], tags=["read"])
        async def get_positions(_: Reader, conn: Conn, include_flat: bool = False) -> list[PositionOut]:
            q = select(positions).where(positions.c.mode == mode).order_by(positions.c.symbol)
            if not include_flat:
                q = q.where(positions.c.quantity != 0)
            rows = (await conn.execute(q)).all()
            return [PositionOut(**r._mapping, unrealized_pnl=(r.mark_price - r.avg_cost) * r.quantity
                                if r.mark_price is not None else 0) for r in rows]

        @app.get("/balances", response_model=list[BalanceOut], tags=["read"])
        async def get_balances(_: Reader, conn: Conn) -> list[BalanceOut]:
            prefix = mode.lower()
            kind = func.split_part(ledger_entries.c.account, ":", 2)
            total = func.sum(ledger_entries.c.amount).label("amount")
            q = (select(kind.label("kind"), ledger_entries.c.currency, total)
                 .where(ledger_entries.c.account.like(f"{prefix}:%"), kind.in_(["cash", "asset"]))
                 .group_by(kind, ledger_entries.c.currency).order_by(kind, ledger_entries.c.currency))
            return [BalanceOut(mode=mode, kind=r.kind, currency=r.currency, amount=r.amount)
                    for r in (await conn.execute(q)).all()]

        @app.get("/orders", response_model=Page[OrderOut], tags=["read"])
        async def get_orders(_: Reader, conn: Conn, symbol: str | None = None, status_: Annotated[
                OrderStatus | None, Query(alias="status")] = None, limit: Limit = 100,
                offset: Offset = 0) -> Page[OrderOut]:
            q = select(orders).order_by(orders.c.created_at.desc(), orders.c.client_order_id)
            if symbol:
                q = q.where(orders.c.symbol == symbol)
            if status_:
                q = q.where(orders.c.status == status_.value)
            rows = (await conn.execute(q.limit(limit).offset(offset))).all()
            return Page[OrderOut](items=[OrderOut.model_validate(r) for r in rows], limit=limit, offset=offset)

        @app.get("/fills", response_model=Page[FillOut], tags=["read"])
        async def get_fills(_: Reader, conn: Conn, symbol: str | None = None, client_order_id: str | None = None,
                            limit: Limit = 100, offset: Offset = 0) -> Page[FillOut]:
            q = select(fills).order_by(fills.c.ts.desc(), fills.c.fill_id)
            if symbol:
                q = q.where(fills.c.symbol == symbol)
            if client_order_id:
                q = q.where(fills.c.client_order_id == client_order_id)
            rows = (await conn.execute(q.limit(limit).offset(offset))).all()
            return Page[FillOut](items=[FillOut.model_validate(r) for r in rows], limit=limit, offset=offset)

        @app.get("/council", response_model=CouncilOut, tags=["read"])
        async def get_council(_: Reader, conn: Conn) -> CouncilOut:
            """Council mode and threshold per symbol, the active risk profile, strategies disabled by errors."""
            controls = (await conn.execute(select(council_controls).order_by(
                council_controls.c.exchange, council_controls.c.symbol))).all()
            failed = (await conn.execute(select(strategy_failures).order_by(
                strategy_failures.c.exchange, strategy_failures.c.symbol, strategy_failures.c.strategy))).all()
            return CouncilOut(risk_profile=await self._risk_profile(conn),
                              controls=[CouncilControlOut.model_validate(r) for r in controls],
                              disabled_strategies=[StrategyFailureOut.model_validate(r) for r in failed])

        @app.get("/decisions", response_model=Page[DecisionOut], tags=["read"])
        async def get_decisions(_: Reader, conn: Conn, symbol: str | None = None, action: Action | None = None,
                                since: IsoDatetime | None = None, until: IsoDatetime | None = None,
                                limit: Limit = 100, offset: Offset = 0) -> Page[DecisionOut]:
            """Council decisions, newest first, each with every voter's signal."""
            q = select(decisions).order_by(decisions.c.ts.desc(), decisions.c.decision_id)
            if symbol:
                q = q.where(decisions.c.symbol == symbol)
            if action:
                q = q.where(decisions.c.action == action.value)
            if since:
                q = q.where(decisions.c.ts >= since)
            if until:
                q = q.where(decisions.c.ts < until)
            rows = (await conn.execute(q.limit(limit).offset(offset))).all()
            return Page[DecisionOut](items=await _with_votes(conn, rows), limit=limit, offset=offset)

        @app.get("/decisions/{decision_id}", response_model=DecisionOut, tags=["read"],
                 responses={404: {"description": "no such decision"}})
        async def get_decision(_: Reader, conn: Conn, decision_id: uuid.UUID) -> DecisionOut:
            rows = (await conn.execute(select(decisions).where(decisions.c.decision_id == decision_id))).all()
            if not rows:
                raise HTTPException(status.HTTP_404_NOT_FOUND, f"no decision {decision_id}")
            return (await _with_votes(conn, rows))[0]

        @app.get("/karma", response_model=KarmaScorecard, tags=["read"])
        async def get_karma(_: Reader, conn: Conn, by: Annotated[str, Query(pattern="^(strategy|producer)$")]
                            = "strategy", symbol: str | None = None) -> KarmaScorecard:
            """Hit rate, average return and calibration of each strategy's (or producer's) convictions, scored
            when the campaign they argued about closed."""
            q = select(karma_votes)
            if symbol:
                q = q.where(karma_votes.c.symbol == symbol)
            rows = (await conn.execute(q)).all()
            scored = [r for r in rows if r.outcome_return is not None]
            pending = Counter(getattr(r, by) for r in rows if r.outcome_return is None and r.position_id)
            scores = scorecard(map(Observation.from_row, scored), by=by)
            keys = sorted(set(scores) | set(pending))
            return KarmaScorecard(by=by, rows=[
                KarmaOut(key=k, pending=pending.get(k, 0), **_score_fields(scores.get(k))) for k in keys])

        @app.get("/audit", response_model=Page[AuditOut], tags=["read"])
        async def get_audit(_: Reader, conn: Conn, limit: Limit = 100, offset: Offset = 0) -> Page[AuditOut]:
            q = select(audit_log).order_by(audit_log.c.id.desc()).limit(limit).offset(offset)
            rows = (await conn.execute(q)).all()
            return Page[AuditOut](items=[AuditOut.model_validate(r) for r in rows], limit=limit, offset=offset)

        def control_route(path: str, command: type[Payload], action: str) -> None:
            async def route(actor: Actor, body: ControlRequest | None = None) -> ControlResult:
                return await self.control(command, action, actor, body.reason if body else "")

            route.__name__ = f"control_{action}"
            app.post(path, response_model=ControlResult, tags=["controls"], responses=CONTROL_RESPONSES)(route)

        control_route("/controls/halt", HaltTrading, "halt")
        control_route("/controls/resume", ResumeTrading, "resume")
        control_route("/controls/routing/disconnect", DisconnectRouting, "routing_disconnect")

        @app.post("/controls/council/mode", response_model=ControlResult, tags=["controls"],
                  responses=CONTROL_RESPONSES)
        async def control_council_mode(actor: Actor, body: CouncilModeRequest) -> Any:
            """Council / Solo / Off and the consensus threshold, for one symbol or as the default."""
            return await self.control(SetCouncilMode, "council_mode", actor, body.reason,
                                      **body.model_dump(exclude={"reason"}))

        confirmable = {202: {"model": ConfirmationRequired, "description": "dangerous: confirm with the token"},
                       **CONTROL_RESPONSES}

        @app.post("/controls/risk-profile", response_model=ControlResult, tags=["controls"], responses=confirmable)
        async def control_risk_profile(actor: Actor, conn: Conn, body: RiskProfileChangeRequest) -> Any:
            """Switch the active risk profile (owned by risk; the council filters voters by it). Moving to a
            riskier profile needs confirmation."""
            current = RiskProfile(await self._risk_profile(conn))
            riskier = list(RiskProfile).index(body.profile) > list(RiskProfile).index(current)
            warning = (f"Raising the risk profile from {current} to {body.profile} allows larger positions, "
                       "wider stops and deeper drawdowns.") if riskier else None
            return await self.guarded(SetRiskProfile, "risk_profile", actor, body, warning, profile=body.profile)

        @app.post("/controls/operating-mode", response_model=ControlResult, tags=["controls"], responses=confirmable)
        async def control_operating_mode(actor: Actor, conn: Conn, body: OperatingModeRequest) -> Any:
            """Observe / Semi-Auto / Full-Auto (owned by the OMS). More autonomy needs confirmation."""
            row = (await conn.execute(select(oms_state.c.operating_mode).where(oms_state.c.mode == mode))).first()
            current = OperatingMode(row.operating_mode) if row else OperatingMode.OBSERVE
            warning = (f"Switching from {current} to {body.mode} lets Quorum act with less operator review."
                       if body.mode.autonomy > current.autonomy else None)
            return await self.guarded(SetOperatingMode, "operating_mode", actor, body, warning, mode=body.mode)

        @app.post("/controls/emergency-halt/clear", response_model=ControlResult, tags=["controls"],
                  responses=confirmable)
        async def control_clear_emergency(actor: Actor, body: ConfirmableRequest | None = None) -> Any:
            """Lift the drawdown emergency halt (the drawdown peak restarts from current equity)."""
            return await self.guarded(ClearEmergencyHalt, "clear_emergency_halt", actor, body or ConfirmableRequest(),
                                      "Clearing the emergency halt re-enables trading after a drawdown breach.")

        @app.post("/controls/positions/close-all", response_model=ControlResult, tags=["controls"],
                  responses=confirmable)
        async def control_close_all(actor: Actor, body: ConfirmableRequest | None = None) -> Any:
            """Cancel every open order and market-sell every position."""
            return await self.guarded(CloseAllPositions, "close_all_positions", actor, body or ConfirmableRequest(),
                                      "Every position will be sold at market, whatever the price.")

        def scoped_route(path: str, command: type[Payload], action: str, doc: str) -> None:
            async def route(actor: Actor, body: SymbolScopeRequest | None = None) -> Any:
                body = body or SymbolScopeRequest()
                return await self.control(command, action, actor, body.reason, symbol=body.symbol)

            route.__name__, route.__doc__ = f"control_{action}", doc
            app.post(path, response_model=ControlResult, tags=["controls"],
                     responses=CONTROL_RESPONSES)(route)

        scoped_route("/controls/kill-switch/engage", EngageKillSwitch, "kill_switch_engage",
                     "Close-only for a symbol (or everything): exits and stops still work, new buys are refused.")
        scoped_route("/controls/kill-switch/release", ReleaseKillSwitch, "kill_switch_release",
                     "Lift a kill switch (and reset its losing streak).")
        scoped_route("/controls/orders/cancel-all", CancelAllOrders, "cancel_all_orders",
                     "Cancel every open order (of one symbol, when given).")

        def proposal_route(verb: str, command: type[Payload]) -> None:
            async def route(actor: Actor, decision_id: uuid.UUID, body: ControlRequest | None = None) -> Any:
                return await self.control(command, f"proposal_{verb}", actor, body.reason if body else "",
                                          decision_id=decision_id)

            route.__name__ = f"proposal_{verb}"
            app.post(f"/proposals/{{decision_id}}/{verb}", response_model=ControlResult, tags=["controls"],
                     responses=CONTROL_RESPONSES)(route)

        proposal_route("approve", ApproveProposal)
        proposal_route("reject", RejectProposal)

        @app.get("/proposals", response_model=Page[ProposalOut], tags=["read"])
        async def get_proposals(_: Reader, conn: Conn, status_: Annotated[str | None, Query(
                alias="status", pattern="^(PENDING|APPROVED|REJECTED|EXPIRED|OBSERVED)$")] = None,
                limit: Limit = 100, offset: Offset = 0) -> Page[ProposalOut]:
            """Semi-Auto trade proposals (and, in Observe mode, what would have been traded)."""
            q = select(trade_proposals).order_by(trade_proposals.c.created_at.desc(), trade_proposals.c.decision_id)
            if status_:
                q = q.where(trade_proposals.c.status == status_)
            rows = (await conn.execute(q.limit(limit).offset(offset))).all()
            return Page[ProposalOut](items=[ProposalOut.model_validate(r) for r in rows], limit=limit, offset=offset)

        @app.get("/risk", response_model=RiskOut, tags=["read"])
        async def get_risk(_: Reader, conn: Conn) -> RiskOut:
            """Active profile and its limits, halt and emergency state, drawdown, kill switches."""
            profile = await self._risk_profile(conn)
            halt = (await conn.execute(select(risk_state).where(risk_state.c.scope == "global"))).first()
            dd = (await conn.execute(select(risk_drawdown).where(risk_drawdown.c.scope == "global"))).first()
            kills = (await conn.execute(select(risk_kill_switch).order_by(risk_kill_switch.c.scope))).all()
            cash = (await conn.execute(select(risk_balances.c.amount).where(
                risk_balances.c.currency == self.settings.quote_currency))).scalar_one_or_none()
            return RiskOut(
                risk_profile=profile, limits=self._limits_of(profile), halted=bool(halt and halt.halted),
                emergency_halt=bool(halt and halt.emergency), halt_reason=halt.reason if halt and halt.halted else None,
                drawdown={"peak": str(dd.peak), "equity": str(dd.equity), "breached": dd.breached,
                          "drawdown_pct": str((dd.peak - dd.equity) / dd.peak * 100 if dd.peak else 0)} if dd else None,
                kill_switches=[KillSwitchOut.model_validate(k) for k in kills], cash=cash)

        @app.get("/reconciliation", response_model=Page[DiscrepancyOut], tags=["read"])
        async def get_reconciliation(_: Reader, conn: Conn, limit: Limit = 100, offset: Offset = 0
                                     ) -> Page[DiscrepancyOut]:
            """Every difference the OMS found between its records and the venue's (or its last snapshot)."""
            q = select(reconciliation_discrepancies).order_by(reconciliation_discrepancies.c.id.desc())
            rows = (await conn.execute(q.limit(limit).offset(offset))).all()
            return Page[DiscrepancyOut](items=[DiscrepancyOut.model_validate(r) for r in rows], limit=limit,
                                        offset=offset)

        @app.post("/controls/backfill", response_model=ControlResult, tags=["controls"], responses=CONTROL_RESPONSES)
        async def control_backfill(actor: Actor, body: BackfillRequest) -> Any:
            """Start a resumable REST backfill in the market-data service (history goes to the database)."""
            return await self.control(StartBackfill, "backfill", actor, body.reason,
                                      **body.model_dump(exclude={"reason"}))

        admin.register(app, self)
        stream.register(app, self)

    # --- controls -------------------------------------------------------------------------------------
    def _limits_of(self, profile: str) -> dict[str, Any]:
        return self.settings.risk_config.profiles[RiskProfile(profile)].model_dump(mode="json")

    async def guarded(self, command_cls: type[Payload], action: str, actor: str, body: ConfirmableRequest,
                      warning: str | None, **fields: Any) -> Any:
        """Run a control; a dangerous one (``warning`` set) only on the second call with its token."""
        if warning is not None:
            params = {k: (v.value if hasattr(v, "value") else v) for k, v in fields.items()}
            first = await self.confirm_step(actor, action, body.confirmation_token, params, warning)
            if first is not None:
                return first
        return await self.control(command_cls, action, actor, body.reason, **fields)

    async def confirm_step(self, actor: str, action: str, token: str | None, params: dict[str, Any],
                           warning: str) -> Any:
        """First call (no token): a 202 with the warning and a single-use token. Second call: the token is
        spent (None returned: go ahead) or refused with 409."""
        ttl = self.settings.confirmation_ttl_s
        if token is None:
            async def mint(ctx: Context) -> tuple[str, datetime]:
                minted, expires = await confirm.issue(ctx.conn, actor=actor, action=action, params=params,
                                                      now=ctx.clock.now(), ttl_s=ttl)
                await self._audit(ctx, actor, action, "PENDING_CONFIRM", {"params": params, "warning": warning},
                                  uuid.uuid4())
                return minted, expires

            minted, expires = await self.transact(mint)
            return JSONResponse(ConfirmationRequired(action=action, warning=warning, confirmation_token=minted,
                                                     expires_at=expires).model_dump(mode="json"), status_code=202)

        async def spend(ctx: Context) -> bool:
            ok = await confirm.redeem(ctx.conn, token, actor=actor, action=action, params=params,
                                      now=ctx.clock.now())
            if not ok:
                await self._audit(ctx, actor, action, "REFUSED", {"params": params,
                                                                  "why": "invalid confirmation token"}, uuid.uuid4())
            return ok

        if not await self.transact(spend):
            raise Refused(action, "confirmation token invalid, expired, already used, or issued for another request "
                                  "or operator")
        return None

    async def key_can_withdraw(self, exchange: str, api_key: str, secret: str) -> bool | None:
        """Ask the exchange what the key may do (None: it does not say)."""
        from quorum.venues.ccxt_venue import CcxtVenue, live_exchange

        ex = live_exchange(exchange, api_key=api_key, secret=secret,
                           base_url=self.settings.exchange_base_urls.get(exchange))
        try:
            return await CcxtVenue(ex, enabled=True).can_withdraw()
        except Exception as exc:  # noqa: BLE001 - any exchange failure is a 502 with its class, never the key
            raise HTTPException(status.HTTP_502_BAD_GATEWAY,
                                f"could not check the key with {exchange}: {type(exc).__name__}") from None
        finally:
            await ex.close()

    async def control(self, command_cls: type[Payload], action: str, actor: str, reason: str,
                      **fields: Any) -> Any:
        """Publish the command with its audit row (one transaction), then wait for the confirmation."""
        request_id = uuid.uuid4()
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()

        async def send(ctx: Context) -> uuid.UUID:
            command = command_cls(actor=actor, reason=reason, **fields)  # type: ignore[call-arg]
            env = ctx.emit(command, key=str(request_id))
            self._waiters[env.event_id] = fut
            details = {"command_id": str(env.event_id), **command.model_dump(mode="json", exclude={"actor"})}
            await self._audit(ctx, actor, action, "REQUESTED", details, env.event_id)
            return env.event_id

        command_id = await self.transact(send)
        try:
            try:
                confirmation = await asyncio.wait_for(fut, timeout=self.settings.control_timeout_s)
            except TimeoutError:
                outcome, conf_type, detail = "TIMEOUT", None, "the owning service did not confirm in time"
            else:
                refused = isinstance(confirmation.payload, ControlRefused)
                outcome = "REFUSED" if refused else "CONFIRMED"
                conf_type = confirmation.event_type
                detail = confirmation.payload.detail if refused else ""
        finally:
            self._waiters.pop(command_id, None)

        async def record(ctx: Context) -> None:
            await self._audit(ctx, actor, action, outcome, {"command_id": str(command_id), "confirmation": conf_type},
                              command_id)

        await self.transact(record)
        result = ControlResult(action=action, status=outcome, command_id=str(command_id), confirmation=conf_type,
                               detail=detail)
        if outcome == "TIMEOUT":
            return JSONResponse(result.model_dump(), status_code=status.HTTP_504_GATEWAY_TIMEOUT)
        if outcome == "REFUSED":
            return JSONResponse(result.model_dump(), status_code=status.HTTP_409_CONFLICT)
        return result

    async def _audit(self, ctx: Context, actor: str, action: str, outcome: str, details: dict[str, Any],
                     command_id: uuid.UUID) -> None:
        await record_audit(ctx, actor=actor, action=action, mode=self.settings.trading_mode.value,
                           risk_profile=await self._risk_profile(ctx.conn), status=outcome, details=details,
                           key=command_id, chain_key=self.settings.chain_key)

    async def _risk_profile(self, conn: AsyncConnection) -> str:
        """The profile risk has confirmed, or the configured one before any change."""
        row = (await conn.execute(select(risk_profile_state.c.profile)
                                  .where(risk_profile_state.c.scope == "global"))).scalar_one_or_none()
        return row or self.settings.risk_profile.value

    def _health(self) -> dict[str, ServiceHealth]:
        """From the watcher's cache: a request never touches JetStream."""
        out: dict[str, ServiceHealth] = {}
        now = self.clock.now()
        for key, doc in sorted(self.health.docs.items()):
            try:
                seen = datetime.fromisoformat(doc["ts"]) if "ts" in doc else None
            except (TypeError, ValueError):
                seen = None
            stale = seen is None or now - seen > timedelta(seconds=self.settings.health_stale_s)
            out[key] = ServiceHealth(state=doc.get("state", "UNKNOWN"), last_seen=seen, stale=stale,
                                     details=doc.get("details") or {})
        return out



# --- read helpers ------------------------------------------------------------------------------------------
ROUTING_DISCONNECTED = "ROUTING_DISCONNECTED"  # the OMS's reason code for an order it refused to send


async def _disconnected(conn: AsyncConnection, mode: str) -> tuple[datetime | None, int]:
    """Since when routing is off (the last confirmed disconnect: an OMS cold start, audited as SYSTEM:oms, or an
    operator's) and how many orders the OMS refused because of it since then."""
    since = (await conn.execute(select(func.max(audit_log.c.ts)).where(
        audit_log.c.action == "routing_disconnect", audit_log.c.status == "CONFIRMED",
        audit_log.c.mode == mode))).scalar_one()
    q = select(func.count()).select_from(orders).where(
        orders.c.mode == mode, orders.c.status == OrderStatus.REJECTED.value,
        orders.c.reason_code == ROUTING_DISCONNECTED)
    refused = (await conn.execute(q if since is None else q.where(orders.c.updated_at >= since))).scalar_one()
    return since, refused


def _routing_line(since: datetime | None, refused: int) -> str:
    when = f" since {since.isoformat(timespec='seconds')}" if since else ""
    return f"disconnected{when}, {refused} intent{'' if refused == 1 else 's'} refused"


async def _with_votes(conn: AsyncConnection, rows: Any) -> list[DecisionOut]:
    ids = [r.decision_id for r in rows]
    votes: dict[Any, list[VoteOut]] = {i: [] for i in ids}
    if ids:
        for v in (await conn.execute(select(signals).where(signals.c.decision_id.in_(ids))
                                     .order_by(signals.c.strategy))).all():
            votes[v.decision_id].append(VoteOut.model_validate(v))
    return [DecisionOut.model_validate({**r._mapping, "votes": votes[r.decision_id]}) for r in rows]


def _score_fields(score: Score | None) -> dict[str, Any]:
    if score is None:
        return {"n": 0, "hits": 0, "hit_rate": None, "average_return": None, "brier": None, "calibration": []}
    return {"n": score.n, "hits": score.hits, "hit_rate": score.hit_rate, "average_return": score.average_return,
            "brier": score.brier, "calibration": [CalibrationBinOut(**vars(b)) for b in score.calibration]}
