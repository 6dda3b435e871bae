"""The gateway's read models: each takes a database connection (and what it reads for: the trading mode, the
configured defaults) and returns the typed answer a route sends. No HTTP here and no writes."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from pydantic import BaseModel
from quorum import keyvault
from quorum.council.karma import Observation, Score, scorecard
from quorum.db.tables import (
    api_tokens,
    audit_log,
    backtests,
    candles,
    configurations,
    council_controls,
    decisions,
    equity,
    exchange_keys,
    fills,
    gate_reports,
    karma_votes,
    ledger_balances,
    ledger_entries,
    master_pin,
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
from quorum.risk.profiles import RiskConfig
from quorum.types import Action, OperatingMode, OrderStatus, RiskProfile
from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from .model_queries import in_service_of
from .schemas import (
    AuditOut,
    BacktestDetail,
    BacktestOut,
    BalanceOut,
    CalibrationBinOut,
    ConfigurationOut,
    ConfigurationsOut,
    CouncilControlOut,
    CouncilOut,
    DecisionOut,
    DiscrepancyOut,
    EquityPoint,
    ExchangeKeyOut,
    FillOut,
    GateReportOut,
    KarmaOut,
    KarmaScorecard,
    KillSwitchOut,
    OrderOut,
    Page,
    PortfolioOut,
    PositionOut,
    ProposalOut,
    RiskOut,
    ServiceHealth,
    Status,
    StrategyFailureOut,
    TokenOut,
    VoteOut,
)

ROUTING_DISCONNECTED = "ROUTING_DISCONNECTED"  # the OMS's reason code for an order it refused to send
PIN_SCOPE = "master"


async def _page(conn: AsyncConnection, q: Select[Any], model: type[BaseModel], limit: int, offset: int) -> Any:
    rows = (await conn.execute(q.limit(limit).offset(offset))).all()
    return Page[model](items=[model.model_validate(r) for r in rows], limit=limit, offset=offset)


# --- the system's state -----------------------------------------------------------------------------------
async def risk_profile(conn: AsyncConnection, default: str) -> str:
    """The profile risk has confirmed, or the configured one before any change."""
    row = (await conn.execute(select(risk_profile_state.c.profile)
                              .where(risk_profile_state.c.scope == "global"))).scalar_one_or_none()
    return row or default


async def _halt(conn: AsyncConnection) -> dict[str, Any]:
    halt = (await conn.execute(select(risk_state).where(risk_state.c.scope == "global"))).first()
    return {"halted": bool(halt and halt.halted), "emergency_halt": bool(halt and halt.emergency),
            "halt_reason": halt.reason if halt and halt.halted else None}


async def operating_mode(conn: AsyncConnection, mode: str) -> OperatingMode:
    row = (await conn.execute(select(oms_state.c.operating_mode).where(oms_state.c.mode == mode))).first()
    return OperatingMode(row.operating_mode) if row else OperatingMode.OBSERVE


async def status(conn: AsyncConnection, mode: str, default_profile: str,
                 services: dict[str, ServiceHealth], config_hash: str | None = None) -> Status:
    halt = await _halt(conn)
    oms = (await conn.execute(select(oms_state).where(oms_state.c.mode == mode))).first()
    kill = (await conn.execute(select(risk_kill_switch.c.engaged).where(
        risk_kill_switch.c.scope == "*"))).scalar_one_or_none()
    last = (await conn.execute(select(func.max(candles.c.ts)))).scalar_one()
    killed = (await conn.execute(select(risk_kill_switch.c.scope).where(
        risk_kill_switch.c.engaged, risk_kill_switch.c.scope != "*"))).scalars().all()
    modes = {r.symbol: r.mode for r in (await conn.execute(select(council_controls))).all()}
    model = (await conn.execute(select(model_selection))).first()
    md = services.get("market_data")
    connected = bool(oms and oms.routing_connected)
    since, refused = (None, 0) if connected else await _disconnected(conn, mode)
    return Status(trading_mode=mode, risk_profile=await risk_profile(conn, default_profile), **halt,
                  routing_connected=connected, routing_disconnected_since=since, intents_refused=refused,
                  routing="connected" if connected else _routing_line(since, refused),
                  operating_mode=oms.operating_mode if oms else None, kill_switch_global=bool(kill),
                  killed_symbols=sorted(killed), council_modes=modes,
                  data_source=md.details if md else None,
                  model=f"{model.model_name}@{model.version}" if model else None,
                  model_in_service=in_service_of(model),
                  services=services, last_candle_ts=last, config_hash=config_hash,
                  gates=await _gate_lines(conn, mode, config_hash, last))


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


async def risk(conn: AsyncConnection, default_profile: str, config: RiskConfig, quote: str) -> RiskOut:
    profile = await risk_profile(conn, default_profile)
    halt = await _halt(conn)
    dd = (await conn.execute(select(risk_drawdown).where(risk_drawdown.c.scope == "global"))).first()
    kills = (await conn.execute(select(risk_kill_switch).order_by(risk_kill_switch.c.scope))).all()
    cash = (await conn.execute(select(risk_balances.c.amount).where(
        risk_balances.c.currency == quote))).scalar_one_or_none()
    return RiskOut(
        risk_profile=profile, limits=config.profiles[RiskProfile(profile)].model_dump(mode="json"), **halt,
        drawdown={"peak": str(dd.peak), "equity": str(dd.equity), "breached": dd.breached,
                  "drawdown_pct": str((dd.peak - dd.equity) / dd.peak * 100 if dd.peak else 0)} if dd else None,
        kill_switches=[KillSwitchOut.model_validate(k) for k in kills], cash=cash)


async def council(conn: AsyncConnection, default_profile: str) -> CouncilOut:
    controls = (await conn.execute(select(council_controls).order_by(
        council_controls.c.exchange, council_controls.c.symbol))).all()
    failed = (await conn.execute(select(strategy_failures).order_by(
        strategy_failures.c.exchange, strategy_failures.c.symbol, strategy_failures.c.strategy))).all()
    return CouncilOut(risk_profile=await risk_profile(conn, default_profile),
                      controls=[CouncilControlOut.model_validate(r) for r in controls],
                      disabled_strategies=[StrategyFailureOut.model_validate(r) for r in failed])


# --- backtests and validation gates --------------------------------------------------------------------------
NO_GATE_REPORT = "no gate report"


async def backtests_page(conn: AsyncConnection, status_: str | None, limit: int, offset: int) -> Page[BacktestOut]:
    q = select(*(c for c in backtests.c if c.name != "configuration")).order_by(backtests.c.created_at.desc(),
                                                                                backtests.c.id)
    if status_:
        q = q.where(backtests.c.status == status_)
    return await _page(conn, q, BacktestOut, limit, offset)


async def configurations_view(conn: AsyncConnection) -> ConfigurationsOut:
    """The active configuration and the proposals, newest first."""
    c = configurations.c
    rows = (await conn.execute(select(configurations).where(c.status.in_(("ACTIVE", "PROPOSED")))
                               .order_by(c.created_at.desc(), c.id))).all()
    found = [ConfigurationOut.model_validate(r) for r in rows]
    return ConfigurationsOut(active=next((r for r in found if r.status == "ACTIVE"), None),
                             proposed=[r for r in found if r.status == "PROPOSED"])


async def active_configuration(conn: AsyncConnection) -> ConfigurationOut | None:
    """The ACTIVE configuration, or None: the council decides with the services' settings."""
    row = (await conn.execute(select(configurations).where(configurations.c.status == "ACTIVE"))).first()
    return None if row is None else ConfigurationOut.model_validate(row)


