"""The OMS's decisions, pure: operating modes and proposals, placing orders, the order lifecycle over venue
answers and fills, protective OCO orders, cancel-all, liquidation, cold start, the shutdown flush and the
proposal expiry sweep.

Orders are keyed by a client order id derived from the decision (or, for orders the OMS places itself, from
what caused them), so one cause can never become two orders across redelivery, restart or retry. Routing
starts *disconnected* on every cold start; until an operator authorizes it, orders are recorded and rejected
with ``ROUTING_DISCONNECTED``.

Venue answers and fills arrive on two streams with no order between them, so an order goes terminal only
when the venue has ended it *and* every fill it reported is booked (``OrderState.close``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

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
from quorum.oms.book import (
    ENTRIES,
    PROTECTIVE,
    REDUCE,
    SYSTEM,
    OmsBook,
    OrderRecord,
    Proposal,
    ProposalStatus,
)
from quorum.outcome import Audit, Emit, Outcome, unchanged
from quorum.types import Intent, OperatingMode, OrderStatus, OrderType, Side, TimeInForce, TradingMode

log = logging.getLogger("quorum.oms")
ROUTING_DISCONNECTED = "ROUTING_DISCONNECTED"
COLD_START_REASON = "cold start: routing stays disconnected until an operator authorizes it"
ZERO = Decimal(0)


@dataclass(frozen=True)
class OmsParams:
    """``risk_profile``: the profile audit records carry (the service records the one in force instead)."""

    mode: TradingMode = TradingMode.PAPER
    venue: str = "paper"
    proposal_ttl: timedelta = timedelta(seconds=300)
    risk_profile: str = "MEDIUM"


# --- records: rows kept beside the state --------------------------------------------------------------------

@dataclass(frozen=True)
class OrderEvent:
    """A row of an order's history; its event id is the id of the ``OrderUpdated`` that ``emit`` became."""

    client_order_id: str
    emit: Emit
    from_status: OrderStatus
    to_status: OrderStatus
    reason_code: str | None
    ts: datetime

    @property
    def is_refusal(self) -> bool:
        """The OMS itself refused the order (it never reached a venue)."""
        return self.from_status is OrderStatus.PENDING and self.to_status is OrderStatus.REJECTED


@dataclass(frozen=True)
class StoredFill:
    fill: OrderFilled
    event_id: UUID  # the OrderFilled's envelope, or a stable id for a fill found at reconciliation


@dataclass(frozen=True)
class Discrepancy:
    """A difference between the OMS and the venue (or the last snapshot), for the operator."""

    kind: str
    client_order_id: str | None
    detail: dict[str, Any]


# --- building blocks -------------------------------------------------------------------------------------------

def _transition(book: OmsBook, order: OrderRecord, state: OrderState, now: datetime, reason: str | None = None,
                fee_currency: str | None = None) -> Outcome[OmsBook]:
    """A state the domain already validated: kept, appended to the order's history and published."""
    fee_currency = fee_currency or order.fee_currency
    target = state.status
    emit = Emit(OrderUpdated(
        client_order_id=order.client_order_id, decision_id=order.decision_id, mode=TradingMode(order.mode),
        exchange=order.exchange, symbol=order.symbol, side=order.side, order_type=order.order_type,
        purpose=order.purpose, quantity=order.quantity, status=target, previous_status=order.status,
        filled_quantity=state.filled_quantity, average_price=state.average_price, fees=state.fees,
        fee_currency=fee_currency, quote_spent=state.quote_spent, reason_code=reason,
    ), key=f"{order.client_order_id}:{target.value}:{state.filled_quantity}")
    moved = order.moved(state, reason or order.reason_code, fee_currency, now)
    history = OrderEvent(order.client_order_id, emit, order.status, target, reason, now)
    return Outcome(book.with_order(moved), (emit,), (history,))


