"""Benchmark: how long N real hourly candles take to travel through every service (separate processes) to a
council decision, on embedded NATS and PostgreSQL. Not a test.

    .venv/bin/python bench/slice_latency.py [--candles 300] [--pacing settled|free]

``settled`` (the default replay pacing) publishes a candle once everything the previous one caused is done, in
two phases: what it costs to be reproducible. ``free`` pipelines candles as fast as the bus takes them.
"""

from __future__ import annotations

import argparse
import io
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from quorum.devstack import SERVICES, Stack  # noqa: E402

from tests.support import run_sql  # noqa: E402

DATA = Path(os.environ.get("QUORUM_DATA_DIR", REPO.parent / "shared" / "data"))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--candles", type=int, default=300)
    p.add_argument("--pacing", choices=("settled", "free"), default="settled")
    args = p.parse_args()
    print("command:", shlex.join([".venv/bin/python", "bench/slice_latency.py", *sys.argv[1:]]))
    csv = DATA / "ohlcv" / "binance_BTCUSDT_1h.csv"
    stack = Stack.with_free_ports(Path(tempfile.mkdtemp()), log=io.StringIO(), durable=True, env={
        "QUORUM_ENVIRONMENT": "test", "QUORUM_MARKET_DATA_REPLAY_FILE": str(csv),
        "QUORUM_MARKET_DATA_REPLAY_LIMIT": str(args.candles), "QUORUM_MARKET_DATA_REPLAY_PACING": args.pacing})
    try:
        stack.start_infra()
        stack.prepare()
        stack.start_services(tuple(n for n in SERVICES if n != "market_data"))
        stack.wait_ready(120)
        started = time.perf_counter()
        stack.start_service("market_data")
        assert stack.database_url
        marks: dict[str, float] = {}
        for table in ("candles", "features", "predictions", "decisions"):
            while int(run_sql(stack.database_url, f"SELECT count(*) AS n FROM {table}")[0]["n"]) < args.candles:
                time.sleep(0.1)
            marks[table] = time.perf_counter() - started
        for table, t in marks.items():
            print(f"{args.candles} rows in {table:<12} after {t:6.2f} s")
        print(f"throughput to decisions: {args.candles / marks['decisions']:,.1f} candles/s through 9 processes "
              f"({args.pacing} pacing)")
    finally:
        stack.stop()


if __name__ == "__main__":
    main()