async def active_configuration_hash(conn: AsyncConnection) -> str | None:
    return (await conn.execute(select(configurations.c.config_hash)
                               .where(configurations.c.status == "ACTIVE"))).scalar_one_or_none()


async def configuration(conn: AsyncConnection, config_id: UUID) -> ConfigurationOut | None:
    row = (await conn.execute(select(configurations).where(configurations.c.id == config_id))).first()
    return None if row is None else ConfigurationOut.model_validate(row)


async def backtest(conn: AsyncConnection, backtest_id: UUID) -> BacktestDetail | None:
    row = (await conn.execute(select(backtests).where(backtests.c.id == backtest_id))).first()
    return None if row is None else BacktestDetail.model_validate(row)


async def latest_gates(conn: AsyncConnection, config_hash: str | None) -> list[GateReportOut]:
    """The newest gate report of each asset for the configuration."""
    if config_hash is None:
        return []
    g = gate_reports.c
    newest = select(func.max(g.id)).where(g.config_hash == config_hash).group_by(g.asset)
    q = select(gate_reports).where(g.id.in_(newest.scalar_subquery())).order_by(g.asset)
    return [GateReportOut.model_validate(r) for r in (await conn.execute(q)).all()]


async def _gate_lines(conn: AsyncConnection, mode: str, config_hash: str | None,
                      last_candle: datetime | None) -> dict[str, str]:
    """Per asset (any with a gate report, a position, or a candle at the latest close): whether the active
    configuration's latest gate report passed."""
    assets = set((await conn.execute(select(gate_reports.c.asset).distinct())).scalars())
    assets |= set((await conn.execute(select(positions.c.symbol).where(
        positions.c.mode == mode, positions.c.quantity != 0))).scalars())
    if last_candle is not None:
        assets |= set((await conn.execute(select(candles.c.symbol).where(candles.c.ts == last_candle)
                                          .distinct())).scalars())
    passed = {r.asset: r.passed for r in await latest_gates(conn, config_hash)}
    return {a: NO_GATE_REPORT if a not in passed else "passed" if passed[a] else "failed" for a in sorted(assets)}


