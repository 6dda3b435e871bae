"""Runner speed: candles/s of the whole pipeline in one process (features -> model -> council -> risk -> OMS ->
venue -> ledger) over real hourly candles, beside a bare Python loop over the same candles in the same run.

    .venv/bin/python bench/runner_throughput.py [--candles 8000] [--mode SOLO|COUNCIL] [--breakdown]

``--breakdown`` also times each consumer's handler (what it decides and the envelopes it emits); the rest is the
runner's own routing and the market events' envelopes. The timers add a little to the total.
"""

from __future__ import annotations

import argparse
import os
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from quorum.backtest.config import RunnerConfig
from quorum.backtest.replay import from_run
from quorum.backtest.runner import Runner
from quorum.marketdata.files import candles, infer_series, read_rows
from quorum.marketdata.validation import Rejections

DATA = Path(os.environ.get("QUORUM_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--candles", type=int, default=8000)
    ap.add_argument("--mode", default="SOLO", choices=["SOLO", "COUNCIL"])
    ap.add_argument("--file", type=Path, default=DATA / "ohlcv" / "binance_BTCUSDT_1h.csv")
    ap.add_argument("--breakdown", action="store_true", help="time each consumer's handler too")
    args = ap.parse_args()
    os.environ["QUORUM_COUNCIL_MODE"] = args.mode
    stream = list(candles(read_rows(args.file), infer_series(args.file), now=datetime(2100, 1, 1, tzinfo=UTC),
                          rejections=Rejections()))[:args.candles]
    n = len(stream)

    t = time.perf_counter()
    total = 0.0
    for c in stream:  # the floor: touch every candle once
        total += float(c.close)
    bare = time.perf_counter() - t

    runner = Runner(RunnerConfig.from_env())
    spent: dict[str, float] = defaultdict(float)
    if args.breakdown:
        runner._handlers = {durable: _timed(handler, durable, spent) for durable, handler in runner._handlers.items()}
    t = time.perf_counter()
    recorder = runner.run(stream)
    full = time.perf_counter() - t
    rows = from_run(recorder, runner)
    print(f"candles: {n} ({args.file.name}, council {args.mode})")
    print(f"bare loop: {n / bare:,.0f} candles/s")
    print(f"runner, full pipeline: {n / full:,.0f} candles/s ({full / n * 1e6:.0f} us/candle, "
          f"{n / bare / (n / full):,.0f}x the bare loop)")
    print(f"events: {len(recorder.envelopes)}; trades: {dict(Counter(d['intent'] for d in rows['decisions']))}; "
          f"orders: {len(rows['orders'])}; fills: {len(rows['fills'])}")
    if args.breakdown:
        for durable, seconds in sorted(spent.items(), key=lambda kv: -kv[1]):
            print(f"  {durable:22s} {seconds / n * 1e6:7.1f} us/candle")
        print(f"  {'(routing, market)':22s} {(full - sum(spent.values())) / n * 1e6:7.1f} us/candle")


def _timed(handler: Callable[[Any], None], durable: str, spent: dict[str, float]) -> Callable[[Any], None]:
    def timed(envelope: Any) -> None:
        t = time.perf_counter()
        handler(envelope)
        spent[durable] += time.perf_counter() - t
    return timed


if __name__ == "__main__":
    main()
