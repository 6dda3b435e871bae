"""Response and request models of the gateway's API (money as exact decimal strings)."""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal
from typing import Any, Generic, TypeVar

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

T = TypeVar("T")


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class ServiceHealth(_Out):
    state: str
    last_seen: datetime | None
    stale: bool


class Status(_Out):
    trading_mode: str
    risk_profile: str
    halted: bool
    halt_reason: str | None
    routing_connected: bool
    services: dict[str, ServiceHealth]
    last_candle_ts: datetime | None


class PositionOut(_Out):
    mode: str
    symbol: str
    quantity: Decimal
    avg_cost: Decimal
    mark_price: Decimal | None
    unrealized_pnl: Decimal
    realized_pnl: Decimal
    fees_paid: Decimal
    updated_at: datetime


class BalanceOut(_Out):
    mode: str
    kind: str = Field(description="cash or asset")
    currency: str
    amount: Decimal


class OrderOut(_Out):
    client_order_id: str
    decision_id: Any
    mode: str
    venue: str
    exchange: str
    symbol: str
    side: str
    order_type: str
    quantity: Decimal
    status: str
    filled_quantity: Decimal
    average_price: Decimal | None
    fees: Decimal
    fee_currency: str | None
    reason_code: str | None
    created_at: datetime
    updated_at: datetime


class FillOut(_Out):
    fill_id: str
    client_order_id: str
    mode: str
    venue: str
    symbol: str
    side: str
    quantity: Decimal
    price: Decimal
    fee: Decimal
    fee_currency: str
    liquidity: str
    ts: datetime


class AuditOut(_Out):
    id: int
    ts: datetime
    actor: str
    action: str
    mode: str
    risk_profile: str
    status: str
    details: dict[str, Any]


class Page(BaseModel, Generic[T]):
    items: list[T]
    limit: int
    offset: int


class ControlRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(default="", max_length=2000, examples=["maintenance window"])


class ControlResult(BaseModel):
    action: str
    status: str = Field(description="CONFIRMED, REFUSED or TIMEOUT")
    command_id: str
    confirmation: str | None = None
    detail: str = ""


class BackfillRequest(ControlRequest):
    exchange: str = Field(default="binance", pattern=r"^[a-z0-9_]+$", examples=["binance"])
    symbols: tuple[str, ...] = Field(min_length=1, max_length=100, examples=[["BTC/USDT", "ETH/USDT"]])
    timeframes: tuple[str, ...] = Field(default=("1h",), min_length=1, max_length=8, examples=[["1h", "1d"]])
    since: AwareDatetime = Field(examples=["2023-01-01T00:00:00Z"])
    until: AwareDatetime | None = None

    @field_validator("symbols")
    @classmethod
    def _symbols(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        bad = [s for s in v if not re.fullmatch(r"[A-Z0-9]+/[A-Z0-9]+", s)]
        if bad:
            raise ValueError(f"symbols must look like BASE/QUOTE: {bad}")
        return v

    @field_validator("timeframes")
    @classmethod
    def _timeframes(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        bad = [t for t in v if not re.fullmatch(r"[0-9]+[mhdw]", t)]
        if bad:
            raise ValueError(f"timeframes must look like 1m, 5m, 1h, 1d: {bad}")
        return v

    @model_validator(mode="after")
    def _window(self) -> BackfillRequest:
        if self.until is not None and self.until <= self.since:
            raise ValueError("until must be after since")
        return self
