"""The OMS's book in PostgreSQL: load the slice of it a message needs, save what a decision changed and write
the rows it kept beside the state (fills, order history, discrepancies).

A slice is enough because every decision reads only what its message refers to: the orders it names (locked,
so a fill and a venue answer of one order apply one after the other) and the orders the OMS would derive from
them, the open orders, the positions of its symbols, its proposal and the latest protected entry.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from quorum.db.tables import fills, oms_state, order_events, orders, reconciliation_discrepancies, trade_proposals
from quorum.domain.position import held_after
from quorum.events.base import Envelope
from quorum.events.control import ApproveProposal, CancelAllOrders, CloseAllPositions, RejectProposal
from quorum.events.fills import OrderFilled
from quorum.events.orders import OrderAccepted, OrderCanceled, OrderExpired, OrderIntentApproved, OrderRejected
from quorum.ids import client_order_id, derived_order_id
from quorum.oms.book import (
    OPEN_STATUSES,
    REDUCE,
    SYSTEM,
    OmsBook,
    OrderRecord,
    Proposal,
    ProposalStatus,
    ProtectedEntry,
)
from quorum.oms.decide import Discrepancy, OrderEvent, StoredFill, liquidation_order_id
from quorum.types import OperatingMode, OrderStatus, OrderType, Side, TimeInForce, split_symbol
from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

ZERO = Decimal(0)
OPEN = tuple(s.value for s in sorted(OPEN_STATUSES))
VENUE_ANSWERS = (OrderAccepted, OrderCanceled, OrderExpired, OrderRejected)


@dataclass(frozen=True)
class Slice:
    """What of the book to load. ``positions`` None: every symbol."""

    orders: tuple[str, ...] = ()  # the orders the message names: locked
    related: tuple[str, ...] = ()  # orders the decision may derive from them (protection, liquidation)
    fill_ids: tuple[str, ...] = ()
    positions: tuple[str, ...] | None = ()
    open_orders: bool = False
    protected: tuple[str, ...] = ()  # symbols whose latest protected entry is needed
    proposals: tuple[UUID, ...] = ()
    due_proposals: bool = False
    placement: bool = False  # the exchanges traded and the newest reference time (liquidation)
    liquidation_of: UUID | None = None  # the close-all command whose liquidation orders may exist
    protection: bool = False  # what protecting the named orders reads (see ``load``)


def protection_ids(coid: str) -> tuple[str, str]:
    return derived_order_id("SL", coid), derived_order_id("TP", coid)


def slice_for(message: Envelope[Any]) -> Slice:
    p = message.payload
    if isinstance(p, OrderIntentApproved):
        return Slice(orders=(client_order_id(p.decision_id),), proposals=(p.decision_id,),
                     open_orders=p.side is Side.SELL)
    if isinstance(p, OrderFilled):
        return Slice(orders=(p.client_order_id,), fill_ids=(p.fill_id,), protection=True)
    if isinstance(p, VENUE_ANSWERS):
        return Slice(orders=(p.client_order_id,), protection=True)
    if isinstance(p, ApproveProposal):
        return Slice(orders=(client_order_id(p.decision_id),), proposals=(p.decision_id,), open_orders=True)
    if isinstance(p, RejectProposal):
        return Slice(proposals=(p.decision_id,))
    if isinstance(p, CloseAllPositions):
        return Slice(open_orders=True, positions=None, placement=True, liquidation_of=message.event_id)
    return Slice(open_orders=isinstance(p, CancelAllOrders))  # cancel-all, routing, the operating mode


class OmsStore:
    def __init__(self, mode: str, venue: str) -> None:
        self.mode = mode
        self.venue = venue

    async def ensure_state(self, conn: AsyncConnection, operating_mode: OperatingMode, now: datetime) -> None:
        """The first start of a trading mode: routing disconnected, the configured operating mode."""
        await conn.execute(insert(oms_state).values(
            mode=self.mode, routing_connected=False, operating_mode=operating_mode.value, updated_by=SYSTEM,
            updated_at=now).on_conflict_do_nothing())

    # --- loading ---------------------------------------------------------------------------------------------
    async def load(self, conn: AsyncConnection, want: Slice, now: datetime) -> OmsBook:
        """With ``protection``: for a named buy, the protective orders it would get; for a named REDUCE, those
        too, and the position and latest protected entry of its symbol (only re-protection reads them)."""
        row = (await conn.execute(select(oms_state).where(oms_state.c.mode == self.mode))).one()
        found: dict[str, OrderRecord] = {}
        if want.orders:  # locked first: what is read after sees what the other side committed
            found.update(await self._orders(conn, orders.c.client_order_id.in_(want.orders), lock=True))
        related = list(want.related)
        symbols, protected = want.positions, want.protected
        if want.protection:
            named = [found[c] for c in want.orders if c in found]
            related += [i for o in named if o.side is Side.BUY or o.purpose == REDUCE
                        for i in protection_ids(o.client_order_id)]
            reducing = tuple(o.symbol for o in named if o.purpose == REDUCE)
            symbols = None if symbols is None else (*symbols, *reducing)
            protected = (*protected, *reducing)
        positions = await self._positions(conn, symbols)
        if want.liquidation_of is not None:
            related += [liquidation_order_id(want.liquidation_of, s) for s in positions]
        missing = [c for c in related if c not in found]
        if missing:
            found.update(await self._orders(conn, orders.c.client_order_id.in_(missing)))
        if want.open_orders:
            for coid, o in (await self._orders(conn, (orders.c.mode == self.mode) & orders.c.status.in_(OPEN))).items():
                found.setdefault(coid, o)
        exchanges: dict[str, str] = {}
        last_ts = None
        if want.placement:
            last_ts = (await conn.execute(select(func.max(orders.c.reference_ts)))).scalar_one()
            exchanges = dict((await conn.execute(select(orders.c.symbol, orders.c.exchange).where(
                orders.c.mode == self.mode).distinct())).all())
        return OmsBook(
            routing_connected=row.routing_connected, operating_mode=OperatingMode(row.operating_mode),
            updated_by=row.updated_by, updated_at=row.updated_at, orders=found,
            fill_ids=await self._booked(conn, want.fill_ids), positions=positions,
            proposals=await self._proposals(conn, want, now),
            protected_entries={s: e for s in protected if (e := await self._protected(conn, s)) is not None},
            exchanges=exchanges, last_reference_ts=last_ts)

    async def _orders(self, conn: AsyncConnection, where: Any, lock: bool = False) -> dict[str, OrderRecord]:
        q = select(orders).where(where).order_by(orders.c.client_order_id)
        rows = (await conn.execute(q.with_for_update() if lock else q)).all()
        return {r.client_order_id: _order(r) for r in rows}

    async def _positions(self, conn: AsyncConnection, symbols: Sequence[str] | None) -> dict[str, Decimal]:
        """Net holdings per symbol from the booked fills, through the one position calculation (a fee in the
        base currency changes what is held). Summed per side and fee currency first: the fold is linear."""
        if symbols is not None and not symbols:
            return {}
        f = fills.c
        q = select(f.symbol, f.side, f.fee_currency, func.sum(f.quantity).label("quantity"),
                   func.sum(f.fee).label("fee")).where(f.mode == self.mode).group_by(f.symbol, f.side, f.fee_currency)
        if symbols is not None:
            q = q.where(f.symbol.in_(symbols))
        held: dict[str, Decimal] = {}
        for r in (await conn.execute(q.order_by(f.symbol, f.side, f.fee_currency))).all():
            base, _ = split_symbol(r.symbol)
            held[r.symbol] = held_after(held.get(r.symbol, ZERO), Side(r.side), r.quantity, r.fee, r.fee_currency,
                                        base)
        return {k: v for k, v in held.items() if v != 0}

    async def _booked(self, conn: AsyncConnection, fill_ids: Sequence[str]) -> frozenset[str]:
        if not fill_ids:
            return frozenset()
        rows = await conn.execute(select(fills.c.fill_id).where(fills.c.fill_id.in_(fill_ids)))
        return frozenset(rows.scalars())

    async def _proposals(self, conn: AsyncConnection, want: Slice, now: datetime) -> dict[UUID, Proposal]:
        t = trade_proposals.c
        out: dict[UUID, Proposal] = {}
        if want.proposals:
            q = select(trade_proposals).where(t.decision_id.in_(want.proposals)).with_for_update()
            out.update((r.decision_id, _proposal(r)) for r in (await conn.execute(q)).all())
        if want.due_proposals:
            q = select(trade_proposals).where(t.status == ProposalStatus.PENDING.value, t.expires_at <= now)
            rows = (await conn.execute(q.with_for_update(skip_locked=True))).all()
            out.update((r.decision_id, _proposal(r)) for r in rows)
        return out

    async def _protected(self, conn: AsyncConnection, symbol: str) -> ProtectedEntry | None:
        o = orders.c
        r = (await conn.execute(select(o.client_order_id, o.reference_ts, o.stop_loss, o.take_profit).where(
            o.mode == self.mode, o.symbol == symbol, o.side == Side.BUY.value, o.purpose.in_(("ENTRY", "REENTRY")),
            o.filled_quantity > 0, (o.stop_loss.is_not(None)) | (o.take_profit.is_not(None)),
        ).order_by(o.reference_ts.desc(), o.client_order_id.desc()).limit(1))).first()
        return None if r is None else ProtectedEntry(r.client_order_id, r.reference_ts, r.stop_loss, r.take_profit)

    # --- saving ---------------------------------------------------------------------------------------------
    async def save(self, conn: AsyncConnection, before: OmsBook, after: OmsBook, records: Iterable[Any],
                   event_ids: Mapping[int, UUID], now: datetime) -> None:
        """Write what changed from ``before`` to ``after``, then the records. ``event_ids``: the id of the
        envelope each emitted ``Emit`` became (by ``id()``), for the order history."""
        state = ("routing_connected", "operating_mode", "updated_by", "updated_at")
        if any(getattr(before, k) != getattr(after, k) for k in state):
            await conn.execute(update(oms_state).where(oms_state.c.mode == self.mode).values(
                routing_connected=after.routing_connected, operating_mode=after.operating_mode.value,
                updated_by=after.updated_by, updated_at=after.updated_at))
        if after.orders is not before.orders:
            for coid, order in after.orders.items():
                old = before.orders.get(coid)
                if old is None:
                    await conn.execute(insert(orders).values(**_order_row(order)))  # a race fails loudly
                elif order != old:
                    await conn.execute(update(orders).where(orders.c.client_order_id == coid).values(
                        **_order_changes(order)))
        if after.proposals is not before.proposals:
            for decision_id, proposal in after.proposals.items():
                was = before.proposals.get(decision_id)
                if was is None:
                    await conn.execute(insert(trade_proposals).values(**_proposal_row(proposal)))
                elif proposal != was:
                    await conn.execute(update(trade_proposals).where(trade_proposals.c.decision_id == decision_id)
                                       .values(status=proposal.status.value, decided_by=proposal.decided_by,
                                               decided_at=proposal.decided_at))
        for record in records:
            await self._write(conn, record, event_ids, now)

    async def _write(self, conn: AsyncConnection, record: Any, event_ids: Mapping[int, UUID], now: datetime) -> None:
        if isinstance(record, StoredFill):
            f = record.fill
            await conn.execute(insert(fills).values(
                fill_id=f.fill_id, client_order_id=f.client_order_id, mode=f.mode.value, venue=f.venue,
                exchange=f.exchange, symbol=f.symbol, side=f.side.value, quantity=f.quantity, price=f.price,
                fee=f.fee, fee_currency=f.fee_currency, liquidity=f.liquidity.value, ts=f.ts,
                event_id=record.event_id))
        elif isinstance(record, OrderEvent):
            await conn.execute(insert(order_events).values(
                client_order_id=record.client_order_id, event_id=event_ids[id(record.emit)],
                from_status=record.from_status.value, to_status=record.to_status.value,
                reason_code=record.reason_code, ts=record.ts).on_conflict_do_nothing())
        elif isinstance(record, Discrepancy):
            await conn.execute(insert(reconciliation_discrepancies).values(
                ts=now, venue=self.venue, kind=record.kind, client_order_id=record.client_order_id,
                detail=record.detail))


def _order(r: Any) -> OrderRecord:
    return OrderRecord(
        client_order_id=r.client_order_id, mode=r.mode, venue=r.venue, exchange=r.exchange, symbol=r.symbol,
        side=Side(r.side), quantity=r.quantity, purpose=r.purpose, reference_ts=r.reference_ts,
        updated_at=r.updated_at, decision_id=r.decision_id, order_type=OrderType(r.order_type),
        time_in_force=TimeInForce(r.time_in_force), limit_price=r.limit_price, stop_price=r.stop_price,
        stop_loss=r.stop_loss, take_profit=r.take_profit, parent_client_order_id=r.parent_client_order_id,
        oco_group=r.oco_group, status=OrderStatus(r.status), filled_quantity=r.filled_quantity, fees=r.fees,
        fee_currency=r.fee_currency, quote_spent=r.quote_spent, reason_code=r.reason_code,
        venue_final_status=None if r.venue_final_status is None else OrderStatus(r.venue_final_status),
        venue_final_filled=r.venue_final_filled)


def _order_changes(o: OrderRecord) -> dict[str, Any]:
    """The columns an order's life changes."""
    return dict(status=o.status.value, filled_quantity=o.filled_quantity, average_price=o.average_price,
                fees=o.fees, fee_currency=o.fee_currency, quote_spent=o.quote_spent, reason_code=o.reason_code,
                venue_final_status=None if o.venue_final_status is None else o.venue_final_status.value,
                venue_final_filled=o.venue_final_filled, updated_at=o.updated_at)


