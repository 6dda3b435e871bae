"""The operator metrics follow from committed events and from the owners' state, once, with bounded labels."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from prometheus_client import REGISTRY
from quorum import telemetry
from quorum.clock import TestClock
from quorum.events.base import new_envelope
from quorum.events.signals import DecisionMade, Vote
from quorum.risk.book import RiskBook, RiskPosition
from quorum.risk.decide import RiskParams
from quorum.risk.profiles import RiskConfig
from quorum.types import Action, CouncilMode, Side

from tests.unit.helpers import T0, candle, fill


def value(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


def envelope(payload, clock, caused_by=None):  # type: ignore[no-untyped-def]
    return new_envelope(payload, clock=clock, source="test", caused_by=caused_by,
                        key=None if caused_by else "k")


def test_a_fill_counts_its_value_and_fee_and_its_slippage_against_the_mid_at_arrival() -> None:
    clock = TestClock(T0)
    before = value("quorum_fill_slippage_bps_count", symbol="SLIP/USDT", side="BUY") or 0.0

    telemetry.observe_committed("matching", [envelope(fill(symbol="SLIP/USDT", quantity=Decimal("2"),
                                                           price=Decimal("101"), fee=Decimal("0.5"),
                                                           arrival_mid=Decimal("100")), clock)])

    assert value("quorum_fill_slippage_bps_count", symbol="SLIP/USDT", side="BUY") == before + 1
    assert value("quorum_fill_slippage_bps_signed_sum", symbol="SLIP/USDT", side="BUY") == pytest.approx(100.0)
    assert value("quorum_fills_quote_total", symbol="SLIP/USDT", side="BUY") == pytest.approx(202.0)
    assert value("quorum_fees_quote_total", symbol="SLIP/USDT", currency="USDT") == pytest.approx(0.5)


def test_slippage_is_positive_when_the_fill_is_worse_for_us_on_either_side() -> None:
    assert telemetry.slippage_bps(Side.BUY, Decimal("100.5"), Decimal("100")) == pytest.approx(50.0)
    assert telemetry.slippage_bps(Side.SELL, Decimal("99.5"), Decimal("100")) == pytest.approx(50.0)
    assert telemetry.slippage_bps(Side.SELL, Decimal("100.5"), Decimal("100")) == pytest.approx(-50.0)


def test_a_decision_counts_its_action_votes_filtered_votes_and_agreement() -> None:
    clock = TestClock(T0)
    votes = (Vote(strategy="tel_a", producer="technical", risk_tag="low", action=Action.BUY, confidence=0.8,
                  weight=1.0),
             Vote(strategy="tel_b", producer="model", risk_tag="high", action=Action.SELL, confidence=0.6,
                  weight=1.0, eligible=False, filtered_reason="PROFILE_FILTER: high risk"))
    d = DecisionMade(exchange="binance", symbol="TEL/USDT", timeframe="1h", ts=T0, mode=CouncilMode.COUNCIL,
                     action=Action.BUY, confidence=0.8, threshold=0.6, agreement={Action.BUY: 0.75},
                     votes=votes, feature_set="fs", price=Decimal("100"))

    telemetry.observe_committed("council", [envelope(d, clock)])

    assert value("quorum_council_decisions_total", symbol="TEL/USDT", action="BUY", mode="COUNCIL") == 1
    assert value("quorum_council_votes_total", strategy="tel_a", action="BUY") == 1
    assert value("quorum_council_votes_filtered_total", strategy="tel_b", reason="PROFILE_FILTER") == 1
    assert value("quorum_council_threshold_ratio", symbol="TEL/USDT") == 0.6
    assert value("quorum_council_agreement_ratio_sum", symbol="TEL/USDT") == 0.75


def test_pipeline_latency_runs_from_the_first_message_of_the_chain_to_the_stage_event() -> None:
    clock = TestClock(T0)
    first = envelope(candle(), clock)
    clock.advance(timedelta(seconds=3))
    d = DecisionMade(exchange="binance", symbol="BTC/USDT", timeframe="1h", ts=T0, mode=CouncilMode.SOLO,
                     action=Action.HOLD, confidence=0.1, threshold=0.5, votes=(), feature_set="fs",
                     price=Decimal("100"))
    decided = envelope(d, clock, caused_by=first)
    before = value("quorum_pipeline_latency_seconds_sum", stage="decision") or 0.0

    telemetry.observe_committed("council", [decided])

    assert decided.origin_time == first.ingest_time
    assert value("quorum_pipeline_latency_seconds_sum", stage="decision") == pytest.approx(before + 3.0)


def test_risk_book_shows_exposure_per_symbol_and_cluster_and_the_profile_limits() -> None:
    params = RiskParams(config=RiskConfig(clusters={"TELX": "majors-tel"}))
    pos = RiskPosition("binance", "TELX/USDT", quantity=Decimal("2"), cost=Decimal("180"), last_price=Decimal("100"))
    book = RiskBook(cash=Decimal("800"), positions={pos.key: pos})

    telemetry.risk_book(book, params)

    assert value("quorum_risk_exposure_quote", symbol="TELX/USDT") == 200
    assert value("quorum_risk_cluster_exposure_quote", cluster="majors-tel") == 200
    assert value("quorum_risk_equity_quote") == 1000
    limits = params.config.profiles[params.default_profile]
    assert value("quorum_risk_drawdown_limit_ratio") == pytest.approx(float(limits.max_drawdown_pct) / 100)
    assert value("quorum_risk_exposure_limit_quote", scope="total") == pytest.approx(
        float(limits.max_total_exposure.amount(Decimal(1000))))
    assert value("quorum_risk_profile_active", profile=params.default_profile.value) == 1


@pytest.mark.parametrize(("p_up", "bucket"), [(0.0, "0.0-0.1"), (0.55, "0.5-0.6"), (0.999, "0.9-1.0"),
                                              (1.0, "0.9-1.0")])
def test_calibration_buckets_are_tenths(p_up: float, bucket: str) -> None:
    assert telemetry.calibration_bucket(p_up) == bucket


def test_proposal_outcomes_and_halt_state_start_at_zero_in_their_owning_service() -> None:
    telemetry.preset("oms")
    telemetry.preset("risk")

    assert value("quorum_proposals_total", outcome="expired") is not None
    assert value("quorum_risk_halted", kind="emergency") is not None
