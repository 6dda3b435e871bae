"""Subjects are built one way, and the declared streams and consumers capture every one of them."""

from __future__ import annotations

from collections import Counter

import pytest
from helpers import T0, candle, fill
from quorum.clock import TestClock
from quorum.events import new_envelope, registered_types
from quorum.events.base import Payload
from quorum.events.control import HaltTrading
from quorum.events.ledger import TransactionPosted
from quorum.events.market_data import CandleClosed
from quorum.events.orders import CancelOrder, OrderIntentApproved, SubmitOrder
from quorum.subjects import dead_letter, family_wildcard, subject, subject_of, token
from quorum.topology import TOPOLOGY
from quorum.types import TradingMode

PAYLOAD_TYPES = sorted(registered_types().items())


def covers(pattern: str, filt: str) -> bool:
    """True when every concrete subject matched by ``filt`` is matched by NATS ``pattern``.

    ``*`` matches exactly one token, ``>`` one or more trailing tokens. A concrete subject covers only itself.
    """
    p, f = pattern.split("."), filt.split(".")
    for i, tok in enumerate(p):
        if tok == ">":
            return len(f) > i
        if i >= len(f) or f[i] == ">":
            return False
        if tok != "*" and tok != f[i]:
            return False
    return len(p) == len(f)


def streams_capturing(filt: str) -> list[str]:
    return [s.name for s in TOPOLOGY.streams if any(covers(p, filt) for p in s.subjects)]


def sample_subject(cls: type[Payload]) -> str:
    return subject(cls, **{k: "x" for k in cls.ROUTING})


# --- the matcher the topology tests rely on ------------------------------------------------------------

@pytest.mark.parametrize(("pattern", "filt", "expected"), [
    ("quorum.md.>", "quorum.md.candle_closed.binance", True),
    ("quorum.md.>", "quorum.md", False),
    ("quorum.md.>", "quorum.mdx.candle_closed", False),
    ("quorum.*.x", "quorum.md.x", True),
    ("quorum.*", "quorum.md.x", False),
    ("quorum.md.x", "quorum.md.x", True),
    ("quorum.md.x", "quorum.md.*", False),
    ("quorum.md.*", "quorum.md.*", True),
    ("quorum.md.*", "quorum.md.>", False),
    ("quorum.>", "quorum.md.>", True),
    ("quorum.md.x.y", "quorum.md.x", False),
])
def test_wildcard_matcher_follows_nats_semantics(pattern: str, filt: str, expected: bool) -> None:
    assert covers(pattern, filt) is expected


# --- subject construction -------------------------------------------------------------------------------

def test_subject_is_root_family_snake_type_then_routing_keys_in_declared_order() -> None:
    s = subject(CandleClosed, timeframe="1h", symbol="BTC/USDT", exchange="binance")

    assert s == "quorum.md.candle_closed.binance.BTC-USDT.1h"


def test_multi_word_type_names_become_snake_case_tokens() -> None:
    assert subject(OrderIntentApproved, exchange="binance", symbol="ETH/USDT") == \
        "quorum.orders.order_intent_approved.binance.ETH-USDT"


def test_type_without_routing_keys_has_a_three_token_subject() -> None:
    assert subject(HaltTrading) == "quorum.control.halt_trading"


@pytest.mark.parametrize(("value", "expected"), [
    ("BTC/USDT", "BTC-USDT"),
    ("a.b", "a_b"),
    ("a*b", "a_b"),
    ("a>b", "a_b"),
    (">", "_"),
    ("a b", "a_b"),
    ("a\tb\nc", "a_b_c"),
    ("x/y.z w", "x-y_z_w"),
])
def test_routing_values_are_sanitised_into_one_safe_token(value: str, expected: str) -> None:
    assert token(value) == expected
    assert subject(SubmitOrder, venue=value, symbol="BTC/USDT") == f"quorum.venue.submit_order.{expected}.BTC-USDT"


def test_empty_routing_value_is_refused() -> None:
    with pytest.raises(ValueError, match="empty"):
        subject(SubmitOrder, venue="", symbol="BTC/USDT")


def test_omitted_routing_keys_become_single_token_wildcards() -> None:
    assert subject(CandleClosed) == "quorum.md.candle_closed.*.*.*"
    assert subject(CandleClosed, symbol="BTC/USDT") == "quorum.md.candle_closed.*.BTC-USDT.*"
    assert subject(CandleClosed, exchange="*", symbol="*", timeframe="1m") == "quorum.md.candle_closed.*.*.1m"


def test_unknown_routing_key_is_refused_rather_than_widening_the_filter() -> None:
    with pytest.raises(ValueError, match="symbl"):
        subject(CandleClosed, exchange="binance", symbl="BTC/USDT")


