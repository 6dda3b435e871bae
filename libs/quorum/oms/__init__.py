"""Order management as pure decisions over an ``OmsBook``: the OMS service and the in-process runner run the
same functions (``decide`` for messages, ``cold_start`` / ``flush`` / ``expire_due`` / ``reconcile`` for the
lifecycle), so they produce the same orders and events from the same inputs."""

from __future__ import annotations

from quorum.oms.book import (
    SYSTEM,
    IllegalProposalTransition,
    OmsBook,
    OrderRecord,
    Proposal,
    ProposalStatus,
    ProtectedEntry,
)
from quorum.oms.decide import (
    ROUTING_DISCONNECTED,
    Discrepancy,
    OmsParams,
    OrderEvent,
    StoredFill,
    cold_start,
    compare_snapshot,
    decide,
    expire_due,
    flush,
    reconcile,
    snapshot,
)

__all__ = [
    "ROUTING_DISCONNECTED", "SYSTEM", "Discrepancy", "IllegalProposalTransition", "OmsBook", "OmsParams",
    "OrderEvent", "OrderRecord", "Proposal", "ProposalStatus", "ProtectedEntry", "StoredFill", "cold_start",
    "compare_snapshot", "decide", "expire_due", "flush", "reconcile", "snapshot",
]
