"""Paper matching: an order-book engine per symbol with latency, depth, maker/taker fees and restartable state.

(Replaces the foundation's fill-at-next-open in ``quorum.domain.matching``.)"""

from quorum.matching.book import Book, SyntheticBookModel
from quorum.matching.engine import (
    CancelRejected,
    EngineConfig,
    Fill,
    MatchingEngine,
    Order,
    Output,
    StatusChange,
    StopTriggered,
)
from quorum.matching.fees import FeeAsset, VenueFees
from quorum.matching.latency import LatencyKind, LatencyModel

__all__ = [
    "Book", "CancelRejected", "EngineConfig", "FeeAsset", "Fill", "LatencyKind", "LatencyModel", "MatchingEngine",
    "Order", "Output", "StatusChange", "StopTriggered", "SyntheticBookModel", "VenueFees",
]