def test_subject_of_an_envelope_uses_the_payload_routing_values() -> None:
    clock = TestClock(T0)

    assert subject_of(new_envelope(candle(), clock=clock, source="md", key=1)) == \
        "quorum.md.candle_closed.binance.BTC-USDT.1h"
    assert subject_of(new_envelope(fill(), clock=clock, source="matching", key=1)) == \
        "quorum.fills.order_filled.paper.BTC-USDT"


def test_enum_routing_values_render_as_their_value() -> None:
    assert subject(TransactionPosted, mode=TradingMode.PAPER) == "quorum.ledger.transaction_posted.PAPER"


# --- streams ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "cls"), PAYLOAD_TYPES, ids=[n for n, _ in PAYLOAD_TYPES])
def test_every_payload_subject_is_captured_by_exactly_one_stream(name: str, cls: type[Payload]) -> None:
    captured = streams_capturing(sample_subject(cls))

    assert len(captured) == 1, f"{name}: {sample_subject(cls)} captured by {captured}"


@pytest.mark.parametrize(("name", "cls"), PAYLOAD_TYPES, ids=[n for n, _ in PAYLOAD_TYPES])
def test_every_payload_type_filter_is_wholly_inside_one_stream(name: str, cls: type[Payload]) -> None:
    assert len(streams_capturing(subject(cls))) == 1


def test_stream_names_are_unique() -> None:
    names = Counter(s.name for s in TOPOLOGY.streams)

    assert [n for n, c in names.items() if c > 1] == []


def test_every_stream_keeps_messages_and_deduplicates() -> None:
    for s in TOPOLOGY.streams:
        assert s.subjects and s.max_age_s > 0 and s.duplicate_window_s > 0, s.name


# --- consumers -------------------------------------------------------------------------------------------

CONSUMERS = {c.durable: c for c in TOPOLOGY.consumers}


@pytest.mark.parametrize("durable", CONSUMERS)
def test_consumer_filters_are_captured_by_its_own_stream_only(durable: str) -> None:
    c = CONSUMERS[durable]

    assert c.stream in {s.name for s in TOPOLOGY.streams}
    assert c.filters
    for filt in c.filters:
        assert streams_capturing(filt) == [c.stream], f"{durable}: {filt}"


@pytest.mark.parametrize("durable", CONSUMERS)
def test_each_consumer_filter_selects_exactly_one_payload_type(durable: str) -> None:
    for filt in CONSUMERS[durable].filters:
        selected = [name for name, cls in PAYLOAD_TYPES if covers(subject(cls), filt)]
        assert len(selected) == 1, f"{durable}: {filt} selects {selected}"


def test_durable_names_are_unique() -> None:
    durables = Counter(c.durable for c in TOPOLOGY.consumers)

    assert [d for d, n in durables.items() if n > 1] == []


@pytest.mark.parametrize("durable", CONSUMERS)
def test_consumer_bounds_redelivery_and_waits_for_acks(durable: str) -> None:
    c = CONSUMERS[durable]

    assert c.max_deliver >= 2  # at least one retry before the dead-letter queue
    assert c.ack_wait_s > 0
    assert c.max_ack_pending > 0


def test_paper_matching_consumes_only_paper_venue_orders() -> None:
    filters = TOPOLOGY.consumer("matching-orders").filters

    for command in (SubmitOrder, CancelOrder):
        assert any(covers(f, subject(command, venue="paper", symbol="BTC/USDT")) for f in filters)
        assert not any(covers(f, subject(command, venue="binance", symbol="BTC/USDT")) for f in filters)


def test_looking_up_an_undeclared_consumer_fails_loudly() -> None:
    with pytest.raises(KeyError, match="not declared"):
        TOPOLOGY.consumer("no-such-consumer")


def test_consumers_of_a_service_are_exactly_those_it_declares() -> None:
    services = {c.service for c in TOPOLOGY.consumers}

    assert sum(len(TOPOLOGY.consumers_of(s)) for s in services) == len(TOPOLOGY.consumers)
    assert {c.durable for c in TOPOLOGY.consumers_of("risk")} == {
        "risk-decisions", "risk-orders", "risk-control", "risk-candles"}


# --- dead letters ----------------------------------------------------------------------------------------

def test_dead_letter_subjects_fall_into_the_dlq_stream() -> None:
    assert "DLQ" in {s.name for s in TOPOLOGY.streams}
    assert dead_letter("x") == "quorum.dlq.x"
    assert streams_capturing(dead_letter("x")) == ["DLQ"]


@pytest.mark.parametrize("durable", CONSUMERS)
def test_every_consumer_has_a_dead_letter_subject_in_the_dlq_only(durable: str) -> None:
    assert streams_capturing(dead_letter(durable)) == ["DLQ"]


def test_family_wildcard_captures_all_types_of_that_family() -> None:
    assert family_wildcard("md") == "quorum.md.>"
    assert covers(family_wildcard("md"), sample_subject(CandleClosed))
    assert not covers(family_wildcard("md"), sample_subject(HaltTrading))