# --- the book ---------------------------------------------------------------------------------------------
async def portfolio(conn: AsyncConnection, mode: str, quote: str) -> PortfolioOut:
    last = (await conn.execute(select(equity).where(equity.c.mode == mode)
                               .order_by(equity.c.ts.desc()).limit(1))).first()
    cash = (await conn.execute(select(ledger_balances.c.amount).where(
        ledger_balances.c.account == f"{mode.lower()}:cash:{quote}"))).scalar_one_or_none() or Decimal(0)
    rows = (await conn.execute(select(positions).where(positions.c.mode == mode))).all()
    held = sum((r.quantity * (r.mark_price or r.avg_cost) for r in rows), Decimal(0))
    return PortfolioOut(
        mode=mode, equity=last.equity if last else None, peak_equity=last.peak_equity if last else None,
        drawdown=last.drawdown if last else None, cash=cash, holdings_value=held,
        realized_pnl=sum((r.realized_pnl for r in rows), Decimal(0)),
        unrealized_pnl=sum(((r.mark_price - r.avg_cost) * r.quantity for r in rows
                            if r.mark_price is not None), Decimal(0)),
        fees_paid=sum((r.fees_paid for r in rows), Decimal(0)), positions=sum(r.quantity != 0 for r in rows))


async def equity_page(conn: AsyncConnection, mode: str, since: datetime | None, until: datetime | None,
                      limit: int, offset: int) -> Page[EquityPoint]:
    q = select(equity).where(equity.c.mode == mode).order_by(equity.c.ts)
    if since:
        q = q.where(equity.c.ts >= since)
    if until:
        q = q.where(equity.c.ts < until)
    return await _page(conn, q, EquityPoint, limit, offset)


async def position_list(conn: AsyncConnection, mode: str, include_flat: bool) -> list[PositionOut]:
    q = select(positions).where(positions.c.mode == mode).order_by(positions.c.symbol)
    if not include_flat:
        q = q.where(positions.c.quantity != 0)
    rows = (await conn.execute(q)).all()
    return [PositionOut(**r._mapping, unrealized_pnl=(r.mark_price - r.avg_cost) * r.quantity
                        if r.mark_price is not None else 0) for r in rows]


async def balance_list(conn: AsyncConnection, mode: str) -> list[BalanceOut]:
    prefix = mode.lower()
    kind = func.split_part(ledger_entries.c.account, ":", 2)
    total = func.sum(ledger_entries.c.amount).label("amount")
    q = (select(kind.label("kind"), ledger_entries.c.currency, total)
         .where(ledger_entries.c.account.like(f"{prefix}:%"), kind.in_(["cash", "asset"]))
         .group_by(kind, ledger_entries.c.currency).order_by(kind, ledger_entries.c.currency))
    return [BalanceOut(mode=mode, kind=r.kind, currency=r.currency, amount=r.amount)
            for r in (await conn.execute(q)).all()]


async def orders_page(conn: AsyncConnection, symbol: str | None, status_: OrderStatus | None, limit: int,
                      offset: int) -> Page[OrderOut]:
    q = select(orders).order_by(orders.c.created_at.desc(), orders.c.client_order_id)
    if symbol:
        q = q.where(orders.c.symbol == symbol)
    if status_:
        q = q.where(orders.c.status == status_.value)
    return await _page(conn, q, OrderOut, limit, offset)


async def fills_page(conn: AsyncConnection, symbol: str | None, client_order_id: str | None, limit: int,
                     offset: int) -> Page[FillOut]:
    q = select(fills).order_by(fills.c.ts.desc(), fills.c.fill_id)
    if symbol:
        q = q.where(fills.c.symbol == symbol)
    if client_order_id:
        q = q.where(fills.c.client_order_id == client_order_id)
    return await _page(conn, q, FillOut, limit, offset)


