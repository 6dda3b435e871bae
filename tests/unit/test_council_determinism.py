"""A recorded input sequence always yields the same decisions: across runs, across a JSON round trip of the
configuration, and whatever else ran before in the process."""

from __future__ import annotations

import json
from functools import cache

from quorum.council.base import FeatureRow, PredictionView
from quorum.council.engine import Council, SymbolControl
from quorum.council.simulate import Simulation, feature_history, simulate
from quorum.council.strategies import default_strategies, parse_strategies
from quorum.domain.models import MomentumBaseline
from quorum.indicators import FeatureSetSpec
from quorum.marketdata.files import read_rows
from quorum.types import Action, CouncilMode

from tests.support import data_file

MODEL = MomentumBaseline()


@cache
def history() -> tuple[FeatureRow, ...]:
    return tuple(feature_history(read_rows(data_file("ohlcv", "binance_BTCUSDT_1h.csv")).head(1500),
                                 FeatureSetSpec()))


def predict(row: FeatureRow) -> tuple[PredictionView, ...]:
    return (PredictionView(MODEL.name, MODEL.version, 1, MODEL.predict(row.values)),)


def run(council: Council, control: SymbolControl = SymbolControl()) -> Simulation:
    return simulate(council, history(), predict=predict, control=control)


def fingerprint(sim: Simulation) -> list[tuple[object, ...]]:
    return [(o.action, o.intent, o.fraction, o.confidence, o.reason_codes, tuple(sorted(o.agreement.items())),
             tuple((v.strategy.name, v.signal, v.eligible) for v in o.votes), o.campaign) for o in sim.outcomes]


def test_the_same_recorded_sequence_gives_the_same_decisions_and_campaigns() -> None:
    first = run(Council(default_strategies()))
    config = json.dumps([s.model_dump(mode="json") for s in default_strategies()])
    second = run(Council(parse_strategies(config)))

    assert fingerprint(first) == fingerprint(second)
    assert first.closed == second.closed
    assert len(first.closed) >= 1, "1,500 real hours should complete at least one campaign"
    assert {o.action for o in first.outcomes} == {Action.BUY, Action.SELL, Action.HOLD}


def test_off_mode_over_real_data_decides_nothing_but_sees_what_council_mode_would_do() -> None:
    council = Council(default_strategies())
    off, on = run(council, SymbolControl(CouncilMode.OFF)), run(council)

    assert {o.action for o in off.outcomes} == {Action.HOLD} and off.closed == []
    assert any(o.reason_codes[1] == "WOULD_BUY" for o in off.outcomes)
    assert [o.agreement for o in off.outcomes[:50]] == [o.agreement for o in on.outcomes[:50]]
