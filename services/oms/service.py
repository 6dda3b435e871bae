"""Order management: operating modes, proposals, the order lifecycle, protective OCO orders, flush and
reconciliation.

Orders are keyed by a client order id derived from the decision (or, for orders the OMS places itself, from
what caused them), so one cause can never become two orders across redelivery, restart or retry. Routing
starts *disconnected* on every cold start; until an operator authorizes it, intents are recorded and
rejected with ``ROUTING_DISCONNECTED``.

Venue answers and fills arrive on two streams with no order between them, so an order goes terminal only
when the venue has ended it *and* every fill it reported is booked (``OrderState.close``).
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from pydantic import Field
from pydantic_settings import SettingsConfigDict
from quorum.db.tables import fills, oms_state, order_events, orders, reconciliation_discrepancies, trade_proposals
from quorum.domain.orders import OrderState
from quorum.events.base import Envelope
from quorum.events.control import (
    ApproveProposal,
    AuthorizeRouting,
    CancelAllOrders,
    CloseAllPositions,
    ControlRefused,
    DisconnectRouting,
    OperatingModeChanged,
    OrdersCancelRequested,
    PositionsCloseRequested,
    ProposalApproved,
    ProposalExpired,
    ProposalRejected,
    RejectProposal,
    RoutingAuthorized,
    RoutingDisconnected,
    SetOperatingMode,
)
from quorum.events.fills import OrderFilled
from quorum.events.orders import (
    CancelOrder,
    OrderAccepted,
    OrderCanceled,
    OrderExpired,
    OrderIntentApproved,
    OrderRejected,
    OrderUpdated,
    SubmitOrder,
    TradeProposed,
)
from quorum.ids import client_order_id, derived_order_id, stable_uuid
from quorum.metrics import ORDERS_REFUSED, ROUTING_CONNECTED
from quorum.runtime.audit import active_profile, record_audit
from quorum.runtime.handling import Context, Handler
from quorum.runtime.service import Service
from quorum.runtime.settings import ServiceSettings
from quorum.types import Intent, OperatingMode, OrderStatus, OrderType, Side, TimeInForce, split_symbol
from quorum.venues.paper import PaperVenueView
from sqlalchemy import and_, func, select, update
from sqlalchemy.dialects.postgresql import insert

log = logging.getLogger("quorum.oms")
ROUTING_DISCONNECTED = "ROUTING_DISCONNECTED"
OPEN_STATUSES = tuple(s.value for s in (OrderStatus.SUBMITTED, OrderStatus.ACCEPTED, OrderStatus.PARTIALLY_FILLED))
SYSTEM = "SYSTEM:oms"
COLD_START_REASON = "cold start: routing stays disconnected until an operator authorizes it"


class OmsSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="QUORUM_OMS_", extra="ignore", frozen=True)

    http_port: int = 8106
    venue: str = "paper"
    operating_mode: OperatingMode = Field(default=OperatingMode.FULL_AUTO,
                                          description="initial mode; afterwards the stored one is kept")
    proposal_ttl_s: float = Field(default=300.0, gt=0, description="Semi-Auto proposals expire after this")
    expiry_check_s: float = Field(default=2.0, gt=0)
    flush_on_shutdown: bool = Field(default=True, description="cancel every open order on a graceful stop")
    state_file: Path = Field(default=Path(".quorum/oms/portfolio_state.json"),
                             description="snapshot written at shutdown and checked at the next start")


@dataclass(frozen=True)
class Order:
    """What the OMS asks a venue for (the row it stores and the command it sends)."""

    client_order_id: str
    exchange: str
    symbol: str
    side: Side
    quantity: Decimal
    purpose: str
    reference_ts: Any
    decision_id: Any = None
    order_type: OrderType = OrderType.MARKET
    time_in_force: TimeInForce = TimeInForce.GTC
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    stop_loss: Decimal | None = None
    take_profit: Decimal | None = None
    parent: str | None = None
    oco_group: str | None = None
    oco_size: int | None = None


class OmsService(Service):
    NAME = "oms"
    settings: OmsSettings

    def handlers(self) -> dict[str, Handler]:
        return {"oms-intents": self.on_intent, "oms-fills": self.on_fill, "oms-venue": self.on_venue,
                "oms-control": self.on_control}

    def tasks(self) -> list[Any]:
        return [self._expire_proposals]

    @property
    def mode(self) -> str:
        return self.settings.trading_mode.value

    # --- lifecycle ----------------------------------------------------------------------------------------
    async def on_start(self) -> None:
        """Cold start: hydrate from the database, check the last snapshot, reconcile with the venue, and
        disconnect routing until an operator authorizes it again."""

        async def cold_start(ctx: Context) -> None:
            await ctx.conn.execute(insert(oms_state).values(
                mode=self.mode, routing_connected=False, operating_mode=self.settings.operating_mode.value,
                updated_by=SYSTEM, updated_at=ctx.clock.now()).on_conflict_do_nothing())
            await self._set_routing(ctx, False, SYSTEM)
            start = f"cold-start:{ctx.clock.now().isoformat()}"
            ctx.emit(RoutingDisconnected(actor=SYSTEM, reason=COLD_START_REASON), key=start)  # an alert on the stream
            await self._audit(ctx, "routing_disconnect", {"reason": "cold start"}, start)
            state = await self._snapshot(ctx)
            await self._check_snapshot(ctx, state)
            await self._reconcile(ctx)
            log.info("hydrated: %d open orders, positions %s", len(state["open_orders"]), state["positions"])

        await self.transact(cold_start)
        log.warning("routing DISCONNECTED (cold start): every order is refused %s until an operator authorizes "
                    "routing (POST /controls/routing/authorize)", ROUTING_DISCONNECTED)

    async def on_stop(self) -> None:
        """Graceful shutdown: flush (cancel every open order), then write the portfolio snapshot."""

        async def flush(ctx: Context) -> dict[str, Any]:
            if self.settings.flush_on_shutdown:
                n = await self._cancel_open(ctx, None, "SHUTDOWN_FLUSH")
                log.info("order flush: cancel sent for %d open orders", n)
            return await self._snapshot(ctx)

        state = await self.transact(flush)
        path = self.settings.state_file
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2, sort_keys=True))
        tmp.replace(path)  # atomic: a crash never leaves half a snapshot

    async def _snapshot(self, ctx: Context) -> dict[str, Any]:
        open_rows = (await ctx.conn.execute(select(orders.c.client_order_id, orders.c.symbol, orders.c.status)
                                            .where(orders.c.mode == self.mode, orders.c.status.in_(OPEN_STATUSES))
                                            .order_by(orders.c.client_order_id))).all()
        return {"mode": self.mode, "written_at": ctx.clock.now().isoformat(),
                "positions": {k: str(v) for k, v in sorted((await self._positions(ctx)).items())},
                "open_orders": [{"client_order_id": r.client_order_id, "symbol": r.symbol, "status": r.status}
                                for r in open_rows]}

    async def _check_snapshot(self, ctx: Context, state: dict[str, Any]) -> None:
        path = self.settings.state_file
        if not path.exists():
            return
        try:
            saved = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            await self._discrepancy(ctx, "SNAPSHOT_UNREADABLE", None, {"path": str(path), "error": str(exc)})
            return
        if saved.get("mode") == self.mode and saved.get("positions") != state["positions"]:
            await self._discrepancy(ctx, "SNAPSHOT_POSITIONS_DIFFER", None,
                                    {"snapshot": saved.get("positions"), "database": state["positions"]})

    async def _reconcile(self, ctx: Context) -> None:
        """Compare every open order with the venue's own record; book what the venue says executed and
        record every difference. (Paper: the matching engine's records. Live: fetch_open_orders/my_trades.)"""
        if self.settings.venue != "paper":
            return  # the live adapter (quorum.venues.ccxt_venue) is not wired into this build's OMS
        venue = PaperVenueView(ctx.conn)
        open_rows = (await ctx.conn.execute(select(orders).where(
            orders.c.mode == self.mode, orders.c.venue == "paper", orders.c.status.in_(OPEN_STATUSES)))).all()
        for row in open_rows:
            status, executions = await venue.order(row.client_order_id)
            booked = await self._book_fills(ctx, executions)
            if booked:
                await self._discrepancy(ctx, "FILLS_BOOKED_AT_RECONCILE", row.client_order_id,
                                        {"fills": [f.fill_id for f in booked]})
            if status is None:
                await self._discrepancy(ctx, "UNKNOWN_AT_VENUE", row.client_order_id, {"oms_status": row.status})
            elif status != row.status and OrderStatus(status).is_terminal:
                await self._discrepancy(ctx, "VENUE_ENDED_ORDER", row.client_order_id,
                                        {"oms_status": row.status, "venue_status": status})

    async def _book_fills(self, ctx: Context, executions: list[OrderFilled]) -> list[OrderFilled]:
        return [f for f in executions if await self._apply_fill(ctx, f, event_id=None)]

    async def _discrepancy(self, ctx: Context, kind: str, coid: str | None, detail: dict[str, Any]) -> None:
        log.warning("reconciliation: %s %s %s", kind, coid or "", detail)
        await ctx.conn.execute(insert(reconciliation_discrepancies).values(
            ts=ctx.clock.now(), venue=self.settings.venue, kind=kind, client_order_id=coid, detail=detail))

    # --- state -------------------------------------------------------------------------------------------
    async def _set_routing(self, ctx: Context, connected: bool, actor: str) -> None:
        await ctx.conn.execute(update(oms_state).where(oms_state.c.mode == self.mode).values(
            routing_connected=connected, updated_by=actor, updated_at=ctx.clock.now()))
        ctx.after_commit.append(lambda: ROUTING_CONNECTED.labels(self.mode).set(int(connected)))

    async def _state_row(self, ctx: Context) -> Any:
        return (await ctx.conn.execute(select(oms_state).where(oms_state.c.mode == self.mode))).one()

    async def _positions(self, ctx: Context) -> dict[str, Decimal]:
        """Net holdings per symbol from the booked fills (a base-currency fee reduces what was received)."""
        rows = (await ctx.conn.execute(select(fills).where(fills.c.mode == self.mode))).all()
        out: dict[str, Decimal] = {}
        for f in rows:
            base, _ = split_symbol(f.symbol)
            delta = f.quantity if f.side == Side.BUY.value else -f.quantity
            if f.fee_currency == base:
                delta -= f.fee
            out[f.symbol] = out.get(f.symbol, Decimal(0)) + delta
        return {k: v for k, v in out.items() if v != 0}

    async def _load(self, ctx: Context, coid: str) -> Any:
        q = select(orders).where(orders.c.client_order_id == coid).with_for_update()
        return (await ctx.conn.execute(q)).first()

    @staticmethod
    def _state(order: Any) -> OrderState:
        return OrderState(quantity=order.quantity, status=OrderStatus(order.status),
                          filled_quantity=order.filled_quantity, quote_spent=order.quote_spent, fees=order.fees)

    async def _record_transition(self, ctx: Context, order: Any, state: OrderState, reason: str | None = None,
                                 fee_currency: str | None = None) -> None:
        """Persist a state the domain already validated, append it to the order's history, publish it."""
        target = state.status
        now = ctx.clock.now()
        await ctx.conn.execute(update(orders).where(orders.c.client_order_id == order.client_order_id).values(
            status=target.value, filled_quantity=state.filled_quantity, average_price=state.average_price,
            fees=state.fees, fee_currency=fee_currency or order.fee_currency, quote_spent=state.quote_spent,
            reason_code=reason or order.reason_code, updated_at=now,
        ))
        update_env = ctx.emit(OrderUpdated(
            client_order_id=order.client_order_id, decision_id=order.decision_id,
            mode=order.mode, exchange=order.exchange, symbol=order.symbol, side=order.side,
            order_type=order.order_type, purpose=order.purpose, quantity=order.quantity, status=target,
            previous_status=OrderStatus(order.status), filled_quantity=state.filled_quantity,
            average_price=state.average_price, fees=state.fees, fee_currency=fee_currency or order.fee_currency,
            quote_spent=state.quote_spent, reason_code=reason,
        ), key=f"{order.client_order_id}:{target.value}:{state.filled_quantity}")
        await ctx.conn.execute(insert(order_events).values(
            client_order_id=order.client_order_id, event_id=update_env.event_id, from_status=order.status,
            to_status=target.value, reason_code=reason, ts=now,
        ).on_conflict_do_nothing())

    # --- placing orders ----------------------------------------------------------------------------------
    async def _place(self, ctx: Context, o: Order) -> str | None:
        """Store the order and send it, or reject it when routing is disconnected. None: it existed."""
        inserted = (await ctx.conn.execute(insert(orders).values(
            client_order_id=o.client_order_id, decision_id=o.decision_id, mode=self.mode, venue=self.settings.venue,
            exchange=o.exchange, symbol=o.symbol, side=o.side.value, order_type=o.order_type.value,
            time_in_force=o.time_in_force.value, purpose=o.purpose, quantity=o.quantity, limit_price=o.limit_price,
            stop_price=o.stop_price, stop_loss=o.stop_loss, take_profit=o.take_profit,
            parent_client_order_id=o.parent, oco_group=o.oco_group, status=OrderStatus.PENDING.value,
            filled_quantity=Decimal(0), fees=Decimal(0), quote_spent=Decimal(0), reference_ts=o.reference_ts,
            updated_at=ctx.clock.now(),
        ).on_conflict_do_nothing().returning(orders.c.client_order_id))).first()
        if inserted is None:
            log.info("order %s exists already; nothing to do", o.client_order_id)
            return None
        order = await self._load(ctx, o.client_order_id)
        if not (await self._state_row(ctx)).routing_connected:
            await self._record_transition(ctx, order, self._state(order).to(OrderStatus.REJECTED),
                                          ROUTING_DISCONNECTED)
            log.warning("order %s refused: routing is disconnected", o.client_order_id)
            ctx.after_commit.append(ORDERS_REFUSED.labels(self.mode, ROUTING_DISCONNECTED).inc)
            return o.client_order_id
        ctx.emit(SubmitOrder(
            venue=self.settings.venue, mode=self.settings.trading_mode, client_order_id=o.client_order_id,
            exchange=o.exchange, symbol=o.symbol, side=o.side, order_type=o.order_type,
            time_in_force=o.time_in_force, quantity=o.quantity, limit_price=o.limit_price, stop_price=o.stop_price,
            oco_group=o.oco_group, oco_size=o.oco_size, reference_ts=o.reference_ts,
        ), key=o.client_order_id)
        await self._record_transition(ctx, order, self._state(order).to(OrderStatus.SUBMITTED))
        return o.client_order_id

    async def _place_intent(self, ctx: Context, intent: OrderIntentApproved) -> str | None:
        if intent.side is Side.SELL:  # an exit: protective orders would sell the same coins twice
            await self._cancel_open(ctx, intent.symbol, "EXIT_REPLACES_PROTECTION", purposes=PROTECTIVE)
        return await self._place(ctx, Order(
            client_order_id=client_order_id(intent.decision_id), decision_id=intent.decision_id,
            exchange=intent.exchange, symbol=intent.symbol, side=intent.side, quantity=intent.quantity,
            purpose=_purpose(intent), reference_ts=intent.reference_ts,
            order_type=intent.order_type, stop_loss=intent.stop_loss, take_profit=intent.take_profit,
        ))

    async def _protect(self, ctx: Context, entry: Any) -> None:
        """Attach the entry's stop-loss and take-profit as one OCO group over what it filled."""
        if entry.side != Side.BUY.value or entry.filled_quantity <= 0:
            return
        await self._attach(ctx, entry, entry.filled_quantity, entry.stop_loss, entry.take_profit)

    async def _reprotect(self, ctx: Context, reduced: Any) -> None:
        """A partial exit (take-profit, de-risk) cancelled the protection first: what is still held gets the
        latest entry's stop-loss and take-profit again, as one new OCO group, so it is never left bare."""
        if reduced.purpose != REDUCE or reduced.filled_quantity <= 0:
            return
        held = (await self._positions(ctx)).get(reduced.symbol, Decimal(0))
        entry = (await ctx.conn.execute(select(orders).where(
            orders.c.mode == self.mode, orders.c.symbol == reduced.symbol, orders.c.side == Side.BUY.value,
            orders.c.purpose.in_(("ENTRY", "REENTRY")), orders.c.filled_quantity > 0,
            (orders.c.stop_loss.is_not(None)) | (orders.c.take_profit.is_not(None)),
        ).order_by(orders.c.reference_ts.desc(), orders.c.client_order_id.desc()).limit(1))).first()
        if held > 0 and entry is not None:
            await self._attach(ctx, reduced, held, entry.stop_loss, entry.take_profit)

    async def _attach(self, ctx: Context, cause: Any, quantity: Decimal, stop: Decimal | None,
                      target: Decimal | None) -> None:
        """Stop-loss and take-profit over ``quantity``, ids derived from the order that caused them."""
        legs = []
        if stop:
            legs.append(("SL", dict(order_type=OrderType.STOP, stop_price=stop), "STOP_LOSS"))
        if target:
            legs.append(("TP", dict(order_type=OrderType.LIMIT, limit_price=target), "TAKE_PROFIT"))
        for kind, prices, purpose in legs:
            await self._place(ctx, Order(
                client_order_id=derived_order_id(kind, cause.client_order_id), exchange=cause.exchange,
                symbol=cause.symbol, side=Side.SELL, quantity=quantity, purpose=purpose,
                reference_ts=cause.reference_ts, parent=cause.client_order_id,
                oco_group=cause.client_order_id if len(legs) > 1 else None,
                oco_size=len(legs) if len(legs) > 1 else None, **prices))

    async def _cancel_open(self, ctx: Context, symbol: str | None, reason: str,
                           purposes: tuple[str, ...] | None = None) -> int:
        q = select(orders.c.client_order_id, orders.c.symbol).where(
            orders.c.mode == self.mode, orders.c.status.in_(OPEN_STATUSES))
        if symbol:
            q = q.where(orders.c.symbol == symbol)
        if purposes:
            q = q.where(orders.c.purpose.in_(purposes))
        rows = (await ctx.conn.execute(q.order_by(orders.c.client_order_id))).all()
        for r in rows:
            ctx.emit(CancelOrder(venue=self.settings.venue, client_order_id=r.client_order_id, symbol=r.symbol,
                                 reason=reason), key=f"cancel:{r.client_order_id}:{reason}")
        return len(rows)

    # --- handlers ----------------------------------------------------------------------------------------
    async def on_intent(self, ctx: Context) -> None:
        intent: OrderIntentApproved = ctx.message.payload
        mode = OperatingMode((await self._state_row(ctx)).operating_mode)
        if mode is OperatingMode.FULL_AUTO:
            await self._place_intent(ctx, intent)
            return
        pending = mode is OperatingMode.SEMI_AUTO
        expires = ctx.clock.now() + timedelta(seconds=self.settings.proposal_ttl_s)
        stored = (await ctx.conn.execute(insert(trade_proposals).values(
            decision_id=intent.decision_id, exchange=intent.exchange, symbol=intent.symbol, side=intent.side.value,
            quantity=intent.quantity, reference_price=intent.reference_price,
            status="PENDING" if pending else "OBSERVED", intent=ctx.message.model_dump(mode="json"),
            expires_at=expires if pending else None,
        ).on_conflict_do_nothing().returning(trade_proposals.c.decision_id))).first()
        if stored is not None and pending:
            ctx.emit(TradeProposed(decision_id=intent.decision_id, exchange=intent.exchange, symbol=intent.symbol,
                                   side=intent.side, quantity=intent.quantity,
                                   reference_price=intent.reference_price, stop_loss=intent.stop_loss,
                                   take_profit=intent.take_profit, expires_at=expires))

    async def _apply_fill(self, ctx: Context, f: OrderFilled, event_id: Any) -> bool:
        """Book one execution once (by fill id); returns False when it was booked already."""
        order = await self._load(ctx, f.client_order_id)
        if order is None:
            raise LookupError(f"fill {f.fill_id} for unknown order {f.client_order_id}")
        new = (await ctx.conn.execute(insert(fills).values(
            fill_id=f.fill_id, client_order_id=f.client_order_id, mode=f.mode.value, venue=f.venue,
            exchange=f.exchange, symbol=f.symbol, side=f.side.value, quantity=f.quantity, price=f.price, fee=f.fee,
            fee_currency=f.fee_currency, liquidity=f.liquidity.value, ts=f.ts,
            event_id=event_id or _fill_event_id(f),
        ).on_conflict_do_nothing().returning(fills.c.fill_id))).first()
        if new is None:
            return False
        state = self._state(order)
        if state.status.is_terminal:  # a late execution of an order the venue already ended
            state = OrderState(state.quantity, state.status, state.filled_quantity + f.quantity,
                               state.quote_spent + f.quantity * f.price, state.fees + f.fee)
        else:
            state = state.apply_fill(f.quantity, f.price, f.fee)
        await self._record_transition(ctx, order, state, fee_currency=f.fee_currency)
        order = await self._load(ctx, f.client_order_id)
        await self._maybe_close(ctx, order)
        if OrderStatus(order.status) is OrderStatus.FILLED:
            await self._protect(ctx, order)
            await self._reprotect(ctx, order)
        return True

    async def _maybe_close(self, ctx: Context, order: Any) -> None:
        if order.venue_final_status is None:
            return
        closed = self._state(order).close(OrderStatus(order.venue_final_status), order.venue_final_filled)
        if closed is not None and closed.status != OrderStatus(order.status):
            await self._record_transition(ctx, order, closed, order.reason_code)
            if order.purpose in ("ENTRY", "REENTRY"):
                await self._protect(ctx, await self._load(ctx, order.client_order_id))
            elif order.purpose == REDUCE:
                await self._reprotect(ctx, await self._load(ctx, order.client_order_id))

    async def on_fill(self, ctx: Context) -> None:
        await self._apply_fill(ctx, ctx.message.payload, ctx.message.event_id)

    async def on_venue(self, ctx: Context) -> None:
        ev = ctx.message.payload
        order = await self._load(ctx, ev.client_order_id)
        if order is None:
            raise LookupError(f"{type(ev).__name__} for unknown order {ev.client_order_id}")
        state = self._state(order)
        if isinstance(ev, OrderAccepted):
            accepted = state.accept()
            if accepted is not state:
                await self._record_transition(ctx, order, accepted)
            return
        final, filled = {
            OrderCanceled: (OrderStatus.CANCELED, getattr(ev, "filled_quantity", 0)),
            OrderExpired: (OrderStatus.EXPIRED, getattr(ev, "filled_quantity", 0)),
            OrderRejected: (OrderStatus.REJECTED, Decimal(0)),
        }[type(ev)]
        await ctx.conn.execute(update(orders).where(orders.c.client_order_id == order.client_order_id).values(
            venue_final_status=final.value, venue_final_filled=filled, reason_code=ev.reason_code))
        await self._maybe_close(ctx, await self._load(ctx, order.client_order_id))

    async def on_control(self, ctx: Context) -> None:
        cmd = ctx.message.payload
        handler = {
            AuthorizeRouting: self._routing, DisconnectRouting: self._routing, SetOperatingMode: self._set_mode,
            ApproveProposal: self._approve, RejectProposal: self._reject, CancelAllOrders: self._cancel_all,
            CloseAllPositions: self._close_all,
        }[type(cmd)]
        await handler(ctx, cmd)

    async def _routing(self, ctx: Context, cmd: Any) -> None:
        connect = isinstance(cmd, AuthorizeRouting)
        await self._set_routing(ctx, connect, cmd.actor)
        ctx.emit((RoutingAuthorized if connect else RoutingDisconnected)(actor=cmd.actor, reason=cmd.reason))

    async def _set_mode(self, ctx: Context, cmd: SetOperatingMode) -> None:
        previous = OperatingMode((await self._state_row(ctx)).operating_mode)
        await ctx.conn.execute(update(oms_state).where(oms_state.c.mode == self.mode).values(
            operating_mode=cmd.mode.value, updated_by=cmd.actor, updated_at=ctx.clock.now()))
        ctx.emit(OperatingModeChanged(actor=cmd.actor, reason=cmd.reason, mode=cmd.mode, previous=previous))

    async def _proposal(self, ctx: Context, cmd: Any) -> Any:
        row = (await ctx.conn.execute(select(trade_proposals).where(
            trade_proposals.c.decision_id == cmd.decision_id).with_for_update())).first()
        if row is None or row.status != "PENDING":
            why = "UNKNOWN_PROPOSAL" if row is None else f"PROPOSAL_{row.status}"
            ctx.emit(ControlRefused(command_type=cmd.event_type(), reason_code=why,
                                    detail=f"proposal {cmd.decision_id} is not pending"))
            return None
        if row.expires_at <= ctx.clock.now():
            await self._expire(ctx, row)
            ctx.emit(ControlRefused(command_type=cmd.event_type(), reason_code="PROPOSAL_EXPIRED",
                                    detail=f"proposal {cmd.decision_id} expired at {row.expires_at.isoformat()}"))
            return None
        return row

    async def _decide(self, ctx: Context, row: Any, status: str, actor: str) -> None:
        await ctx.conn.execute(update(trade_proposals).where(trade_proposals.c.decision_id == row.decision_id)
                               .values(status=status, decided_by=actor, decided_at=ctx.clock.now()))

    async def _approve(self, ctx: Context, cmd: ApproveProposal) -> None:
        row = await self._proposal(ctx, cmd)
        if row is None:
            return
        await self._decide(ctx, row, "APPROVED", cmd.actor)
        intent = Envelope[OrderIntentApproved].model_validate(row.intent).payload
        await self._place_intent(ctx, intent)
        ctx.emit(ProposalApproved(actor=cmd.actor, reason=cmd.reason, decision_id=row.decision_id,
                                  client_order_id=client_order_id(row.decision_id)))

    async def _reject(self, ctx: Context, cmd: RejectProposal) -> None:
        row = await self._proposal(ctx, cmd)
        if row is None:
            return
        await self._decide(ctx, row, "REJECTED", cmd.actor)
        ctx.emit(ProposalRejected(actor=cmd.actor, reason=cmd.reason, decision_id=row.decision_id))

    async def _expire(self, ctx: Context, row: Any) -> None:
        await self._decide(ctx, row, "EXPIRED", SYSTEM)
        ctx.emit(ProposalExpired(actor=SYSTEM, reason="not approved within the proposal TTL",
                                 decision_id=row.decision_id), key=f"expired:{row.decision_id}")
        await self._audit(ctx, "proposal_expire", {"decision_id": str(row.decision_id), "symbol": row.symbol},
                          f"expired:{row.decision_id}")

    async def _audit(self, ctx: Context, action: str, details: dict[str, Any], key: str) -> None:
        await record_audit(ctx, actor=SYSTEM, action=action, mode=self.mode, status="CONFIRMED", details=details,
                           risk_profile=await active_profile(ctx.conn, self.settings.risk_profile.value), key=key,
                           chain_key=self.settings.chain_key)

    async def _expire_proposals(self) -> None:
        """Proposals nobody approved in time never become orders."""
        while not self.stopping.is_set():
            async def sweep(ctx: Context) -> None:
                due = (await ctx.conn.execute(select(trade_proposals).where(
                    trade_proposals.c.status == "PENDING", trade_proposals.c.expires_at <= ctx.clock.now())
                    .with_for_update(skip_locked=True))).all()
                for row in due:
                    await self._expire(ctx, row)

            try:
                await self.transact(sweep)
            except Exception:  # noqa: BLE001 - a database blip must not kill the sweeper
                log.exception("proposal expiry sweep failed; retrying")
            try:
                await asyncio.wait_for(self.stopping.wait(), timeout=self.settings.expiry_check_s)
            except TimeoutError:
                pass

    async def _cancel_all(self, ctx: Context, cmd: CancelAllOrders) -> None:
        n = await self._cancel_open(ctx, cmd.symbol, "CANCEL_ALL")
        ctx.emit(OrdersCancelRequested(actor=cmd.actor, reason=cmd.reason, orders=n))

    async def _close_all(self, ctx: Context, cmd: CloseAllPositions) -> None:
        """Cancel everything, then market-sell every holding (liquidation bypasses risk: it only reduces)."""
        await self._cancel_open(ctx, None, "CLOSE_ALL")
        last_ts = (await ctx.conn.execute(select(func.max(orders.c.reference_ts)))).scalar_one() or ctx.clock.now()
        exchanges = dict((await ctx.conn.execute(select(orders.c.symbol, orders.c.exchange).where(and_(
            orders.c.mode == self.mode)).distinct())).all())
        sent = 0
        for symbol, qty in sorted((await self._positions(ctx)).items()):
            if qty <= 0:
                continue
            placed = await self._place(ctx, Order(
                client_order_id=derived_order_id("LIQ", ctx.message.event_id, symbol),
                exchange=exchanges.get(symbol, "binance"), symbol=symbol, side=Side.SELL, quantity=qty,
                purpose="LIQUIDATION", reference_ts=last_ts, time_in_force=TimeInForce.IOC))
            sent += placed is not None
        ctx.emit(PositionsCloseRequested(actor=cmd.actor, reason=cmd.reason, orders=sent))


PROTECTIVE = ("STOP_LOSS", "TAKE_PROFIT")
REDUCE = "REDUCE"  # a sell that leaves a position (the council's take-profit or de-risk): protected again after


def _purpose(intent: OrderIntentApproved) -> str:
    if intent.side is Side.BUY:
        return intent.intent.value
    return REDUCE if intent.intent in (Intent.TAKE_PROFIT, Intent.DERISK) else "EXIT"


def _fill_event_id(f: OrderFilled) -> Any:
    return stable_uuid("reconciled-fill", f.fill_id)