def _order_row(o: OrderRecord) -> dict[str, Any]:
    return dict(
        client_order_id=o.client_order_id, decision_id=o.decision_id, mode=o.mode, venue=o.venue,
        exchange=o.exchange, symbol=o.symbol, side=o.side.value, order_type=o.order_type.value,
        time_in_force=o.time_in_force.value, purpose=o.purpose, quantity=o.quantity, limit_price=o.limit_price,
        stop_price=o.stop_price, stop_loss=o.stop_loss, take_profit=o.take_profit,
        parent_client_order_id=o.parent_client_order_id, oco_group=o.oco_group, reference_ts=o.reference_ts,
        **_order_changes(o))


def _proposal(r: Any) -> Proposal:
    return Proposal(envelope=Envelope[OrderIntentApproved].model_validate(r.intent), status=ProposalStatus(r.status),
                    expires_at=r.expires_at, decided_by=r.decided_by, decided_at=r.decided_at)


def _proposal_row(p: Proposal) -> dict[str, Any]:
    i = p.intent
    return dict(decision_id=i.decision_id, exchange=i.exchange, symbol=i.symbol, side=i.side.value,
                quantity=i.quantity, reference_price=i.reference_price, status=p.status.value,
                intent=p.envelope.model_dump(mode="json"), expires_at=p.expires_at, decided_by=p.decided_by,
                decided_at=p.decided_at)
