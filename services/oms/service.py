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
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import Field
from pydantic_settings import SettingsConfigDict
from quorum import oms, telemetry
from quorum.clock import Clock
from quorum.db.tables import trade_proposals
from quorum.events.control import AuthorizeRouting, DisconnectRouting
from quorum.metrics import ORDERS_REFUSED, ROUTING_CONNECTED
from quorum.oms import ROUTING_DISCONNECTED, Discrepancy, OmsBook, OmsParams, OrderEvent
from quorum.outcome import Audit, Outcome
from quorum.runtime.audit import active_profile
from quorum.runtime.handling import Context, Handler
from quorum.runtime.outcomes import emit_outcome
from quorum.runtime.service import Service
from quorum.runtime.settings import ServiceSettings
from quorum.types import OperatingMode
from quorum.venues.paper import PaperVenueView
from sqlalchemy import func, select

from .store import OmsStore, Slice, protection_ids, slice_for

log = logging.getLogger("quorum.oms")


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


class OmsService(Service):
    """load -> decide -> save: the decisions are ``quorum.oms``; this adds the database, the venue's records,
    the snapshot file, metrics and logs."""

    NAME = "oms"
    settings: OmsSettings

    def __init__(self, settings: OmsSettings, clock: Clock | None = None) -> None:
        super().__init__(settings, clock)
        self.params = OmsParams(mode=settings.trading_mode, venue=settings.venue,
                                proposal_ttl=timedelta(seconds=settings.proposal_ttl_s),
                                risk_profile=settings.risk_profile.value)
        self.store = OmsStore(settings.trading_mode.value, settings.venue)

    def handlers(self) -> dict[str, Handler]:
        return {"oms-intents": self.on_message, "oms-fills": self.on_message, "oms-venue": self.on_message,
                "oms-control": self.on_message}

    def tasks(self) -> list[Any]:
        return [self._expire_proposals]

    @property
    def mode(self) -> str:
        return self.settings.trading_mode.value

    async def on_message(self, ctx: Context) -> None:
        now = ctx.clock.now()
        book = await self.store.load(ctx.conn, slice_for(ctx.message), now)
        routing = isinstance(ctx.message.payload, (AuthorizeRouting, DisconnectRouting))
        await self._commit(ctx, book, oms.decide(book, ctx.message, self.params, now), now, routing=routing)

    async def _commit(self, ctx: Context, before: OmsBook, outcome: Outcome[OmsBook], now: datetime,
                      routing: bool = False) -> None:
        """Emit the events and audits, save the book and its records; metrics once committed."""
        if any(isinstance(r, Audit) for r in outcome.records):
            profile = await active_profile(ctx.conn, self.settings.risk_profile.value)
            outcome = replace(outcome, records=tuple(replace(r, risk_profile=profile) if isinstance(r, Audit) else r
                                                     for r in outcome.records))
        pairs = await emit_outcome(ctx, outcome, chain_key=self.settings.chain_key)
        await self.store.save(ctx.conn, before, outcome.state, outcome.records,
                              {id(e): env.event_id for e, env in pairs}, now)
        for r in outcome.records:
            if isinstance(r, OrderEvent) and r.is_refusal and r.reason_code == ROUTING_DISCONNECTED:
                log.warning("order %s refused: routing is disconnected", r.client_order_id)
                ctx.after_commit.append(ORDERS_REFUSED.labels(self.mode, ROUTING_DISCONNECTED).inc)
            elif isinstance(r, Discrepancy):
                log.warning("reconciliation: %s %s %s", r.kind, r.client_order_id or "", r.detail)
        if routing:
            connected = outcome.state.routing_connected
            ctx.after_commit.append(lambda: ROUTING_CONNECTED.labels(self.mode).set(int(connected)))

    # --- lifecycle ----------------------------------------------------------------------------------------
    async def on_start(self) -> None:
        """Cold start: hydrate from the database, check the last snapshot, reconcile with the venue, and
        disconnect routing until an operator authorizes it again."""

        async def cold_start(ctx: Context) -> None:
            now = ctx.clock.now()
            await self.store.ensure_state(ctx.conn, self.settings.operating_mode, now)
            book = await self.store.load(ctx.conn, Slice(open_orders=True, positions=None), now)
            await self._commit(ctx, book, oms.cold_start(book, self.params, now), now, routing=True)
            state = oms.snapshot(book, self.params, now)
            await self._commit(ctx, book, Outcome(book, (), tuple(self._check_snapshot(state))), now)
            await self._reconcile(ctx, now)
            pending = (await ctx.conn.execute(select(func.count()).select_from(trade_proposals).where(
                trade_proposals.c.status == "PENDING"))).scalar_one()
            mode = book.operating_mode
            ctx.after_commit.append(lambda: (telemetry.operating_mode(mode), telemetry.PROPOSALS_PENDING.set(pending)))
            log.info("hydrated: %d open orders, positions %s", len(state["open_orders"]), state["positions"])

        await self.transact(cold_start)
        log.warning("routing DISCONNECTED (cold start): every order is refused %s until an operator authorizes "
                    "routing (POST /controls/routing/authorize)", ROUTING_DISCONNECTED)

    async def on_stop(self) -> None:
        """Graceful shutdown: flush (cancel every open order), then write the portfolio snapshot."""

        async def flush(ctx: Context) -> dict[str, Any]:
            now = ctx.clock.now()
            book = await self.store.load(ctx.conn, Slice(open_orders=True, positions=None), now)
            if self.settings.flush_on_shutdown:
                flushed = oms.flush(book, self.params)
                await self._commit(ctx, book, flushed, now)
                log.info("order flush: cancel sent for %d open orders", len(flushed.events))
            return oms.snapshot(book, self.params, now)

        state = await self.transact(flush)
        path = self.settings.state_file
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2, sort_keys=True))
        tmp.replace(path)  # atomic: a crash never leaves half a snapshot

    def _check_snapshot(self, state: dict[str, Any]) -> list[Discrepancy]:
        path = self.settings.state_file
        if not path.exists():
            return []
        try:
            saved = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            return [Discrepancy("SNAPSHOT_UNREADABLE", None, {"path": str(path), "error": str(exc)})]
        return oms.compare_snapshot(saved, state, self.params)

    async def _reconcile(self, ctx: Context, now: datetime) -> None:
        """Compare every open order with the venue's own record; book what the venue says executed and
        record every difference. (Paper: the matching engine's records. Live: fetch_open_orders/my_trades.)"""
        if self.settings.venue != "paper":
            return  # the live adapter (quorum.venues.ccxt_venue) is not wired into this build's OMS
        venue = PaperVenueView(ctx.conn)
        opened = await self.store.load(ctx.conn, Slice(open_orders=True), now)
        found = [(o, *await venue.order(o.client_order_id)) for o in opened.open_orders() if o.venue == "paper"]
        book = await self.store.load(ctx.conn, Slice(
            open_orders=True, positions=None, related=tuple(i for o, _, _ in found for i in protection_ids(
                o.client_order_id)), fill_ids=tuple(f.fill_id for _, _, executions in found for f in executions),
            protected=tuple({o.symbol for o, _, _ in found})), now)
        outcome = Outcome(book)
        for order, status, executions in found:
            outcome = outcome.then(oms.reconcile(outcome.state, order.client_order_id, status, executions,
                                                 self.params, now))
        await self._commit(ctx, book, outcome, now)

    async def _expire_proposals(self) -> None:
        """Proposals nobody approved in time never become orders."""
        while not self.stopping.is_set():
            async def sweep(ctx: Context) -> None:
                now = ctx.clock.now()
                book = await self.store.load(ctx.conn, Slice(due_proposals=True), now)
                await self._commit(ctx, book, oms.expire_due(book, self.params, now), now)

            try:
                await self.transact(sweep)
            except Exception:  # noqa: BLE001 - a database blip must not kill the sweeper
                log.exception("proposal expiry sweep failed; retrying")
            try:
                await asyncio.wait_for(self.stopping.wait(), timeout=self.settings.expiry_check_s)
            except TimeoutError:
                pass