async def reconciliation_page(conn: AsyncConnection, limit: int, offset: int) -> Page[DiscrepancyOut]:
    q = select(reconciliation_discrepancies).order_by(reconciliation_discrepancies.c.id.desc())
    return await _page(conn, q, DiscrepancyOut, limit, offset)


async def proposals_page(conn: AsyncConnection, status_: str | None, limit: int, offset: int) -> Page[ProposalOut]:
    q = select(trade_proposals).order_by(trade_proposals.c.created_at.desc(), trade_proposals.c.decision_id)
    if status_:
        q = q.where(trade_proposals.c.status == status_)
    return await _page(conn, q, ProposalOut, limit, offset)


# --- decisions and karma ----------------------------------------------------------------------------------
async def decisions_page(conn: AsyncConnection, symbol: str | None, action: Action | None, since: datetime | None,
                         until: datetime | None, limit: int, offset: int) -> Page[DecisionOut]:
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


async def decision(conn: AsyncConnection, decision_id: UUID) -> DecisionOut | None:
    rows = (await conn.execute(select(decisions).where(decisions.c.decision_id == decision_id))).all()
    return (await _with_votes(conn, rows))[0] if rows else None


async def _with_votes(conn: AsyncConnection, rows: Any) -> list[DecisionOut]:
    ids = [r.decision_id for r in rows]
    votes: dict[Any, list[VoteOut]] = {i: [] for i in ids}
    if ids:
        for v in (await conn.execute(select(signals).where(signals.c.decision_id.in_(ids))
                                     .order_by(signals.c.strategy))).all():
            votes[v.decision_id].append(VoteOut.model_validate(v))
    return [DecisionOut.model_validate({**r._mapping, "votes": votes[r.decision_id]}) for r in rows]


async def karma(conn: AsyncConnection, by: str, symbol: str | None) -> KarmaScorecard:
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


def _score_fields(score: Score | None) -> dict[str, Any]:
    if score is None:
        return {"n": 0, "hits": 0, "hit_rate": None, "average_return": None, "brier": None, "calibration": []}
    return {"n": score.n, "hits": score.hits, "hit_rate": score.hit_rate, "average_return": score.average_return,
            "brier": score.brier, "calibration": [CalibrationBinOut(**vars(b)) for b in score.calibration]}


# --- audit and administration -----------------------------------------------------------------------------
@dataclass(frozen=True)
class AuditFilter:
    actor: str | None = None  # substring, any case
    action: str | None = None  # substring, any case
    status: str | None = None  # exact
    since: datetime | None = None
    until: datetime | None = None

    def where(self) -> list[Any]:
        def part(value: str) -> str:
            return "%" + value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"

        c = audit_log.c
        return [cond for cond in (
            c.actor.ilike(part(self.actor), escape="\\") if self.actor else None,
            c.action.ilike(part(self.action), escape="\\") if self.action else None,
            c.status == self.status if self.status else None,
            c.ts >= self.since if self.since else None,
            c.ts < self.until if self.until else None,
        ) if cond is not None]


async def audit_page(conn: AsyncConnection, limit: int, offset: int,
                     narrowed: AuditFilter = AuditFilter()) -> Page[AuditOut]:
    q = select(audit_log).where(*narrowed.where()).order_by(audit_log.c.id.desc())
    return await _page(conn, q, AuditOut, limit, offset)


async def audit_rows(conn: AsyncConnection) -> AsyncIterator[dict[str, Any]]:
    """The whole trail, oldest first, streamed (it can be long)."""
    result = await conn.stream(select(audit_log).order_by(audit_log.c.id))
    async for row in result:
        yield {**row._mapping, "event_id": str(row.event_id)}


async def token_list(conn: AsyncConnection) -> list[TokenOut]:
    rows = (await conn.execute(select(api_tokens).order_by(api_tokens.c.created_at))).all()
    return [TokenOut.model_validate(x) for x in rows]


async def key_list(conn: AsyncConnection) -> list[ExchangeKeyOut]:
    rows = (await conn.execute(select(exchange_keys).order_by(exchange_keys.c.created_at))).all()
    return [ExchangeKeyOut.model_validate(x) for x in rows]


async def pin_record(conn: AsyncConnection) -> keyvault.PinRecord | None:
    row = (await conn.execute(select(master_pin).where(master_pin.c.scope == PIN_SCOPE))).first()
    return None if row is None else keyvault.PinRecord(row.salt, row.verifier, row.n, row.r, row.p)
