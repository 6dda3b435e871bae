"""The envelope and payload contract: lossless JSON, immutability, deterministic ids, loud decoding."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from helpers import T0, candle, fill
from pydantic import ValidationError
from quorum.clock import TestClock
from quorum.events import Envelope, UndecodableMessage, decode, new_envelope, registered_types
from quorum.events.ledger import Posting, TransactionPosted
from quorum.events.market_data import CandleClosed
from quorum.events.orders import OrderIntentApproved, OrderIntentRefused
from quorum.types import Side, TradingMode

CLOCK = TestClock(T0 + timedelta(hours=1, seconds=3))
COMMANDS = {"SubmitOrder", "CancelOrder", "SetOperatingMode", "ApproveProposal", "RejectProposal",
            "EngageKillSwitch", "ReleaseKillSwitch", "ClearEmergencyHalt", "CancelAllOrders", "CloseAllPositions",
            "HaltTrading", "ResumeTrading", "AuthorizeRouting", "DisconnectRouting", "StartBackfill",
            "SetCouncilMode", "SetRiskProfile", "ShutdownService", "SelectModel", "StartTraining",
            "ActivateCouncilConfiguration", "PromoteModel", "RollBackModel"}
IRREGULAR_PAST_PARTICIPLES = {"Made"}  # DecisionMade, PredictionMade


def root(payload: Any = None, key: object = "binance|BTC/USDT|1h|2024-01-01T00:00Z", **kw: Any) -> Envelope[Any]:
    return new_envelope(candle() if payload is None else payload, clock=CLOCK, source="market-data",
                        event_time=T0, key=key, **kw)


def child(cause: Envelope[Any], payload: Any = None, **kw: Any) -> Envelope[Any]:
    return new_envelope(fill() if payload is None else payload, clock=CLOCK, source="matching", caused_by=cause,
                        **kw)


def ledger_txn() -> TransactionPosted:
    return TransactionPosted(
        txn_id=uuid.UUID(int=7), mode=TradingMode.PAPER, ts=T0, description="fill f-1",
        postings=(Posting(account="paper:cash:USDT", currency="USDT", amount=Decimal("-1004.867766000")),
                  Posting(account="paper:trading:USDT", currency="USDT", amount=Decimal("1004.867766000"))),
    )


# --- round trip ---------------------------------------------------------------------------------------

ENVELOPES: dict[str, Callable[[], Envelope[Any]]] = {
    "candle-root": lambda: root(),
    "fill-caused": lambda: child(root()),
    "ledger-nested-postings": lambda: child(child(root()), ledger_txn()),
}


@pytest.mark.parametrize("make", ENVELOPES.values(), ids=ENVELOPES.keys())
def test_envelope_round_trips_through_decode_with_every_field_equal(make: Callable[[], Envelope[Any]]) -> None:
    original = make()
    decoded = decode(original.to_bytes())

    assert type(decoded.payload) is type(original.payload)
    assert decoded == original
    for name in Envelope.model_fields:
        assert getattr(decoded, name) == getattr(original, name), name


def test_decimal_values_survive_the_round_trip_digit_for_digit() -> None:
    decoded = decode(root().to_bytes()).payload

    # str() compares the digits themselves: trailing zeros and 18 decimals must not be lost to a float
    assert [str(decoded.open), str(decoded.high), str(decoded.close), str(decoded.volume)] == [
        "60000.10", "60100.00", "60050.5", "1.234567890123456789"]
    assert all(isinstance(v, Decimal) for v in (decoded.open, decoded.high, decoded.low, decoded.volume))


def test_nested_posting_amounts_round_trip_exactly() -> None:
    decoded = decode(child(root(), ledger_txn()).to_bytes()).payload

    assert [str(p.amount) for p in decoded.postings] == ["-1004.867766000", "1004.867766000"]


def test_decimals_travel_as_json_strings_not_floats() -> None:
    raw = json.loads(root().to_bytes())

    assert raw["payload"]["volume"] == "1.234567890123456789"


# --- immutability and strict shape --------------------------------------------------------------------

def test_payload_fields_cannot_be_reassigned() -> None:
    c = candle()
    with pytest.raises(ValidationError, match="frozen"):
        c.close = Decimal("1")  # type: ignore[misc]
    assert c.close == Decimal("60050.5")


def test_envelope_fields_cannot_be_reassigned() -> None:
    env = root()
    with pytest.raises(ValidationError, match="frozen"):
        env.source = "someone-else"  # type: ignore[misc]


def test_payload_rejects_an_unknown_field() -> None:
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        candle(vwap=Decimal("60000"))


# --- deterministic ids and causality ------------------------------------------------------------------

def test_root_envelope_id_depends_on_type_and_key_only_not_on_time() -> None:
    later = new_envelope(candle(), clock=TestClock(T0 + timedelta(days=3)), source="replayer", key="k")
    now = new_envelope(candle(), clock=CLOCK, source="market-data", key="k")

    assert later.event_id == now.event_id
    assert root(key="k2").event_id != now.event_id


def test_same_cause_type_and_key_give_the_same_id() -> None:
    cause = root()

    assert child(cause, key="f-1").event_id == child(cause, key="f-1").event_id
    assert child(cause).event_id == child(cause).event_id


def test_a_different_key_gives_a_different_id() -> None:
    cause = root()

    assert child(cause, key="f-1").event_id != child(cause, key="f-2").event_id
    assert child(cause, key="f-1").event_id != child(cause).event_id


def test_a_different_cause_gives_a_different_id() -> None:
    assert child(root(key="a")).event_id != child(root(key="b")).event_id


def test_different_payload_types_from_one_cause_get_different_ids() -> None:
    cause = root()
    common = dict(decision_id=uuid.UUID(int=1), exchange="binance", symbol="BTC/USDT", side=Side.BUY)
    approved = OrderIntentApproved(**common, quantity=Decimal("0.01"), reference_price=Decimal("60000"),
                                   reference_ts=T0)
    refused = OrderIntentRefused(**common, reason_code="HALTED")

    assert child(cause, approved).event_id != child(cause, refused).event_id


def test_a_root_envelope_is_its_own_correlation_and_has_no_cause() -> None:
    env = root()

    assert env.correlation_id == env.event_id
    assert env.causation_id is None


def test_correlation_id_propagates_down_the_causal_chain() -> None:
    first = root()
    second = child(first)
    third = child(second, ledger_txn())

    assert (second.correlation_id, second.causation_id) == (first.event_id, first.event_id)
    assert (third.correlation_id, third.causation_id) == (first.event_id, second.event_id)
    assert len({first.event_id, second.event_id, third.event_id}) == 3


def test_envelope_without_cause_or_key_is_refused() -> None:
    with pytest.raises(ValueError, match="cause or a deterministic key"):
        new_envelope(candle(), clock=CLOCK, source="market-data")


def test_envelope_records_type_version_and_times() -> None:
    env = root()

    assert (env.event_type, env.schema_version, env.source) == ("CandleClosed", 1, "market-data")
    assert (env.event_time, env.ingest_time) == (T0, CLOCK.now())


# --- decoding defects ---------------------------------------------------------------------------------

def _mutated(edit: Callable[[dict[str, Any]], None]) -> bytes:
    raw = json.loads(root().to_bytes())
    edit(raw)
    return json.dumps(raw).encode()


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(raw: dict[str, Any]) -> None:
        *parents, leaf = path.split(".")
        for p in parents:
            raw = raw[p]
        raw[leaf] = value
    return edit


BAD_MESSAGES: dict[str, tuple[bytes, str]] = {
    "binary-garbage": (b"\xff\xfe\x00garbage", "not JSON"),
    "truncated-json": (root().to_bytes()[:-5], "not JSON"),
    "json-array": (b"[1, 2, 3]", "missing event_type"),
    "no-event-type": (_mutated(lambda raw: raw.pop("event_type")), "missing event_type"),
    "event-type-not-a-string": (_mutated(_set("event_type", 42)), "missing event_type"),
    "unknown-event-type": (_mutated(_set("event_type", "CandleOpened")), "unknown event type 'CandleOpened'"),
    "future-schema-version": (_mutated(_set("schema_version", 2)), "schema version 2 unsupported"),
    "missing-schema-version": (_mutated(lambda raw: raw.pop("schema_version")), "schema version None unsupported"),
    "high-below-low": (_mutated(_set("payload.high", "59000")), "high < low"),
    "negative-price": (_mutated(_set("payload.low", "-1")), "must be > 0"),
    "nan-price": (_mutated(_set("payload.close", "NaN")), "finite number"),
    "infinite-volume": (_mutated(_set("payload.volume", "Infinity")), "finite number"),
    "naive-payload-datetime": (_mutated(_set("payload.ts", "2024-01-01T00:00:00")), "timezone"),
    "naive-envelope-datetime": (_mutated(_set("event_time", "2024-01-01T00:00:00")), "timezone"),
    "unknown-payload-field": (_mutated(_set("payload.vwap", "1")), "Extra inputs are not permitted"),
    "bad-symbol": (_mutated(_set("payload.symbol", "btcusdt")), "payload.symbol"),
    "bad-event-id": (_mutated(_set("event_id", "not-a-uuid")), "event_id"),
}


@pytest.mark.parametrize(("data", "reason"), BAD_MESSAGES.values(), ids=BAD_MESSAGES.keys())
def test_decode_refuses_a_defective_message_and_says_why(data: bytes, reason: str) -> None:
    with pytest.raises(UndecodableMessage, match=re.escape(reason)):
        decode(data)


def test_an_invalid_payload_names_the_event_type_in_the_error() -> None:
    with pytest.raises(UndecodableMessage, match=r"^invalid CandleClosed"):
        decode(BAD_MESSAGES["high-below-low"][0])


def test_undecodable_message_is_a_value_error_so_generic_handlers_catch_it() -> None:
    assert issubclass(UndecodableMessage, ValueError)


# --- the registry: events are facts, commands are requests --------------------------------------------

PARTICLES = {"Back"}  # a phrasal verb's particle: ModelRolledBack reads as a fact by "Rolled"


def _last_word(name: str) -> str:
    words = re.findall(r"[A-Z][a-z]*", name)
    return words[-2] if words[-1] in PARTICLES and len(words) > 1 else words[-1]


def test_commands_are_exactly_the_imperative_requests() -> None:
    commands = {name for name, cls in registered_types().items() if cls.KIND == "command"}

    assert commands == COMMANDS


@pytest.mark.parametrize("name", sorted(set(registered_types()) - COMMANDS))
def test_every_non_command_is_an_event_named_in_the_past_tense(name: str) -> None:
    cls = registered_types()[name]
    last = _last_word(name)

    assert cls.KIND == "event"
    assert last.endswith("ed") or last in IRREGULAR_PAST_PARTICIPLES, f"{name} does not read as a fact"


@pytest.mark.parametrize("name", sorted(registered_types()))
def test_registered_name_is_the_class_name_and_resolves_back(name: str) -> None:
    cls = registered_types()[name]

    assert cls.event_type() == cls.__name__ == name
    assert cls.FAMILY and cls.SCHEMA_VERSION >= 1


def test_registry_covers_every_family_module() -> None:
    families = {cls.FAMILY for cls in registered_types().values()}

    assert families == {"audit", "control", "council", "features", "fills", "ledger", "md", "orders",
                        "predictions", "venue"}
    assert registered_types()["CandleClosed"] is CandleClosed
