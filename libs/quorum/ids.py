"""Deterministic identifiers: the same input always yields the same id, so replays, redeliveries and
retries collapse onto one effect (NATS de-duplicates on the event id; inboxes and unique keys do the rest)."""

from __future__ import annotations

import hashlib
import uuid

QUORUM_NAMESPACE = uuid.UUID("5b0f6f1e-4a5e-4c8e-9a55-0c9d2b7e6a01")


def stable_uuid(*parts: object) -> uuid.UUID:
    """A UUIDv5 over the parts, joined unambiguously."""
    return uuid.uuid5(QUORUM_NAMESPACE, "\x1f".join(str(p) for p in parts))


def client_order_id(decision_id: uuid.UUID | str) -> str:
    """Client order id derived from the decision: one decision can never become two orders.

    32 characters, within Binance's 36-character limit for `newClientOrderId`.
    """
    digest = hashlib.sha256(f"order:{decision_id}".encode()).hexdigest()
    return f"Q{digest[:31]}"


def derived_order_id(kind: str, *parts: object) -> str:
    """Client order id of an order the OMS places on its own (``kind``: SL, TP, LIQ, ...), derived from what
    caused it, so a redelivered cause re-derives the same id and the venue sees one order."""
    digest = hashlib.sha256(":".join((kind, *map(str, parts))).encode()).hexdigest()
    return f"{kind[0]}{digest[:31]}"
