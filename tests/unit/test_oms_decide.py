"""The OMS's decisions without infrastructure: arrange a book, feed one message, assert the events and the new
book (nautilus_trader style)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4

import pytest
from quorum.clock import TestClock
from quorum.events.base import Envelope, new_envelope
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
    OrderIntentApproved,
    OrderUpdated,
    SubmitOrder,
    TradeProposed,
)
from quorum.ids import client_order_id, derived_order_id
from quorum.oms import (
    ROUTING_DISCONNECTED,
    Discrepancy,
    IllegalProposalTransition,
    OmsBook,
    OmsParams,
    OrderEvent,
    OrderRecord,
    ProposalStatus,
    StoredFill,
    cold_start,
    compare_snapshot,
    decide,
    expire_due,
    flush,
    reconcile,
    snapshot,
)
from quorum.outcome import Audit, Outcome
from quorum.types import Intent, Liquidity, OperatingMode, OrderStatus, OrderType, Side, TimeInForce, TradingMode

T0 = datetime(2024, 3, 1, 12, tzinfo=UTC)
PARAMS = OmsParams()
SYMBOL = "BTC/USDT"
D = Decimal
CONNECTED = OmsBook(routing_connected=True)


# --- arranging ---------------------------------------------------------------------------------------------------

def message(payload: Any) -> Envelope[Any]:
    return new_envelope(payload, clock=TestClock(T0), source="test", key=uuid4(), event_time=T0)


def run(book: OmsBook, payload: Any, now: datetime = T0) -> Outcome[OmsBook]:
    return decide(book, message(payload), PARAMS, now)


def intent(side: Side = Side.BUY, kind: Intent = Intent.ENTRY, qty: str = "2", stop: str | None = "95",
           target: str | None = "110", symbol: str = SYMBOL, hour: int = 0) -> OrderIntentApproved:
    return OrderIntentApproved(decision_id=uuid4(), exchange="binance", symbol=symbol, side=side, intent=kind,
                               quantity=D(qty), reference_price=D(100), reference_ts=T0 + timedelta(hours=hour),
                               stop_loss=D(stop) if stop else None, take_profit=D(target) if target else None)


def order(coid: str, side: Side = Side.BUY, purpose: str = "ENTRY", qty: str = "2",
          status: OrderStatus = OrderStatus.ACCEPTED, symbol: str = SYMBOL, **kw: Any) -> OrderRecord:
    return OrderRecord(client_order_id=coid, mode="PAPER", venue="paper", exchange="binance", symbol=symbol,
                       side=side, quantity=D(qty), purpose=purpose, reference_ts=T0, updated_at=T0, status=status,
                       **kw)


def fill(coid: str, qty: str = "2", price: str = "100", fee: str = "0.2", fee_currency: str = "USDT",
         side: Side = Side.BUY, fill_id: str | None = None, symbol: str = SYMBOL) -> OrderFilled:
    return OrderFilled(fill_id=fill_id or f"F-{uuid4().hex[:8]}", venue="paper", mode=TradingMode.PAPER,
                       client_order_id=coid, exchange="binance", symbol=symbol, side=side, quantity=D(qty),
                       price=D(price), fee=D(fee), fee_currency=fee_currency, liquidity=Liquidity.TAKER, ts=T0)


def canceled(coid: str, filled: str = "0") -> OrderCanceled:
    return OrderCanceled(venue="paper", client_order_id=coid, symbol=SYMBOL, reason_code="CANCELED_BY_REQUEST",
                         filled_quantity=D(filled), ts=T0)


def with_orders(book: OmsBook, *orders: OrderRecord) -> OmsBook:
    for o in orders:
        book = book.with_order(o)
    return book


def payloads(outcome: Outcome[OmsBook], kind: type | None = None) -> list[Any]:
    return [e.payload for e in outcome.events if kind is None or isinstance(e.payload, kind)]


def placed_entry(qty: str = "2", **kw: Any) -> tuple[OmsBook, str]:
    i = intent(qty=qty, **kw)
    out = run(CONNECTED, i)
    coid = client_order_id(i.decision_id)
    return run(out.state, OrderAccepted(venue="paper", client_order_id=coid, symbol=SYMBOL, ts=T0)).state, coid


# --- routing and operating modes --------------------------------------------------------------------------------

def test_an_intent_is_rejected_with_routing_disconnected_while_routing_is_off() -> None:
    i = intent()
    out = run(OmsBook(), i)
    coid = client_order_id(i.decision_id)
    assert payloads(out, SubmitOrder) == []
    [update] = payloads(out, OrderUpdated)
    assert (update.status, update.previous_status, update.reason_code) == (
        OrderStatus.REJECTED, OrderStatus.PENDING, ROUTING_DISCONNECTED)
    assert out.state.orders[coid].status is OrderStatus.REJECTED
    [history] = out.records
    assert isinstance(history, OrderEvent) and history.is_refusal and history.emit is out.events[0]


def test_full_auto_places_the_intent_under_the_client_order_id_derived_from_the_decision() -> None:
    i = intent()
    out = run(CONNECTED, i)
    coid = client_order_id(i.decision_id)
    [submit, update] = out.events
    assert isinstance(submit.payload, SubmitOrder) and submit.key == coid
    assert (submit.payload.client_order_id, submit.payload.side, submit.payload.quantity) == (coid, Side.BUY, D(2))
    assert update.key == f"{coid}:SUBMITTED:0"
    placed = out.state.orders[coid]
    assert (placed.status, placed.decision_id, placed.purpose, placed.stop_loss) == (
        OrderStatus.SUBMITTED, i.decision_id, "ENTRY", D(95))


def test_a_redelivered_intent_places_nothing_twice() -> None:
    i = intent()
    first = run(CONNECTED, i)
    assert run(first.state, i).events == ()


def test_semi_auto_proposes_the_intent_until_its_ttl() -> None:
    i = intent()
    out = run(replace(CONNECTED, operating_mode=OperatingMode.SEMI_AUTO), i)
    [proposed] = payloads(out)
    assert isinstance(proposed, TradeProposed) and proposed.expires_at == T0 + PARAMS.proposal_ttl
    proposal = out.state.proposals[i.decision_id]
    assert (proposal.status, proposal.intent) == (ProposalStatus.PENDING, i)
    assert out.state.orders == {}


def test_observe_records_the_intent_and_sends_nothing() -> None:
    i = intent()
    out = run(replace(CONNECTED, operating_mode=OperatingMode.OBSERVE), i)
    assert out.events == () and out.state.orders == {}
    proposal = out.state.proposals[i.decision_id]
    assert (proposal.status, proposal.expires_at) == (ProposalStatus.OBSERVED, None)


def test_authorizing_routing_connects_it_and_confirms() -> None:
    out = run(OmsBook(), AuthorizeRouting(actor="USER:op", reason="go"))
    assert out.state.routing_connected and out.state.updated_by == "USER:op" and out.state.updated_at == T0
    assert isinstance(payloads(out)[0], RoutingAuthorized)
    off = run(out.state, DisconnectRouting(actor="USER:op", reason="stop"))
    assert not off.state.routing_connected and isinstance(payloads(off)[0], RoutingDisconnected)


def test_changing_the_operating_mode_reports_the_previous_one() -> None:
    out = run(CONNECTED, SetOperatingMode(actor="USER:op", mode=OperatingMode.OBSERVE))
    [changed] = payloads(out)
    assert isinstance(changed, OperatingModeChanged) and changed.previous is OperatingMode.FULL_AUTO
    assert out.state.operating_mode is OperatingMode.OBSERVE


def test_cold_start_disconnects_routing_with_an_alert_and_an_audit() -> None:
    out = cold_start(CONNECTED, PARAMS, T0)
    assert not out.state.routing_connected
    [alert] = out.events
    assert isinstance(alert.payload, RoutingDisconnected) and alert.key == f"cold-start:{T0.isoformat()}"
    [audit] = out.records
    assert isinstance(audit, Audit) and (audit.action, audit.key) == ("routing_disconnect", alert.key)


# --- proposals --------------------------------------------------------------------------------------------------

def proposed(*intents: OrderIntentApproved) -> OmsBook:
    book = replace(CONNECTED, operating_mode=OperatingMode.SEMI_AUTO)
    for i in intents:
        book = run(book, i).state
    return book


def test_an_approved_proposal_is_placed() -> None:
    i = intent()
    out = run(proposed(i), ApproveProposal(actor="USER:op", decision_id=i.decision_id), T0 + timedelta(seconds=10))
    coid = client_order_id(i.decision_id)
    assert [type(p) for p in payloads(out)] == [SubmitOrder, OrderUpdated, ProposalApproved]
    assert payloads(out)[-1].client_order_id == coid
    assert out.state.proposals[i.decision_id].status is ProposalStatus.APPROVED
    assert out.state.orders[coid].status is OrderStatus.SUBMITTED


def test_approving_a_proposal_past_its_ttl_expires_it_and_is_refused() -> None:
    i = intent()
    late = T0 + PARAMS.proposal_ttl
    out = run(proposed(i), ApproveProposal(actor="USER:op", decision_id=i.decision_id), late)
    expired, refused = payloads(out)
    assert isinstance(expired, ProposalExpired) and out.events[0].key == f"expired:{i.decision_id}"
    assert isinstance(refused, ControlRefused) and refused.reason_code == "PROPOSAL_EXPIRED"
    assert out.state.proposals[i.decision_id].status is ProposalStatus.EXPIRED and out.state.orders == {}
    assert [r.action for r in out.records if isinstance(r, Audit)] == ["proposal_expire"]


def test_a_rejected_proposal_never_trades_and_cannot_be_decided_again() -> None:
    i = intent()
    out = run(proposed(i), RejectProposal(actor="USER:op", decision_id=i.decision_id))
    assert isinstance(payloads(out)[0], ProposalRejected) and out.state.orders == {}
    again = run(out.state, ApproveProposal(actor="USER:op", decision_id=i.decision_id))
    [refused] = payloads(again)
    assert isinstance(refused, ControlRefused) and refused.reason_code == "PROPOSAL_REJECTED"
    unknown = run(out.state, RejectProposal(actor="USER:op", decision_id=uuid4()))
    assert payloads(unknown)[0].reason_code == "UNKNOWN_PROPOSAL"


def test_a_proposal_refuses_illegal_transitions() -> None:
    i = intent()
    proposal = proposed(i).proposals[i.decision_id]
    approved = proposal.approve("USER:op", T0)
    assert (approved.decided_by, approved.decided_at) == ("USER:op", T0)
    with pytest.raises(IllegalProposalTransition):
        approved.expire(T0)
    with pytest.raises(IllegalProposalTransition):
        replace(proposal, status=ProposalStatus.OBSERVED).approve("USER:op", T0)


def test_the_expiry_sweep_expires_only_pending_proposals_past_their_ttl() -> None:
    old, fresh = intent(), intent()
    book = proposed(old)
    book = decide(book, message(fresh), PARAMS, T0 + timedelta(seconds=200))
    out = expire_due(book.state, PARAMS, T0 + PARAMS.proposal_ttl)
    assert [p.decision_id for p in payloads(out)] == [old.decision_id]
    assert out.state.proposals[fresh.decision_id].status is ProposalStatus.PENDING


# --- fills and protection ---------------------------------------------------------------------------------------

def test_a_fill_of_an_entry_places_a_stop_loss_and_take_profit_as_one_oco_group() -> None:
    book, coid = placed_entry()
    out = run(book, fill(coid))
    submits = payloads(out, SubmitOrder)
    assert [(s.order_type, s.stop_price, s.limit_price) for s in submits] == [
        (OrderType.STOP, D(95), None), (OrderType.LIMIT, None, D(110))]
    assert {s.oco_group for s in submits} == {coid} and {s.oco_size for s in submits} == {2}
    assert [s.client_order_id for s in submits] == [derived_order_id("SL", coid), derived_order_id("TP", coid)]
    assert all(s.side is Side.SELL and s.quantity == D(2) for s in submits)
    assert out.state.orders[coid].status is OrderStatus.FILLED
    assert out.state.positions == {SYMBOL: D(2)}
    assert [type(r) for r in out.records] == [StoredFill, OrderEvent, OrderEvent, OrderEvent]


def test_a_fill_books_an_order_event_for_each_update_with_the_fill_event_id() -> None:
    book, coid = placed_entry(stop=None, target=None)
    env = message(fill(coid))
    out = decide(book, env, PARAMS, T0)
    [stored, history] = out.records
    assert isinstance(stored, StoredFill) and stored.event_id == env.event_id
    assert isinstance(history, OrderEvent) and history.emit.key == f"{coid}:FILLED:2"
    assert payloads(out, SubmitOrder) == []  # nothing to protect with


def test_a_duplicate_fill_is_ignored() -> None:
    book, coid = placed_entry()
    f = fill(coid, qty="1")
    once = run(book, f)
    twice = run(once.state, f)
    assert twice.events == () and twice.records == () and twice.state is once.state
    assert once.state.orders[coid].filled_quantity == D(1)


def test_a_fill_for_an_unknown_order_is_an_error() -> None:
    with pytest.raises(LookupError):
        run(CONNECTED, fill("Qnobody"))


def test_a_fee_in_the_base_currency_reduces_the_position() -> None:
    book, coid = placed_entry(stop=None, target=None)
    out = run(book, fill(coid, qty="2", fee="0.002", fee_currency="BTC"))
    assert out.state.positions == {SYMBOL: D("1.998")}
    assert out.state.orders[coid].fee_currency == "BTC"


def test_a_partial_exit_protects_what_is_still_held_with_a_new_oco_group() -> None:
    book, entry = placed_entry(qty="2")
    book = run(book, fill(entry)).state
    exit_intent = intent(side=Side.SELL, kind=Intent.TAKE_PROFIT, qty="0.5", stop=None, target=None, hour=1)
    out = run(book, exit_intent)
    cancels = payloads(out, CancelOrder)
    assert {c.client_order_id for c in cancels} == {derived_order_id("SL", entry), derived_order_id("TP", entry)}
    assert {c.reason for c in cancels} == {"EXIT_REPLACES_PROTECTION"}
    reduce = client_order_id(exit_intent.decision_id)
    assert out.state.orders[reduce].purpose == "REDUCE"
    book = out.state
    for leg in ("SL", "TP"):  # the venue cancels the old protection
        book = run(book, canceled(derived_order_id(leg, entry))).state
    out = run(book, fill(reduce, qty="0.5", side=Side.SELL))
    submits = payloads(out, SubmitOrder)
    assert [s.client_order_id for s in submits] == [derived_order_id("SL", reduce), derived_order_id("TP", reduce)]
    assert all(s.quantity == D("1.5") and s.oco_group == reduce for s in submits)
    assert (submits[0].stop_price, submits[1].limit_price) == (D(95), D(110))


def test_a_full_exit_is_not_protected_again() -> None:
    book, entry = placed_entry(qty="2")
    book = run(book, fill(entry)).state
    exit_intent = intent(side=Side.SELL, kind=Intent.EXIT, qty="2", stop=None, target=None, hour=1)
    book = run(book, exit_intent).state
    out = run(book, fill(client_order_id(exit_intent.decision_id), side=Side.SELL))
    assert payloads(out, SubmitOrder) == [] and out.state.positions == {}


def test_a_venue_cancel_with_fills_still_to_come_closes_only_once_they_are_booked() -> None:
    book, coid = placed_entry(qty="2")
    waiting = run(book, canceled(coid, filled="1"))
    assert waiting.events == () and waiting.state.orders[coid].status is OrderStatus.ACCEPTED
    assert waiting.state.orders[coid].venue_final_status is OrderStatus.CANCELED
    out = run(waiting.state, fill(coid, qty="1"))
    updates = payloads(out, OrderUpdated)
    assert [u.status for u in updates][:2] == [OrderStatus.PARTIALLY_FILLED, OrderStatus.CANCELED]
    assert updates[1].reason_code == "CANCELED_BY_REQUEST"
    assert [s.quantity for s in payloads(out, SubmitOrder)] == [D(1), D(1)]  # what did fill is protected


def test_a_late_fill_after_the_order_went_terminal_is_booked_without_reopening_it() -> None:
    book, coid = placed_entry(qty="2", stop=None, target=None)
    book = run(book, canceled(coid)).state
    assert book.orders[coid].status is OrderStatus.CANCELED
    out = run(book, fill(coid, qty="1"))
    [update] = payloads(out, OrderUpdated)
    assert (update.status, update.filled_quantity) == (OrderStatus.CANCELED, D(1))
    assert out.state.positions == {SYMBOL: D(1)}


def test_an_acceptance_after_a_fill_leaves_the_order_where_it_is() -> None:
    i = intent(stop=None, target=None)
    book = run(CONNECTED, i).state
    coid = client_order_id(i.decision_id)
    book = run(book, fill(coid)).state
    out = run(book, OrderAccepted(venue="paper", client_order_id=coid, symbol=SYMBOL, ts=T0))
    assert out.events == () and out.state.orders[coid].status is OrderStatus.FILLED


# --- cancel-all, liquidation, flush and reconciliation ----------------------------------------------------------

def test_cancel_all_sends_a_cancel_for_every_open_order_of_the_symbol() -> None:
    book = with_orders(CONNECTED, order("Qa"), order("Qb", symbol="ETH/USDT"),
                       order("Qc", status=OrderStatus.FILLED))
    out = run(book, CancelAllOrders(actor="USER:op", symbol=SYMBOL))
    assert [(p.client_order_id, p.reason) for p in payloads(out, CancelOrder)] == [("Qa", "CANCEL_ALL")]
    assert out.events[0].key == "cancel:Qa:CANCEL_ALL"
    assert payloads(out, OrdersCancelRequested)[0].orders == 1


def test_close_all_cancels_everything_and_liquidates_only_the_holdings() -> None:
    book = with_orders(CONNECTED, order("Qa", status=OrderStatus.SUBMITTED))
    book = replace(book, positions={SYMBOL: D("1.5"), "ETH/USDT": D("-0.1")}, exchanges={SYMBOL: "kraken"},
                   last_reference_ts=T0 + timedelta(hours=5))
    env = message(CloseAllPositions(actor="USER:op"))
    out = decide(book, env, PARAMS, T0 + timedelta(days=1))
    assert [p.client_order_id for p in payloads(out, CancelOrder)] == ["Qa"]
    [liq] = payloads(out, SubmitOrder)
    assert liq.client_order_id == derived_order_id("LIQ", env.event_id, SYMBOL)
    assert (liq.side, liq.quantity, liq.exchange, liq.time_in_force, liq.reference_ts) == (
        Side.SELL, D("1.5"), "kraken", TimeInForce.IOC, T0 + timedelta(hours=5))
    assert payloads(out, PositionsCloseRequested)[0].orders == 1
    assert out.state.orders[liq.client_order_id].purpose == "LIQUIDATION"


def test_the_shutdown_flush_cancels_every_open_order() -> None:
    book = with_orders(CONNECTED, order("Qa"), order("Qb", status=OrderStatus.PARTIALLY_FILLED),
                       order("Qc", status=OrderStatus.CANCELED))
    out = flush(book, PARAMS)
    assert [(e.key, e.payload.reason) for e in out.events] == [
        ("cancel:Qa:SHUTDOWN_FLUSH", "SHUTDOWN_FLUSH"), ("cancel:Qb:SHUTDOWN_FLUSH", "SHUTDOWN_FLUSH")]


def test_reconciliation_books_the_fills_the_venue_has_and_notes_the_differences() -> None:
    book, coid = placed_entry(qty="2", stop=None, target=None)
    f = fill(coid)
    out = reconcile(book, coid, "FILLED", [f], PARAMS, T0)
    stored = [r for r in out.records if isinstance(r, StoredFill)]
    assert [s.fill for s in stored] == [f] and isinstance(stored[0].event_id, UUID)
    found = [r for r in out.records if isinstance(r, Discrepancy)]
    assert [(d.kind, d.detail) for d in found] == [
        ("FILLS_BOOKED_AT_RECONCILE", {"fills": [f.fill_id]}),
        ("VENUE_ENDED_ORDER", {"oms_status": "ACCEPTED", "venue_status": "FILLED"})]
    unknown = reconcile(out.state, coid, None, [f], PARAMS, T0)
    assert [d.kind for d in unknown.records] == ["UNKNOWN_AT_VENUE"]


def test_the_snapshot_lists_positions_and_open_orders_and_is_compared_at_the_next_start() -> None:
    book = replace(with_orders(CONNECTED, order("Qa")), positions={SYMBOL: D(20)})
    state = snapshot(book, PARAMS, T0)
    assert state["positions"] == {SYMBOL: "20"}
    assert state["open_orders"] == [{"client_order_id": "Qa", "symbol": SYMBOL, "status": "ACCEPTED"}]
    assert compare_snapshot(state, state, PARAMS) == []
    [differs] = compare_snapshot({**state, "positions": {}}, state, PARAMS)
    assert differs.kind == "SNAPSHOT_POSITIONS_DIFFER"


def test_a_decision_never_changes_the_book_it_was_given() -> None:
    book, coid = placed_entry()
    orders_before, positions_before = dict(book.orders), dict(book.positions)
    run(book, fill(coid))
    assert dict(book.orders) == orders_before and dict(book.positions) == positions_before