def _place(book: OmsBook, order: OrderRecord, now: datetime, oco_size: int | None = None) -> Outcome[OmsBook]:
    """Keep the order and send it, or reject it when routing is disconnected. Nothing when it exists."""
    if order.client_order_id in book.orders:
        log.info("order %s exists already; nothing to do", order.client_order_id)
        return unchanged(book)
    book = book.with_placed(order)
    if not book.routing_connected:
        return _transition(book, order, order.state.to(OrderStatus.REJECTED), now, ROUTING_DISCONNECTED)
    submit = Emit(SubmitOrder(
        venue=order.venue, mode=TradingMode(order.mode), client_order_id=order.client_order_id,
        exchange=order.exchange, symbol=order.symbol, side=order.side, order_type=order.order_type,
        time_in_force=order.time_in_force, quantity=order.quantity, limit_price=order.limit_price,
        stop_price=order.stop_price, oco_group=order.oco_group, oco_size=oco_size, reference_ts=order.reference_ts,
    ), key=order.client_order_id)
    return Outcome(book, (submit,)).then(_transition(book, order, order.state.to(OrderStatus.SUBMITTED), now))


def _new_order(params: OmsParams, now: datetime, **fields: Any) -> OrderRecord:
    return OrderRecord(mode=params.mode.value, venue=params.venue, updated_at=now, **fields)


def _cancel_open(book: OmsBook, params: OmsParams, symbol: str | None, reason: str,
                 purposes: tuple[str, ...] | None = None) -> Outcome[OmsBook]:
    """A cancel for every open order (of ``symbol``, of ``purposes``); the venue's answers end them."""
    return Outcome(book, tuple(
        Emit(CancelOrder(venue=params.venue, client_order_id=o.client_order_id, symbol=o.symbol, reason=reason),
             key=f"cancel:{o.client_order_id}:{reason}")
        for o in book.open_orders(symbol, purposes)))


def _purpose(intent: OrderIntentApproved) -> str:
    if intent.side is Side.BUY:
        return intent.intent.value
    return REDUCE if intent.intent in (Intent.TAKE_PROFIT, Intent.DERISK) else "EXIT"


def _place_intent(book: OmsBook, intent: OrderIntentApproved, params: OmsParams, now: datetime) -> Outcome[OmsBook]:
    out = unchanged(book)
    if intent.side is Side.SELL:  # an exit: protective orders would sell the same coins twice
        out = _cancel_open(book, params, intent.symbol, "EXIT_REPLACES_PROTECTION", purposes=PROTECTIVE)
    return out.then(_place(out.state, _new_order(
        params, now, client_order_id=client_order_id(intent.decision_id), decision_id=intent.decision_id,
        exchange=intent.exchange, symbol=intent.symbol, side=intent.side, quantity=intent.quantity,
        purpose=_purpose(intent), reference_ts=intent.reference_ts, order_type=intent.order_type,
        stop_loss=intent.stop_loss, take_profit=intent.take_profit), now))


def _attach(book: OmsBook, cause: OrderRecord, quantity: Decimal, stop: Decimal | None, target: Decimal | None,
            params: OmsParams, now: datetime) -> Outcome[OmsBook]:
    """Stop-loss and take-profit over ``quantity`` as one OCO group, ids derived from the order that caused
    them."""
    legs: list[tuple[str, dict[str, Any], str]] = []
    if stop:
        legs.append(("SL", dict(order_type=OrderType.STOP, stop_price=stop), "STOP_LOSS"))
    if target:
        legs.append(("TP", dict(order_type=OrderType.LIMIT, limit_price=target), "TAKE_PROFIT"))
    grouped = len(legs) > 1
    out = unchanged(book)
    for kind, prices, purpose in legs:
        out = out.then(_place(out.state, _new_order(
            params, now, client_order_id=derived_order_id(kind, cause.client_order_id), exchange=cause.exchange,
            symbol=cause.symbol, side=Side.SELL, quantity=quantity, purpose=purpose,
            reference_ts=cause.reference_ts, parent_client_order_id=cause.client_order_id,
            oco_group=cause.client_order_id if grouped else None, **prices), now,
            oco_size=len(legs) if grouped else None))
    return out


