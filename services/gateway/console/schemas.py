"""Request and response models of the console's own endpoints."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr


class LoginRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    token: SecretStr = Field(min_length=1, max_length=512, description="an API token (viewer, operator or admin)")


class SessionOut(BaseModel):
    token_id: str = Field(description="the token's public name: the audit trail's actor")
    role: str
    csrf_token: str = Field(description="send it as X-CSRF-Token with every request that changes anything")
    idle_timeout_s: float
    seconds_left: float = Field(description="until the session ends unless the operator does something")


class MarketOut(BaseModel):
    symbol: str
    timeframe: str
    last_ts: datetime


class CandleOut(BaseModel):
    ts: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal


class ChartFillOut(BaseModel):
    ts: datetime
    side: str
    quantity: Decimal
    price: Decimal


class LevelOut(BaseModel):
    kind: str = Field(description="STOP_LOSS or TAKE_PROFIT (a resting protective order) or ENTRY (average cost)")
    price: Decimal
    client_order_id: str | None = None


class ChartOut(BaseModel):
    symbol: str
    timeframe: str
    candles: list[CandleOut] = Field(description="oldest first")
    fills: list[ChartFillOut] = Field(default_factory=list, description="fills within the candles' window")
    levels: list[LevelOut] = Field(default_factory=list, description="the open position's entry, stop and target")


class RiskProfilesOut(BaseModel):
    active: str
    profiles: dict[str, dict[str, Any]] = Field(description="every profile's limits, as risk enforces them")
