"""Every event type stored in a stream is either read by a durable consumer or declared unread, with a reason;
so a new event nobody consumes is a decision someone wrote down, not an accident."""

from __future__ import annotations

import pytest
from quorum.events import registered_types
from quorum.subjects import subject
from quorum.topology import TOPOLOGY, subjects_overlap

STORED = {name: subject(cls) for name, cls in registered_types().items()
          if any(subjects_overlap(p, subject(cls)) for s in TOPOLOGY.streams for p in s.subjects)}
DECLARED = dict(TOPOLOGY.consumed_by_none_reason)


def test_every_stored_event_type_is_consumed_or_declared_unconsumed_with_a_reason() -> None:
    undeclared = sorted(n for n, subj in STORED.items() if not TOPOLOGY.readers(subj) and n not in DECLARED)
    assert undeclared == [], f"no durable consumer reads {undeclared}: consume them or declare why not in topology"


@pytest.mark.parametrize("name", sorted(DECLARED))
def test_a_declared_unconsumed_type_exists_has_a_reason_and_really_has_no_reader(name: str) -> None:
    assert name in STORED, f"{name} is declared unconsumed but no stream stores such an event"
    assert len(DECLARED[name]) > 20
    assert TOPOLOGY.readers(STORED[name]) == (), f"{name} is consumed now: drop it from consumed_by_none_reason"


def test_declarations_are_not_repeated() -> None:
    names = [n for n, _ in TOPOLOGY.consumed_by_none_reason]
    assert len(names) == len(set(names))


@pytest.mark.parametrize(("a", "b", "expected"), [
    ("quorum.md.>", "quorum.md.candle_closed.*.*.*", True),
    ("quorum.venue.submit_order.paper.*", "quorum.venue.submit_order.*.*", True),
    ("quorum.venue.submit_order.paper.*", "quorum.venue.submit_order.binance.*", False),
    ("quorum.control.halt_trading", "quorum.control.resume_trading", False),
    ("quorum.md.x", "quorum.md.x.y", False),
    ("quorum.md.*", "quorum.md", False),
])
def test_filters_overlap_when_some_subject_matches_both(a: str, b: str, expected: bool) -> None:
    assert subjects_overlap(a, b) is expected and subjects_overlap(b, a) is expected