def _protect(book: OmsBook, entry: OrderRecord, params: OmsParams, now: datetime) -> Outcome[OmsBook]:
    """Attach the entry's stop-loss and take-profit as one OCO group over what it filled."""
    if entry.side is not Side.BUY or entry.filled_quantity <= 0:
        return unchanged(book)
    return _attach(book, entry, entry.filled_quantity, entry.stop_loss, entry.take_profit, params, now)


def _reprotect(book: OmsBook, reduced: OrderRecord, params: OmsParams, now: datetime) -> Outcome[OmsBook]:
    """A partial exit (take-profit, de-risk) cancelled the protection first: what is still held gets the
    latest entry's stop-loss and take-profit again, as one new OCO group, so it is never left bare."""
    if reduced.purpose != REDUCE or reduced.filled_quantity <= 0:
        return unchanged(book)
    held = book.held(reduced.symbol)
    entry = book.protected_entries.get(reduced.symbol)
    if held <= 0 or entry is None:
        return unchanged(book)
    return _attach(book, reduced, held, entry.stop_loss, entry.take_profit, params, now)


def _maybe_close(book: OmsBook, order: OrderRecord, params: OmsParams, now: datetime) -> Outcome[OmsBook]:
    """The venue ended the order: take its terminal state once every fill it reported is booked."""
    if order.venue_final_status is None:
        return unchanged(book)
    closed = order.state.close(order.venue_final_status, order.venue_final_filled or ZERO)
    if closed is None or closed.status == order.status:
        return unchanged(book)
    out = _transition(book, order, closed, now, order.reason_code)
    order = out.state.orders[order.client_order_id]
    if order.purpose in ENTRIES:
        return out.then(_protect(out.state, order, params, now))
    if order.purpose == REDUCE:
        return out.then(_reprotect(out.state, order, params, now))
    return out


# --- messages -------------------------------------------------------------------------------------------------

def on_intent(book: OmsBook, message: Envelope[Any], params: OmsParams, now: datetime) -> Outcome[OmsBook]:
    """Full-Auto places the intent; Semi-Auto proposes it until the TTL; Observe records it."""
    intent: OrderIntentApproved = message.payload
    if book.operating_mode is OperatingMode.FULL_AUTO:
        return _place_intent(book, intent, params, now)
    if intent.decision_id in book.proposals:
        return unchanged(book)
    pending = book.operating_mode is OperatingMode.SEMI_AUTO
    expires = now + params.proposal_ttl
    book = book.with_proposal(Proposal(envelope=message, expires_at=expires if pending else None,
                                       status=ProposalStatus.PENDING if pending else ProposalStatus.OBSERVED))
    if not pending:
        return unchanged(book)
    return Outcome(book, (Emit(TradeProposed(
        decision_id=intent.decision_id, exchange=intent.exchange, symbol=intent.symbol, side=intent.side,
        quantity=intent.quantity, reference_price=intent.reference_price, stop_loss=intent.stop_loss,
        take_profit=intent.take_profit, expires_at=expires)),))


def on_fill(book: OmsBook, fill: OrderFilled, params: OmsParams, now: datetime, event_id: UUID) -> Outcome[OmsBook]:
    """Book one execution once (by fill id); a filled entry gets its protection, a filled partial exit
    protects what is still held."""
    order = book.orders.get(fill.client_order_id)
    if order is None:
        raise LookupError(f"fill {fill.fill_id} for unknown order {fill.client_order_id}")
    if fill.fill_id in book.fill_ids:
        return unchanged(book)
    state = order.state
    if state.status.is_terminal:  # a late execution of an order the venue already ended
        state = OrderState(state.quantity, state.status, state.filled_quantity + fill.quantity,
                           state.quote_spent + fill.quantity * fill.price, state.fees + fill.fee)
    else:
        state = state.apply_fill(fill.quantity, fill.price, fill.fee)
    booked = book.with_fill(fill)
    out = Outcome(booked, (), (StoredFill(fill, event_id),)).then(
        _transition(booked, order, state, now, fee_currency=fill.fee_currency))
    order = out.state.orders[fill.client_order_id]
    out = out.then(_maybe_close(out.state, order, params, now))
    if order.status is OrderStatus.FILLED:
        out = out.then(_protect(out.state, order, params, now))
        out = out.then(_reprotect(out.state, order, params, now))
    return out


