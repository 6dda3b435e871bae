"""The one place subjects are built. Services never write a subject string themselves.

Layout: ``quorum.<family>.<type>.<routing key>...`` e.g. ``quorum.md.candle_closed.binance.BTC-USDT.1h``.
Hierarchical, so a consumer filters on any prefix (``quorum.md.>``) or wildcard key (``*``).
"""

from __future__ import annotations

import re
from typing import Any

from quorum.events.base import Envelope, Payload

ROOT = "quorum"
_UNSAFE = re.compile(r"[\s.*>]")


def token(value: object) -> str:
    """A routing value as one subject token: '/' becomes '-', NATS separators and wildcards become '_'."""
    text = str(value).replace("/", "-")
    text = _UNSAFE.sub("_", text)
    if not text:
        raise ValueError("empty subject token")
    return text


def subject(cls: type[Payload], **keys: object) -> str:
    """Subject for a payload type; a routing key left out (or given as ``"*"``) becomes a wildcard.

    Unknown keys are an error so a typo cannot silently widen a filter.
    """
    unknown = set(keys) - set(cls.ROUTING)
    if unknown:
        raise ValueError(f"{cls.event_type()} has no routing keys {sorted(unknown)}")
    parts = [ROOT, cls.FAMILY, cls.topic()]
    for k in cls.ROUTING:
        v = keys.get(k, "*")
        parts.append("*" if v == "*" else token(v))
    return ".".join(parts)


def subject_of(envelope: Envelope[Any]) -> str:
    payload = envelope.payload
    return subject(type(payload), **payload.routing_values())


def family_wildcard(family: str) -> str:
    """All subjects of a family, for stream definitions."""
    return f"{ROOT}.{token(family)}.>"


def dead_letter(consumer: str) -> str:
    return f"{ROOT}.dlq.{token(consumer)}"


DEAD_LETTER_WILDCARD = family_wildcard("dlq")
