"""What the ledger decides over: balances per account, positions per (mode, symbol) with the price they are
marked at, the head of each mode's hash chain, each mode's equity peak, and the transactions already posted."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from uuid import UUID

from quorum.domain.ledger import GENESIS_HASH, Position, account
from quorum.types import TradingMode

ZERO = Decimal(0)


@dataclass(frozen=True)
class LedgerParams:
    chain_key: bytes  # QUORUM_CHAIN_KEY: the journal's HMAC key
    quote_currency: str = "USDT"  # equity is cash in this currency plus holdings at their marks
    starting_cash: Decimal = Decimal("10000")  # the paper book's opening balance


@dataclass(frozen=True)
class Holding:
    position: Position = field(default_factory=Position)
    mark: Decimal | None = None  # the price it is valued at: the last fill's, or a later candle's close


@dataclass(frozen=True)
class LedgerBook:
    balances: Mapping[str, Decimal] = field(default_factory=dict)  # per account
    holdings: Mapping[tuple[TradingMode, str], Holding] = field(default_factory=dict)
    last_hash: Mapping[TradingMode, str] = field(default_factory=dict)  # absent: the chain is empty
    peaks: Mapping[TradingMode, Decimal] = field(default_factory=dict)  # absent: equity never marked
    posted: Mapping[UUID, str] = field(default_factory=dict)  # txn id -> its hash

    def holding(self, mode: TradingMode, symbol: str) -> Holding:
        return self.holdings.get((mode, symbol)) or Holding()

    def head(self, mode: TradingMode) -> str:
        return self.last_hash.get(mode, GENESIS_HASH)

    def cash(self, mode: TradingMode, currency: str) -> Decimal:
        return self.balances.get(account(mode, "cash", currency), ZERO)