def reconciled_fill_id(fill: OrderFilled) -> UUID:
    """The event id kept for a fill the OMS learnt of from the venue's records rather than from its stream."""
    return stable_uuid("reconciled-fill", fill.fill_id)


VENUE_ENDINGS: Mapping[type, OrderStatus] = {
    OrderCanceled: OrderStatus.CANCELED, OrderExpired: OrderStatus.EXPIRED, OrderRejected: OrderStatus.REJECTED}


def on_venue(book: OmsBook, answer: Any, params: OmsParams, now: datetime) -> Outcome[OmsBook]:
    """The venue accepted or ended an order; an ended one goes terminal once its fills are booked."""
    order = book.orders.get(answer.client_order_id)
    if order is None:
        raise LookupError(f"{type(answer).__name__} for unknown order {answer.client_order_id}")
    if isinstance(answer, OrderAccepted):
        state = order.state
        accepted = state.accept()
        return unchanged(book) if accepted is state else _transition(book, order, accepted, now)
    filled = Decimal(0) if isinstance(answer, OrderRejected) else Decimal(answer.filled_quantity)
    ended = replace(order, venue_final_status=VENUE_ENDINGS[type(answer)], venue_final_filled=filled,
                    reason_code=answer.reason_code)
    book = book.with_order(ended)
    return _maybe_close(book, ended, params, now)


def on_routing(book: OmsBook, cmd: AuthorizeRouting | DisconnectRouting, now: datetime) -> Outcome[OmsBook]:
    connect = isinstance(cmd, AuthorizeRouting)
    book = replace(book, routing_connected=connect, updated_by=cmd.actor, updated_at=now)
    confirmation = (RoutingAuthorized if connect else RoutingDisconnected)(actor=cmd.actor, reason=cmd.reason)
    return Outcome(book, (Emit(confirmation),))


def on_set_mode(book: OmsBook, cmd: SetOperatingMode, now: datetime) -> Outcome[OmsBook]:
    previous = book.operating_mode
    book = replace(book, operating_mode=cmd.mode, updated_by=cmd.actor, updated_at=now)
    return Outcome(book, (Emit(OperatingModeChanged(actor=cmd.actor, reason=cmd.reason, mode=cmd.mode,
                                                    previous=previous)),))


def _refused(cmd: Any, reason_code: str, detail: str) -> Emit:
    return Emit(ControlRefused(command_type=cmd.event_type(), reason_code=reason_code, detail=detail))


def _pending(book: OmsBook, cmd: ApproveProposal | RejectProposal, params: OmsParams,
             now: datetime) -> tuple[Proposal | None, Outcome[OmsBook]]:
    """The proposal a command decides, if it is still pending; otherwise the refusal (and, for one past its
    TTL that the sweep has not reached yet, its expiry)."""
    proposal = book.proposals.get(cmd.decision_id)
    if proposal is None or proposal.status is not ProposalStatus.PENDING:
        why = "UNKNOWN_PROPOSAL" if proposal is None else f"PROPOSAL_{proposal.status.value}"
        return None, Outcome(book, (_refused(cmd, why, f"proposal {cmd.decision_id} is not pending"),))
    if proposal.is_due(now):
        assert proposal.expires_at is not None
        refusal = _refused(cmd, "PROPOSAL_EXPIRED",
                           f"proposal {cmd.decision_id} expired at {proposal.expires_at.isoformat()}")
        expired = expire(book, proposal, params, now)
        return None, expired.then(Outcome(expired.state, (refusal,)))
    return proposal, unchanged(book)


