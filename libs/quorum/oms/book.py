"""The OMS's state: routing, the operating mode, the orders, the booked fills and what they hold, the Semi-Auto
proposals and the latest protected entry per symbol. A fold over the messages the OMS has applied.

The service's store loads the slice of it a message needs (the orders it refers to, the open orders, ...); the
in-process runner keeps the whole book. Mappings are never mutated: every change builds a new book.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any
from uuid import UUID

from quorum.domain.orders import OrderState
from quorum.domain.position import held_after
from quorum.events.base import Envelope
from quorum.events.fills import OrderFilled
from quorum.events.orders import OrderIntentApproved
from quorum.types import OperatingMode, OrderStatus, OrderType, Side, TimeInForce, split_symbol

ZERO = Decimal(0)
SYSTEM = "SYSTEM:oms"
OPEN_STATUSES = frozenset({OrderStatus.SUBMITTED, OrderStatus.ACCEPTED, OrderStatus.PARTIALLY_FILLED})
ENTRIES = ("ENTRY", "REENTRY")
PROTECTIVE = ("STOP_LOSS", "TAKE_PROFIT")
REDUCE = "REDUCE"  # a sell that leaves a position (the council's take-profit or de-risk): protected again after


@dataclass(frozen=True)
class OrderRecord:
    """One order as the OMS keeps it (a row of ``orders``)."""

    client_order_id: str
    mode: str
    venue: str
    exchange: str
    symbol: str
    side: Side
    quantity: Decimal
    purpose: str
    reference_ts: datetime
    updated_at: datetime
    decision_id: UUID | None = None
    order_type: OrderType = OrderType.MARKET
    time_in_force: TimeInForce = TimeInForce.GTC
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    stop_loss: Decimal | None = None  # attached once an entry fills
    take_profit: Decimal | None = None
    parent_client_order_id: str | None = None  # the order a protective order protects
    oco_group: str | None = None
    status: OrderStatus = OrderStatus.PENDING
    filled_quantity: Decimal = ZERO
    fees: Decimal = ZERO
    fee_currency: str | None = None
    quote_spent: Decimal = ZERO
    reason_code: str | None = None
    venue_final_status: OrderStatus | None = None  # how the venue ended the order, once it did
    venue_final_filled: Decimal | None = None  # what had executed by then

    @property
    def state(self) -> OrderState:
        return OrderState(quantity=self.quantity, status=self.status, filled_quantity=self.filled_quantity,
                          quote_spent=self.quote_spent, fees=self.fees)

    @property
    def average_price(self) -> Decimal | None:
        return self.state.average_price

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES

    @property
    def protects_from(self) -> bool:
        """An entry that bought something and carries a stop-loss or take-profit: what re-protection copies."""
        return (self.side is Side.BUY and self.purpose in ENTRIES and self.filled_quantity > 0
                and (self.stop_loss is not None or self.take_profit is not None))

    def moved(self, state: OrderState, reason_code: str | None, fee_currency: str | None,
              now: datetime) -> OrderRecord:
        return replace(self, status=state.status, filled_quantity=state.filled_quantity, fees=state.fees,
                       quote_spent=state.quote_spent, reason_code=reason_code, fee_currency=fee_currency,
                       updated_at=now)


@dataclass(frozen=True)
class ProtectedEntry:
    """The latest filled entry of a symbol that carried protection (by reference time, then order id)."""

    client_order_id: str
    reference_ts: datetime
    stop_loss: Decimal | None
    take_profit: Decimal | None

    @classmethod
    def of(cls, order: OrderRecord) -> ProtectedEntry:
        return cls(order.client_order_id, order.reference_ts, order.stop_loss, order.take_profit)

    @property
    def rank(self) -> tuple[datetime, str]:
        return (self.reference_ts, self.client_order_id)


class ProposalStatus(StrEnum):
    PENDING = "PENDING"
    APPROVED = "APPROVED"
    REJECTED = "REJECTED"
    EXPIRED = "EXPIRED"
    OBSERVED = "OBSERVED"  # Observe mode: recorded, never acted on


PROPOSAL_TRANSITIONS: dict[ProposalStatus, frozenset[ProposalStatus]] = {
    ProposalStatus.PENDING: frozenset({ProposalStatus.APPROVED, ProposalStatus.REJECTED, ProposalStatus.EXPIRED}),
    ProposalStatus.APPROVED: frozenset(),
    ProposalStatus.REJECTED: frozenset(),
    ProposalStatus.EXPIRED: frozenset(),
    ProposalStatus.OBSERVED: frozenset(),
}


class IllegalProposalTransition(ValueError):
    def __init__(self, current: ProposalStatus, target: ProposalStatus) -> None:
        super().__init__(f"illegal proposal transition {current} -> {target}")
        self.current, self.target = current, target


@dataclass(frozen=True)
class Proposal:
    """An approved intent the OMS did not act on at once: Semi-Auto waits for an operator until ``expires_at``;
    Observe only records it. ``envelope`` is the intent as received (acted on at approval)."""

    envelope: Envelope[Any]
    status: ProposalStatus
    expires_at: datetime | None = None
    decided_by: str | None = None
    decided_at: datetime | None = None

    @property
    def intent(self) -> OrderIntentApproved:
        payload: OrderIntentApproved = self.envelope.payload
        return payload

    @property
    def decision_id(self) -> UUID:
        return self.intent.decision_id

    def is_due(self, now: datetime) -> bool:
        return self.status is ProposalStatus.PENDING and self.expires_at is not None and self.expires_at <= now

    def _to(self, target: ProposalStatus, actor: str, now: datetime) -> Proposal:
        if target not in PROPOSAL_TRANSITIONS[self.status]:
            raise IllegalProposalTransition(self.status, target)
        return replace(self, status=target, decided_by=actor, decided_at=now)

    def approve(self, actor: str, now: datetime) -> Proposal:
        return self._to(ProposalStatus.APPROVED, actor, now)

    def reject(self, actor: str, now: datetime) -> Proposal:
        return self._to(ProposalStatus.REJECTED, actor, now)

    def expire(self, now: datetime) -> Proposal:
        return self._to(ProposalStatus.EXPIRED, SYSTEM, now)


@dataclass(frozen=True)
class OmsBook:
    """``positions``: base held per symbol from the booked fills (zero positions are left out).
    ``exchanges`` and ``last_reference_ts`` are what liquidation needs: the exchange each symbol traded on and
    the newest reference time of any order."""

    routing_connected: bool = False  # every cold start disconnects; an operator authorizes
    operating_mode: OperatingMode = OperatingMode.FULL_AUTO
    updated_by: str = SYSTEM
    updated_at: datetime | None = None
    orders: Mapping[str, OrderRecord] = field(default_factory=dict)
    fill_ids: frozenset[str] = frozenset()
    positions: Mapping[str, Decimal] = field(default_factory=dict)
    proposals: Mapping[UUID, Proposal] = field(default_factory=dict)
    protected_entries: Mapping[str, ProtectedEntry] = field(default_factory=dict)
    exchanges: Mapping[str, str] = field(default_factory=dict)
    last_reference_ts: datetime | None = None

    def open_orders(self, symbol: str | None = None, purposes: tuple[str, ...] | None = None) -> list[OrderRecord]:
        """Open orders (optionally of one symbol and some purposes), by client order id."""
        return [o for _, o in sorted(self.orders.items()) if o.is_open and (symbol is None or o.symbol == symbol)
                and (purposes is None or o.purpose in purposes)]

    def held(self, symbol: str) -> Decimal:
        return self.positions.get(symbol, ZERO)

    def with_order(self, order: OrderRecord) -> OmsBook:
        protected = self.protected_entries
        if order.protects_from:
            current = protected.get(order.symbol)
            entry = ProtectedEntry.of(order)
            if current is None or entry.rank >= current.rank:
                protected = {**protected, order.symbol: entry}
        return replace(self, orders={**self.orders, order.client_order_id: order}, protected_entries=protected)

    def with_placed(self, order: OrderRecord) -> OmsBook:
        """A new order: also what liquidation later needs to know about it."""
        last = self.last_reference_ts
        book = replace(self, exchanges={**self.exchanges, order.symbol: order.exchange},
                       last_reference_ts=order.reference_ts if last is None else max(last, order.reference_ts))
        return book.with_order(order)

    def with_fill(self, fill: OrderFilled) -> OmsBook:
        """Book one execution: its id (so it is booked once) and what it does to the symbol's position."""
        base, _ = split_symbol(fill.symbol)
        held = held_after(self.held(fill.symbol), fill.side, fill.quantity, fill.fee, fill.fee_currency, base)
        positions = {k: v for k, v in self.positions.items() if k != fill.symbol}
        if held != 0:
            positions[fill.symbol] = held
        return replace(self, fill_ids=self.fill_ids | {fill.fill_id}, positions=positions)

    def with_proposal(self, proposal: Proposal) -> OmsBook:
        return replace(self, proposals={**self.proposals, proposal.decision_id: proposal})
