"""Controls: each a typed command to the service that owns the state (risk: halt, kill switches, profile; OMS:
routing, operating mode, orders and positions; council: its mode; market data: backfill; inference: models),
confirmed by it (training jobs, which run for minutes, are queued in ``routes/training``). Dangerous ones are
two-step; anything live also needs the typed phrase and the master PIN."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, status
from fastapi.responses import JSONResponse
from quorum.events.base import Payload
from quorum.events.control import (
    AuthorizeRouting,
    CancelAllOrders,
    ClearEmergencyHalt,
    CloseAllPositions,
    DisconnectRouting,
    EngageKillSwitch,
    HaltTrading,
    ReleaseKillSwitch,
    ResumeTrading,
    SelectModel,
    SetCouncilMode,
    SetOperatingMode,
    SetRiskProfile,
    ShutdownService,
    StartBackfill,
)
from quorum.types import RiskProfile, TradingMode

from .. import queries
from ..deps import Actor, Cmd, Conn, Mode, Settings
from ..http import CONTROL_RESPONSES, invalid
from ..schemas import (
    BackfillRequest,
    ConfirmableRequest,
    ConfirmationRequired,
    ControlRequest,
    ControlResult,
    CouncilModeRequest,
    LiveConfirmableRequest,
    ModelRequest,
    OperatingModeRequest,
    PanicRequest,
    RiskProfileChangeRequest,
    ServiceRequest,
    SymbolScopeRequest,
    TradingModeRequest,
)

PANIC_PHRASE = "SELL EVERYTHING"
CONFIRMABLE = {202: {"model": ConfirmationRequired, "description": "dangerous: confirm with the token"},
               **CONTROL_RESPONSES}
router = APIRouter(tags=["controls"])


def _plain(path: str, command: type[Payload], action: str) -> None:
    async def route(actor: Actor, commands: Cmd, body: ControlRequest | None = None) -> ControlResult:
        return await commands.control(command, action, actor, body.reason if body else "")

    route.__name__ = f"control_{action}"
    router.post(path, response_model=ControlResult, responses=CONTROL_RESPONSES)(route)


def _scoped(path: str, command: type[Payload], action: str, doc: str) -> None:
    async def route(actor: Actor, commands: Cmd, body: SymbolScopeRequest | None = None) -> Any:
        body = body or SymbolScopeRequest()
        return await commands.control(command, action, actor, body.reason, symbol=body.symbol)

    route.__name__, route.__doc__ = f"control_{action}", doc
    router.post(path, response_model=ControlResult, responses=CONTROL_RESPONSES)(route)


_plain("/controls/halt", HaltTrading, "halt")
_plain("/controls/resume", ResumeTrading, "resume")
_plain("/controls/routing/disconnect", DisconnectRouting, "routing_disconnect")


@router.post("/controls/council/mode", response_model=ControlResult, responses=CONTROL_RESPONSES)
async def control_council_mode(actor: Actor, commands: Cmd, body: CouncilModeRequest) -> Any:
    """Council / Solo / Off and the consensus threshold, for one symbol or as the default."""
    return await commands.control(SetCouncilMode, "council_mode", actor, body.reason,
                                  **body.model_dump(exclude={"reason"}))


@router.post("/controls/risk-profile", response_model=ControlResult, responses=CONFIRMABLE)
async def control_risk_profile(actor: Actor, commands: Cmd, conn: Conn, settings: Settings,
                               body: RiskProfileChangeRequest) -> Any:
    """Switch the active risk profile (owned by risk; the council filters voters by it). Moving to a
    riskier profile needs confirmation."""
    current = RiskProfile(await queries.risk_profile(conn, settings.risk_profile.value))
    riskier = list(RiskProfile).index(body.profile) > list(RiskProfile).index(current)
    warning = (f"Raising the risk profile from {current} to {body.profile} allows larger positions, "
               "wider stops and deeper drawdowns.") if riskier else None
    return await commands.guarded(SetRiskProfile, "risk_profile", actor, body, warning, profile=body.profile)


@router.post("/controls/operating-mode", response_model=ControlResult, responses=CONFIRMABLE)
async def control_operating_mode(actor: Actor, commands: Cmd, conn: Conn, mode: Mode,
                                 body: OperatingModeRequest) -> Any:
    """Observe / Semi-Auto / Full-Auto (owned by the OMS). More autonomy needs confirmation."""
    current = await queries.operating_mode(conn, mode)
    warning = (f"Switching from {current} to {body.mode} lets Quorum act with less operator review."
               if body.mode.autonomy > current.autonomy else None)
    return await commands.guarded(SetOperatingMode, "operating_mode", actor, body, warning, mode=body.mode)


@router.post("/controls/emergency-halt/clear", response_model=ControlResult, responses=CONFIRMABLE)
async def control_clear_emergency(actor: Actor, commands: Cmd, body: ConfirmableRequest | None = None) -> Any:
    """Lift the drawdown emergency halt (the drawdown peak restarts from current equity)."""
    return await commands.guarded(ClearEmergencyHalt, "clear_emergency_halt", actor, body or ConfirmableRequest(),
                                  "Clearing the emergency halt re-enables trading after a drawdown breach.")


@router.post("/controls/positions/close-all", response_model=ControlResult, responses=CONFIRMABLE)
async def control_close_all(actor: Actor, commands: Cmd, body: ConfirmableRequest | None = None) -> Any:
    """Cancel every open order and market-sell every position."""
    return await commands.guarded(CloseAllPositions, "close_all_positions", actor, body or ConfirmableRequest(),
                                  "Every position will be sold at market, whatever the price.")


_scoped("/controls/kill-switch/engage", EngageKillSwitch, "kill_switch_engage",
        "Close-only for a symbol (or everything): exits and stops still work, new buys are refused.")
_scoped("/controls/kill-switch/release", ReleaseKillSwitch, "kill_switch_release",
        "Lift a kill switch (and reset its losing streak).")
_scoped("/controls/orders/cancel-all", CancelAllOrders, "cancel_all_orders",
        "Cancel every open order (of one symbol, when given).")


@router.post("/controls/backfill", response_model=ControlResult, responses=CONTROL_RESPONSES)
async def control_backfill(actor: Actor, commands: Cmd, body: BackfillRequest) -> Any:
    """Start a resumable REST backfill in the market-data service (history goes to the database)."""
    return await commands.control(StartBackfill, "backfill", actor, body.reason,
                                  **body.model_dump(exclude={"reason"}))


@router.post("/controls/routing/authorize", response_model=ControlResult,
      responses={202: {"description": "live: confirm with the token, the phrase and the PIN"}, **CONTROL_RESPONSES})
async def authorize_routing(actor: Actor, commands: Cmd, conn: Conn, settings: Settings,
                            body: LiveConfirmableRequest | None = None) -> Any:
    """Connect order routing (the master toggle). In live mode: two steps, the typed phrase and the PIN."""
    body = body or LiveConfirmableRequest()
    if settings.trading_mode is TradingMode.LIVE:
        first, _ = await commands.live_confirm(actor, "routing_authorize", body, {"mode": "LIVE"},
                                               "ENABLE LIVE TRADING", conn,
                                               "Routing orders in LIVE mode trades real money.")
        if first is not None:
            return first
    return await commands.control(AuthorizeRouting, "routing_authorize", actor, body.reason)


@router.post("/controls/panic", response_model=ControlResult,
      responses={202: {"description": "confirm with the token and the phrase"}, **CONTROL_RESPONSES})
async def panic(actor: Actor, commands: Cmd, body: PanicRequest | None = None) -> Any:
    """Emergency liquidation: halt, cancel every order and market-sell every position. Two steps; the second
    must also type the confirmation phrase."""
    body = body or PanicRequest()
    if body.confirmation_token is not None and body.confirmation_phrase != PANIC_PHRASE:
        raise invalid("confirmation_phrase",  # checked first: a typo does not burn the token
                      f"type the confirmation phrase exactly: {PANIC_PHRASE}")
    first = await commands.confirm_step(actor, "panic", body.confirmation_token, {},
                                        f"PANIC sells every position at market and halts trading. To confirm, "
                                        f"send the token with confirmation_phrase = \"{PANIC_PHRASE}\".",
                                        phrase=PANIC_PHRASE)
    if first is not None:
        return first
    halted = await commands.control(HaltTrading, "panic_halt", actor, body.reason or "panic")
    if isinstance(halted, JSONResponse):
        return halted
    return await commands.control(CloseAllPositions, "panic_close_all", actor, body.reason or "panic")


@router.post("/controls/trading-mode", response_model=ControlResult, responses=CONTROL_RESPONSES)
async def switch_trading_mode(actor: Actor, commands: Cmd, body: TradingModeRequest) -> Any:
    """Paper <-> live is never switched at runtime: restart with the live configuration and an unlocked key."""
    await commands.record(actor, "trading_mode_switch", "REFUSED", {"requested": body.mode})
    result = ControlResult(action="trading_mode_switch", status="REFUSED", command_id="",
                           detail="switching paper/live needs a restart with the live configuration and an "
                                  "unlocked exchange key; it is refused at runtime")
    return JSONResponse(result.model_dump(), status_code=status.HTTP_409_CONFLICT)


@router.post("/controls/model/select", response_model=ControlResult, responses=CONTROL_RESPONSES)
async def select_model(actor: Actor, commands: Cmd, body: ModelRequest) -> Any:
    """Select (promote) the model version inference serves; refused for an unregistered one."""
    return await commands.control(SelectModel, "model_select", actor, body.reason, model_name=body.model_name,
                                  version=body.version)


@router.post("/controls/shutdown", response_model=ControlResult, responses=CONTROL_RESPONSES)
async def shutdown(actor: Actor, commands: Cmd, body: ServiceRequest) -> Any:
    """Stop one service gracefully (it confirms, drains and exits; its supervisor may restart it)."""
    return await commands.control(ShutdownService, "service_shutdown", actor, body.reason, service=body.service)
