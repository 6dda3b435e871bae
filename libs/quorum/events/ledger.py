"""Ledger family: balanced journal transactions as posted."""

from __future__ import annotations

from uuid import UUID

from pydantic import AwareDatetime, Field

from quorum.events.base import Frozen, Payload
from quorum.types import FiniteDecimal, TradingMode


class Posting(Frozen):
    account: str
    currency: str
    amount: FiniteDecimal  # debit > 0, credit < 0


class TransactionPosted(Payload):
    FAMILY = "ledger"
    PRODUCERS = ("ledger",)
    ROUTING = ("mode",)

    txn_id: UUID
    mode: TradingMode
    ts: AwareDatetime
    description: str
    postings: tuple[Posting, ...]


class EquityMarked(Payload):
    """The book's equity marked to market (at a fill or a candle of a held symbol), with peak and drawdown."""

    FAMILY = "ledger"
    PRODUCERS = ("ledger",)
    ROUTING = ("mode",)

    mode: TradingMode
    ts: AwareDatetime
    equity: FiniteDecimal
    peak_equity: FiniteDecimal
    drawdown: FiniteDecimal = Field(description="fraction below the peak, 0..1")
