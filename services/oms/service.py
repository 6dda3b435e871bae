"""Orders are keyed by a client order id derived from the decision, so one decision can never become two
orders (redelivery, restart or retry). Routing starts *disconnected* on every cold start; until an operator
authorizes it, approved intents are recorded and rejected with ``ROUTING_DISCONNECTED``."""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any

from pydantic_settings import SettingsConfigDict
from quorum.db.tables import fills, oms_state, order_events, orders
from quorum.domain.orders import OrderState
from quorum.events.control import AuthorizeRouting, DisconnectRouting, RoutingAuthorized, RoutingDisconnected
from quorum.events.fills import OrderFilled
from quorum.events.orders import OrderIntentApproved, OrderRejected, OrderUpdated, SubmitOrder
from quorum.ids import client_order_id
from quorum.runtime.handling import Context, Handler
from quorum.runtime.service import Service
from quorum.runtime.settings import ServiceSettings
from quorum.types import OrderStatus, OrderType
from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert

log = logging.getLogger("quorum.oms")
ROUTING_DISCONNECTED = "ROUTING_DISCONNECTED"


class OmsSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="QUORUM_OMS_", extra="ignore", frozen=True)

    http_port: int = 8106
    venue: str = "paper"


class OmsService(Service):
    NAME = "oms"
    settings: OmsSettings

    def handlers(self) -> dict[str, Handler]:
        return {"oms-intents": self.on_intent, "oms-fills": self.on_fill, "oms-venue": self.on_venue_reject,
                "oms-control": self.on_control}

    async def on_start(self) -> None:
        """Cold start: routing is disconnected until an operator authorizes it again."""

        async def disconnect(ctx: Context) -> None:
            await self._set_routing(ctx, False, "SYSTEM:oms")
            ctx.emit(RoutingDisconnected(actor="SYSTEM:oms", reason="cold start"),
                     key=f"cold-start:{ctx.clock.now().isoformat()}")

        await self.transact(disconnect)

    async def _set_routing(self, ctx: Context, connected: bool, actor: str) -> None:
        values = {"mode": self.settings.trading_mode.value, "routing_connected": connected, "updated_by": actor,
                  "updated_at": ctx.clock.now()}
        await ctx.conn.execute(insert(oms_state).values(values).on_conflict_do_update(
            index_elements=["mode"], set_=values))

    async def _routing_connected(self, ctx: Context) -> bool:
        q = select(oms_state.c.routing_connected).where(oms_state.c.mode == self.settings.trading_mode.value)
        return bool((await ctx.conn.execute(q)).scalar_one_or_none())

    # --- order lifecycle ------------------------------------------------------------------------------
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
            client_order_id=order.client_order_id, decision_id=order.decision_id, mode=order.mode,
            exchange=order.exchange, symbol=order.symbol, side=order.side, order_type=order.order_type,
            quantity=order.quantity, status=target, previous_status=OrderStatus(order.status),
            filled_quantity=state.filled_quantity, average_price=state.average_price, fees=state.fees,
            fee_currency=fee_currency or order.fee_currency, quote_spent=state.quote_spent, reason_code=reason,
        ), key=target.value)
        await ctx.conn.execute(insert(order_events).values(
            client_order_id=order.client_order_id, event_id=update_env.event_id, from_status=order.status,
            to_status=target.value, reason_code=reason, ts=now,
        ))

    async def _load(self, ctx: Context, coid: str) -> Any:
        q = select(orders).where(orders.c.client_order_id == coid).with_for_update()
        return (await ctx.conn.execute(q)).first()

    @staticmethod
    def _state(order: Any) -> OrderState:
        return OrderState(quantity=order.quantity, status=OrderStatus(order.status),
                          filled_quantity=order.filled_quantity, quote_spent=order.quote_spent, fees=order.fees)

    async def on_intent(self, ctx: Context) -> None:
        intent: OrderIntentApproved = ctx.message.payload
        coid = client_order_id(intent.decision_id)
        now = ctx.clock.now()
        inserted = (await ctx.conn.execute(insert(orders).values(
            client_order_id=coid, decision_id=intent.decision_id, mode=self.settings.trading_mode.value,
            venue=self.settings.venue, exchange=intent.exchange, symbol=intent.symbol, side=intent.side.value,
            order_type=intent.order_type.value, quantity=intent.quantity, status=OrderStatus.NEW.value,
            filled_quantity=Decimal(0), fees=Decimal(0), quote_spent=Decimal(0), reference_ts=intent.reference_ts,
            updated_at=now,
        ).on_conflict_do_nothing().returning(orders.c.client_order_id))).first()
        if inserted is None:
            log.info("order %s for decision %s exists already; nothing to do", coid, intent.decision_id)
            return
        order = await self._load(ctx, coid)
        state = self._state(order)
        if not await self._routing_connected(ctx):
            await self._record_transition(ctx, order, state.to(OrderStatus.REJECTED), ROUTING_DISCONNECTED)
            return
        ctx.emit(SubmitOrder(
            venue=self.settings.venue, mode=self.settings.trading_mode, client_order_id=coid,
            exchange=intent.exchange, symbol=intent.symbol, side=intent.side, order_type=OrderType.MARKET,
            quantity=intent.quantity, reference_ts=intent.reference_ts,
        ))
        await self._record_transition(ctx, order, state.to(OrderStatus.SUBMITTED))

    async def on_fill(self, ctx: Context) -> None:
        f: OrderFilled = ctx.message.payload
        order = await self._load(ctx, f.client_order_id)
        if order is None:
            raise LookupError(f"fill {f.fill_id} for unknown order {f.client_order_id}")
        new = (await ctx.conn.execute(insert(fills).values(
            fill_id=f.fill_id, client_order_id=f.client_order_id, mode=f.mode.value, venue=f.venue,
            exchange=f.exchange, symbol=f.symbol, side=f.side.value, quantity=f.quantity, price=f.price, fee=f.fee,
            fee_currency=f.fee_currency, liquidity=f.liquidity.value, ts=f.ts, event_id=ctx.message.event_id,
        ).on_conflict_do_nothing().returning(fills.c.fill_id))).first()
        if new is None:
            return  # this fill is booked already
        state = self._state(order).apply_fill(f.quantity, f.price, f.fee)
        await self._record_transition(ctx, order, state, fee_currency=f.fee_currency)

    async def on_venue_reject(self, ctx: Context) -> None:
        r: OrderRejected = ctx.message.payload
        order = await self._load(ctx, r.client_order_id)
        if order is None:
            raise LookupError(f"rejection for unknown order {r.client_order_id}")
        await self._record_transition(ctx, order, self._state(order).to(OrderStatus.REJECTED), r.reason_code)

    async def on_control(self, ctx: Context) -> None:
        cmd = ctx.message.payload
        connect = isinstance(cmd, AuthorizeRouting)
        assert connect or isinstance(cmd, DisconnectRouting)
        await self._set_routing(ctx, connect, cmd.actor)
        confirmation = RoutingAuthorized if connect else RoutingDisconnected
        ctx.emit(confirmation(actor=cmd.actor, reason=cmd.reason))
