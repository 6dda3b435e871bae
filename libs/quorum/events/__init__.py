"""Typed, frozen messages: one module per family, one envelope for all.

Importing this package registers every payload type so ``decode`` can resolve any message.
"""

from quorum.events import audit, control, features, fills, ledger, market_data, orders, predictions, signals
from quorum.events.base import (
    Envelope,
    Payload,
    UndecodableMessage,
    decode,
    new_envelope,
    payload_class,
    registered_types,
)

__all__ = [
    "Envelope",
    "Payload",
    "UndecodableMessage",
    "audit",
    "control",
    "decode",
    "features",
    "fills",
    "ledger",
    "market_data",
    "new_envelope",
    "orders",
    "payload_class",
    "predictions",
    "registered_types",
    "signals",
]
