"""Ledger family: balanced journal transactions as posted."""

from __future__ import annotations

from uuid import UUID

from pydantic import AwareDatetime

from quorum.events.base import Frozen, Payload
from quorum.types import FiniteDecimal, TradingMode


class Posting(Frozen):
    account: str
    currency: str
    amount: FiniteDecimal  # debit > 0, credit < 0


class TransactionPosted(Payload):
    FAMILY = "ledger"
    ROUTING = ("mode",)

    txn_id: UUID
    mode: TradingMode
    ts: AwareDatetime
    description: str
    postings: tuple[Posting, ...]
