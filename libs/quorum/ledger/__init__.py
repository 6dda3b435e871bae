"""The ledger service's behaviour as pure decisions over a ``LedgerBook`` (``quorum.ledger.decide``); the
journal's rules themselves (postings, hash chain, positions) are ``quorum.domain.ledger``."""

from quorum.ledger.book import Holding, LedgerBook, LedgerParams
from quorum.ledger.decide import (
    EquityPoint,
    JournalTransaction,
    MarkMoved,
    PositionSaved,
    decide,
    mark_equity,
    on_candle,
    on_fill,
    open_book,
    post_transaction,
)

__all__ = [
    "EquityPoint", "Holding", "JournalTransaction", "LedgerBook", "LedgerParams", "MarkMoved", "PositionSaved",
    "decide", "mark_equity", "on_candle", "on_fill", "open_book", "post_transaction",
]
