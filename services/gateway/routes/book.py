"""The book: portfolio, equity curve, positions, ledger balances, orders, fills, reconciliation findings."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from quorum.types import OrderStatus

from .. import queries
from ..deps import Conn, Limit, Mode, Offset, Reader, Settings
from ..schemas import (
    BalanceOut,
    DiscrepancyOut,
    EquityPoint,
    FillOut,
    IsoDatetime,
    OrderOut,
    Page,
    PortfolioOut,
    PositionOut,
)

router = APIRouter(tags=["read"])


@router.get("/portfolio", response_model=PortfolioOut)
async def get_portfolio(_: Reader, conn: Conn, mode: Mode, settings: Settings) -> PortfolioOut:
    """The book at a glance: equity (last mark), peak and drawdown, cash, holdings, PnL and fees."""
    return await queries.portfolio(conn, mode, settings.quote_currency)


@router.get("/equity", response_model=Page[EquityPoint])
async def get_equity(_: Reader, conn: Conn, mode: Mode, since: IsoDatetime | None = None,
                     until: IsoDatetime | None = None,
                     limit: Limit = 500, offset: Offset = 0) -> Page[EquityPoint]:
    """Equity marked to market with its running peak and drawdown, oldest first."""
    return await queries.equity_page(conn, mode, since, until, limit, offset)


@router.get("/positions", response_model=list[PositionOut])
async def get_positions(_: Reader, conn: Conn, mode: Mode, include_flat: bool = False) -> list[PositionOut]:
    return await queries.position_list(conn, mode, include_flat)


@router.get("/balances", response_model=list[BalanceOut])
async def get_balances(_: Reader, conn: Conn, mode: Mode) -> list[BalanceOut]:
    return await queries.balance_list(conn, mode)


@router.get("/orders", response_model=Page[OrderOut])
async def get_orders(_: Reader, conn: Conn, symbol: str | None = None, status_: Annotated[
        OrderStatus | None, Query(alias="status")] = None, limit: Limit = 100,
        offset: Offset = 0) -> Page[OrderOut]:
    return await queries.orders_page(conn, symbol, status_, limit, offset)


@router.get("/fills", response_model=Page[FillOut])
async def get_fills(_: Reader, conn: Conn, symbol: str | None = None, client_order_id: str | None = None,
                    limit: Limit = 100, offset: Offset = 0) -> Page[FillOut]:
    return await queries.fills_page(conn, symbol, client_order_id, limit, offset)


@router.get("/reconciliation", response_model=Page[DiscrepancyOut])
async def get_reconciliation(_: Reader, conn: Conn, limit: Limit = 100, offset: Offset = 0) -> Page[DiscrepancyOut]:
    """Every difference the OMS found between its records and the venue's (or its last snapshot)."""
    return await queries.reconciliation_page(conn, limit, offset)
