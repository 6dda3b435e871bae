"""What a pure decision returns: the new state, the events to emit and the records to keep.

Every service's behaviour is ``decide(state, message) -> Outcome``: no I/O, no clock reads. The service adapter
loads the state from PostgreSQL, decides, then saves the state, writes the records and emits the events in one
transaction; the in-process runner (``quorum.backtest``) does the same with in-memory state. Both therefore
produce the same events from the same inputs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar

S = TypeVar("S")


@dataclass(frozen=True)
class Emit:
    """An event to publish: its payload, the key that makes its id unique among the events its cause emits
    (None when it is the only one of its type), and its market time (None: the cause's)."""

    payload: Any
    key: object = None
    event_time: datetime | None = None


@dataclass(frozen=True)
class Audit:
    """A significant system action for the audit trail (who, what, mode, risk profile)."""

    actor: str
    action: str
    mode: str
    risk_profile: str
    status: str
    details: dict[str, Any]
    key: str


@dataclass(frozen=True)
class Outcome(Generic[S]):
    state: S
    events: tuple[Emit, ...] = ()
    records: tuple[Any, ...] = field(default=())  # rows the store keeps beside the state (checks, history, audits)

    def then(self, other: Outcome[S]) -> Outcome[S]:
        """This outcome followed by ``other`` (computed from this one's state)."""
        return Outcome(other.state, self.events + other.events, self.records + other.records)


def unchanged(state: S) -> Outcome[S]:
    return Outcome(state)