def on_approve(book: OmsBook, cmd: ApproveProposal, params: OmsParams, now: datetime) -> Outcome[OmsBook]:
    proposal, refused = _pending(book, cmd, params, now)
    if proposal is None:
        return refused
    book = book.with_proposal(proposal.approve(cmd.actor, now))
    placed = _place_intent(book, proposal.intent, params, now)
    return placed.then(Outcome(placed.state, (Emit(ProposalApproved(
        actor=cmd.actor, reason=cmd.reason, decision_id=proposal.decision_id,
        client_order_id=client_order_id(proposal.decision_id))),)))


def on_reject(book: OmsBook, cmd: RejectProposal, params: OmsParams, now: datetime) -> Outcome[OmsBook]:
    proposal, refused = _pending(book, cmd, params, now)
    if proposal is None:
        return refused
    book = book.with_proposal(proposal.reject(cmd.actor, now))
    return Outcome(book, (Emit(ProposalRejected(actor=cmd.actor, reason=cmd.reason,
                                                decision_id=proposal.decision_id)),))


def expire(book: OmsBook, proposal: Proposal, params: OmsParams, now: datetime) -> Outcome[OmsBook]:
    """A proposal nobody approved in time never becomes an order."""
    key = f"expired:{proposal.decision_id}"
    book = book.with_proposal(proposal.expire(now))
    return Outcome(book, (Emit(ProposalExpired(actor=SYSTEM, reason="not approved within the proposal TTL",
                                               decision_id=proposal.decision_id), key=key),),
                   (_audit(params, "proposal_expire",
                           {"decision_id": str(proposal.decision_id), "symbol": proposal.intent.symbol}, key),))


def expire_due(book: OmsBook, params: OmsParams, now: datetime) -> Outcome[OmsBook]:
    """The sweep: every pending proposal past its TTL expires."""
    out = unchanged(book)
    for proposal in sorted((p for p in book.proposals.values() if p.is_due(now)), key=lambda p: str(p.decision_id)):
        out = out.then(expire(out.state, proposal, params, now))
    return out


def on_cancel_all(book: OmsBook, cmd: CancelAllOrders, params: OmsParams) -> Outcome[OmsBook]:
    cancels = _cancel_open(book, params, cmd.symbol, "CANCEL_ALL")
    return cancels.then(Outcome(book, (Emit(OrdersCancelRequested(actor=cmd.actor, reason=cmd.reason,
                                                                  orders=len(cancels.events))),)))


def liquidation_order_id(event_id: UUID, symbol: str) -> str:
    return derived_order_id("LIQ", event_id, symbol)


def on_close_all(book: OmsBook, cmd: CloseAllPositions, event_id: UUID, params: OmsParams,
                 now: datetime) -> Outcome[OmsBook]:
    """Cancel everything, then market-sell every holding (liquidation bypasses risk: it only reduces)."""
    out = _cancel_open(book, params, None, "CLOSE_ALL")
    last_ts = book.last_reference_ts or now
    sent = 0
    for symbol, quantity in sorted(book.positions.items()):
        if quantity <= 0:
            continue
        coid = liquidation_order_id(event_id, symbol)
        sent += coid not in out.state.orders
        out = out.then(_place(out.state, _new_order(
            params, now, client_order_id=coid, exchange=book.exchanges.get(symbol, "binance"), symbol=symbol,
            side=Side.SELL, quantity=quantity, purpose="LIQUIDATION", reference_ts=last_ts,
            time_in_force=TimeInForce.IOC), now))
    return out.then(Outcome(out.state, (Emit(PositionsCloseRequested(actor=cmd.actor, reason=cmd.reason,
                                                                     orders=sent)),)))


