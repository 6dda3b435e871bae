"""Vocabulary shared by events, domain code and tables."""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, Field


class Side(StrEnum):
    BUY = "BUY"
    SELL = "SELL"


class Action(StrEnum):
    """What a decision asks for. Spot is long-only: SELL closes a long, it never opens a short."""

    BUY = "BUY"
    SELL = "SELL"
    HOLD = "HOLD"


class OrderType(StrEnum):
    MARKET = "MARKET"
    LIMIT = "LIMIT"
    STOP = "STOP"  # a market order once the traded price reaches the stop
    STOP_LIMIT = "STOP_LIMIT"  # a limit order once the traded price reaches the stop


class TimeInForce(StrEnum):
    GTC = "GTC"  # rests until filled or cancelled
    IOC = "IOC"  # fills what it can at once, the rest is cancelled
    FOK = "FOK"  # fills entirely at once, or not at all


class OperatingMode(StrEnum):
    """How far the OMS acts on its own: record only, ask an operator per trade, or trade."""

    OBSERVE = "OBSERVE"
    SEMI_AUTO = "SEMI_AUTO"
    FULL_AUTO = "FULL_AUTO"

    @property
    def autonomy(self) -> int:
        return list(OperatingMode).index(self)


class OrderStatus(StrEnum):
    PENDING = "PENDING"
    SUBMITTED = "SUBMITTED"
    ACCEPTED = "ACCEPTED"
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    FILLED = "FILLED"
    CANCELED = "CANCELED"
    REJECTED = "REJECTED"
    EXPIRED = "EXPIRED"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATUSES


TERMINAL_STATUSES = frozenset(
    {OrderStatus.FILLED, OrderStatus.CANCELED, OrderStatus.REJECTED, OrderStatus.EXPIRED}
)


class TradingMode(StrEnum):
    """Paper and live books never mix: every order, fill and ledger account carries its mode."""

    PAPER = "PAPER"
    LIVE = "LIVE"


class CouncilMode(StrEnum):
    COUNCIL = "COUNCIL"
    SOLO = "SOLO"
    OFF = "OFF"


class RiskProfile(StrEnum):
    """Operator-chosen appetite: limits which strategy tags vote and how large positions get."""

    LOW = "LOW"
    MEDIUM = "MEDIUM"
    HIGH = "HIGH"


class Intent(StrEnum):
    """Why a decision trades: risk sizes an entry, tops up a re-entry, or sells a fraction of the position."""

    NONE = "NONE"
    ENTRY = "ENTRY"
    REENTRY = "REENTRY"
    TAKE_PROFIT = "TAKE_PROFIT"
    DERISK = "DERISK"
    EXIT = "EXIT"


class Liquidity(StrEnum):
    MAKER = "MAKER"
    TAKER = "TAKER"


def _finite(value: Decimal) -> Decimal:
    if not value.is_finite():
        raise ValueError("must be a finite number")
    return value


def _positive(value: Decimal) -> Decimal:
    if value <= 0:
        raise ValueError("must be > 0")
    return value


def _non_negative(value: Decimal) -> Decimal:
    if value < 0:
        raise ValueError("must be >= 0")
    return value


# Money and quantities are Decimal end to end; floats never touch an order, a fill or the ledger.
FiniteDecimal = Annotated[Decimal, AfterValidator(_finite)]
PositiveDecimal = Annotated[Decimal, AfterValidator(_finite), AfterValidator(_positive)]
NonNegativeDecimal = Annotated[Decimal, AfterValidator(_finite), AfterValidator(_non_negative)]
Symbol = Annotated[str, Field(min_length=3, max_length=32, pattern=r"^[A-Z0-9]+/[A-Z0-9]+$")]
Exchange = Annotated[str, Field(min_length=2, max_length=32, pattern=r"^[a-z0-9_]+$")]
Timeframe = Annotated[str, Field(pattern=r"^[0-9]+[mhdw]$")]


def split_symbol(symbol: str) -> tuple[str, str]:
    """'BTC/USDT' -> ('BTC', 'USDT')."""
    base, quote = symbol.split("/")
    return base, quote


def timeframe_seconds(timeframe: str) -> int:
    unit = {"m": 60, "h": 3600, "d": 86400, "w": 604800}[timeframe[-1]]
    return int(timeframe[:-1]) * unit
