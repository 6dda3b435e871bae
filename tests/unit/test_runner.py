"""The in-process runner: the services' decisions wired together, deterministic across processes, routed by
the topology; and the replay's comparison."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from quorum.backtest.bus import matches
from quorum.backtest.config import RunnerConfig
from quorum.backtest.replay import differences, from_run
from quorum.backtest.runner import Runner
from quorum.events.fills import OrderFilled
from quorum.events.orders import SubmitOrder
from quorum.events.signals import DecisionMade
from quorum.marketdata.files import candles, infer_series, read_rows
from quorum.marketdata.validation import Rejections

from tests.support import data_file

SOLO_RSI = {"council": {"mode": "SOLO", "solo_strategy": "rsi"}}
DIGEST = """
import hashlib, sys
from tests.unit.test_runner import digest, stream
print(digest(int(sys.argv[1])))
"""


def stream(n: int) -> list:
    path = data_file("ohlcv", "binance_BTCUSDT_1h.csv")
    found = candles(read_rows(path), infer_series(path), now=datetime(2100, 1, 1, tzinfo=UTC), rejections=Rejections())
    return [c for _, c in zip(range(n), found, strict=False)]


def digest(n: int) -> str:
    recorder = Runner(RunnerConfig.from_env(**SOLO_RSI)).run(stream(n))
    return hashlib.sha256(b"\n".join(e.to_bytes() for e in recorder.envelopes)).hexdigest()


@pytest.fixture(scope="module")
def run() -> tuple[Runner, dict]:
    runner = Runner(RunnerConfig.from_env(**SOLO_RSI))
    recorder = runner.run(stream(340))
    return runner, {"recorder": recorder, "rows": from_run(recorder, runner)}


def test_every_candle_gets_one_decision_and_trades_go_through_venue_and_ledger(run: tuple[Runner, dict]) -> None:
    runner, out = run
    recorder = out["recorder"]
    assert len(recorder.of(DecisionMade)) == 340
    entries = [d for d in recorder.of(DecisionMade) if d.payload.intent.value == "ENTRY"]
    submitted = {s.payload.client_order_id: runner.oms_book.orders[s.payload.client_order_id].purpose
                 for s in recorder.of(SubmitOrder)}
    filled = {f.payload.client_order_id for f in recorder.of(OrderFilled)}
    assert entries and {"ENTRY", "STOP_LOSS", "TAKE_PROFIT"} <= set(submitted.values())
    assert any(submitted[c] == "STOP_LOSS" for c in filled)  # the protective stop of hour ~320 filled
    cash = runner.ledger_book.balances["paper:cash:USDT"]
    assert cash == runner.risk_book.cash + sum(p.reserved_cash for p in runner.risk_book.positions.values())
    assert runner.ignored == {}


def test_the_same_candles_give_the_same_events_bit_for_bit_in_another_process() -> None:
    here = digest(200)
    root = Path(__file__).resolve().parents[2]
    there = subprocess.run([sys.executable, "-c", DIGEST, "200"], cwd=root, capture_output=True, text=True,
                           timeout=300, check=True).stdout.strip()
    assert there == here


def test_a_replay_of_its_own_output_finds_no_difference_and_an_altered_fill_is_named(
        run: tuple[Runner, dict]) -> None:
    rows = run[1]["rows"]
    assert differences(rows, rows) == []
    altered = {**rows, "fills": [{**rows["fills"][0], "price": "1"}, *rows["fills"][1:]]}
    [found] = differences(rows, altered)
    assert (found["kind"], found["fields"]) == ("fills", ["price"])
    missing = {**rows, "decisions": rows["decisions"][1:]}
    assert [d["replayed"] for d in differences(rows, missing)] == [None]


@pytest.mark.parametrize(("pattern", "subject", "hit"), [
    ("quorum.md.candle.*.*.*", "quorum.md.candle.binance.BTC_USDT.1h", True),
    ("quorum.md.>", "quorum.md.candle.binance.BTC_USDT.1h", True),
    ("quorum.md.candle.*.*", "quorum.md.candle.binance.BTC_USDT.1h", False),
    ("quorum.venue.submit.paper.*", "quorum.venue.submit.live.x", False),
])
def test_subjects_match_like_nats(pattern: str, subject: str, hit: bool) -> None:
    assert matches(pattern, subject) is hit