def decide(book: OmsBook, message: Envelope[Any], params: OmsParams, now: datetime) -> Outcome[OmsBook]:
    """One message: an approved intent, a fill, a venue answer or an operator's command."""
    p = message.payload
    if isinstance(p, OrderIntentApproved):
        return on_intent(book, message, params, now)
    if isinstance(p, OrderFilled):
        return on_fill(book, p, params, now, message.event_id)
    if isinstance(p, (OrderAccepted, OrderCanceled, OrderExpired, OrderRejected)):
        return on_venue(book, p, params, now)
    if isinstance(p, (AuthorizeRouting, DisconnectRouting)):
        return on_routing(book, p, now)
    if isinstance(p, SetOperatingMode):
        return on_set_mode(book, p, now)
    if isinstance(p, ApproveProposal):
        return on_approve(book, p, params, now)
    if isinstance(p, RejectProposal):
        return on_reject(book, p, params, now)
    if isinstance(p, CancelAllOrders):
        return on_cancel_all(book, p, params)
    if isinstance(p, CloseAllPositions):
        return on_close_all(book, p, message.event_id, params, now)
    return unchanged(book)


# --- lifecycle ------------------------------------------------------------------------------------------------

def _audit(params: OmsParams, action: str, details: dict[str, Any], key: str) -> Audit:
    return Audit(actor=SYSTEM, action=action, mode=params.mode.value, risk_profile=params.risk_profile,
                 status="CONFIRMED", details=details, key=key)


def cold_start(book: OmsBook, params: OmsParams, now: datetime) -> Outcome[OmsBook]:
    """Every start disconnects routing until an operator authorizes it again: an alert on the stream and an
    audited SYSTEM action."""
    start = f"cold-start:{now.isoformat()}"
    book = replace(book, routing_connected=False, updated_by=SYSTEM, updated_at=now)
    return Outcome(book, (Emit(RoutingDisconnected(actor=SYSTEM, reason=COLD_START_REASON), key=start),),
                   (_audit(params, "routing_disconnect", {"reason": "cold start"}, start),))


def flush(book: OmsBook, params: OmsParams) -> Outcome[OmsBook]:
    """Graceful shutdown: cancel every open order."""
    return _cancel_open(book, params, None, "SHUTDOWN_FLUSH")


def reconcile(book: OmsBook, client_order_id: str, venue_status: str | None, executions: list[OrderFilled],
              params: OmsParams, now: datetime) -> Outcome[OmsBook]:
    """An open order against the venue's own record: book what the venue says executed and note every
    difference."""
    oms_status = book.orders[client_order_id].status.value
    out = unchanged(book)
    booked = []
    for f in executions:
        if f.fill_id not in out.state.fill_ids:
            booked.append(f.fill_id)
        out = out.then(on_fill(out.state, f, params, now, reconciled_fill_id(f)))
    found: list[Discrepancy] = []
    if booked:
        found.append(Discrepancy("FILLS_BOOKED_AT_RECONCILE", client_order_id, {"fills": booked}))
    if venue_status is None:
        found.append(Discrepancy("UNKNOWN_AT_VENUE", client_order_id, {"oms_status": oms_status}))
    elif venue_status != oms_status and OrderStatus(venue_status).is_terminal:
        found.append(Discrepancy("VENUE_ENDED_ORDER", client_order_id,
                                 {"oms_status": oms_status, "venue_status": venue_status}))
    return out.then(Outcome(out.state, (), tuple(found)))


def snapshot(book: OmsBook, params: OmsParams, now: datetime) -> dict[str, Any]:
    """The portfolio as written at shutdown and checked at the next start."""
    return {"mode": params.mode.value, "written_at": now.isoformat(),
            "positions": {k: str(v) for k, v in sorted(book.positions.items())},
            "open_orders": [{"client_order_id": o.client_order_id, "symbol": o.symbol, "status": o.status.value}
                            for o in book.open_orders()]}


def compare_snapshot(saved: Mapping[str, Any], current: Mapping[str, Any], params: OmsParams) -> list[Discrepancy]:
    """The last snapshot of this trading mode against what the booked fills hold now."""
    if saved.get("mode") == params.mode.value and saved.get("positions") != current["positions"]:
        return [Discrepancy("SNAPSHOT_POSITIONS_DIFFER", None,
                            {"snapshot": saved.get("positions"), "database": current["positions"]})]
    return []
