"""The paper venue's own records, read the way an exchange's REST API would be: order status and trade
history per client order id. The matching service writes them; the OMS only reads them to reconcile."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from quorum.db.tables import paper_fills, paper_orders
from quorum.events.fills import OrderFilled


class PaperVenueView:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def order(self, client_order_id: str) -> tuple[str | None, list[OrderFilled]]:
        """The venue's status of the order (None: the venue never saw it) and its executions, oldest first."""
        status = (await self._conn.execute(select(paper_orders.c.status).where(
            paper_orders.c.client_order_id == client_order_id))).scalar_one_or_none()
        rows = (await self._conn.execute(select(paper_fills.c.fill).where(
            paper_fills.c.client_order_id == client_order_id).order_by(paper_fills.c.ts, paper_fills.c.fill_id))).all()
        return status, [OrderFilled.model_validate(r.fill) for r in rows]

    async def open_orders(self, exchange: str, symbol: str | None = None) -> list[dict[str, Any]]:
        q = select(paper_orders.c.client_order_id, paper_orders.c.symbol, paper_orders.c.status).where(
            paper_orders.c.exchange == exchange, paper_orders.c.status.in_(("ACCEPTED", "PARTIALLY_FILLED")))
        if symbol:
            q = q.where(paper_orders.c.symbol == symbol)
        return [dict(r._mapping) for r in (await self._conn.execute(q)).all()]
