"""Benchmark: the pure council (7 default strategies + campaign management) over real hourly candles, and what
each consensus threshold would have done with idealised fills at the close. Not a test.

    .venv/bin/python bench/council_bench.py [--symbol BTCUSDT] [--candles 8000] [--thresholds 0.3,0.4,0.5]

Features are computed in batch first (not timed); the timed part is ``Council.decide`` + the campaign fold per
candle, i.e. the council service's work minus the database. Returns are per campaign on the quote spent, after
a 0.1% fee each way; they are a sanity check of the exit logic, not a strategy claim.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "libs"))

from quorum.council.base import FeatureRow, PredictionView  # noqa: E402
from quorum.council.engine import Council, SymbolControl  # noqa: E402
from quorum.council.simulate import feature_history, simulate  # noqa: E402
from quorum.council.strategies import default_strategies  # noqa: E402
from quorum.domain.models import MomentumBaseline  # noqa: E402
from quorum.indicators import FeatureSetSpec  # noqa: E402
from quorum.marketdata.files import read_rows  # noqa: E402
from quorum.types import CouncilMode, Intent, RiskProfile  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--symbol", default="BTCUSDT")
    ap.add_argument("--candles", type=int, default=8000)
    ap.add_argument("--thresholds", default="0.3,0.4,0.5")
    ap.add_argument("--profile", default="MEDIUM", choices=[p.value for p in RiskProfile])
    args = ap.parse_args()
    data = Path(os.environ.get("QUORUM_DATA_DIR", REPO.parent / "shared" / "data"))
    csv = data / "ohlcv" / f"binance_{args.symbol}_1h.csv"
    if not csv.exists():
        sys.exit(f"no data at {csv} (set QUORUM_DATA_DIR)")
    rows = feature_history(read_rows(csv).head(args.candles), FeatureSetSpec())
    model = MomentumBaseline()

    def predict(row: FeatureRow) -> tuple[PredictionView, ...]:
        return (PredictionView(model.name, model.version, 1, model.predict(row.values)),)

    council = Council(default_strategies())
    print(f"{len(rows)} hourly {args.symbol} candles, {len(council.strategies)} strategies, profile {args.profile}")
    print(f"{'mode':<8}{'threshold':>10}{'decisions/s':>13}{'campaigns':>11}{'win %':>7}{'mean ret %':>12}"
          f"{'partials':>10}{'re-entries':>12}{'de-risks':>10}")
    runs = [(CouncilMode.COUNCIL, float(t)) for t in args.thresholds.split(",")] + [(CouncilMode.SOLO, 0.4)]
    for mode, threshold in runs:
        control = SymbolControl(mode, threshold, "rsi")
        t0 = time.perf_counter()
        sim = simulate(council, rows, predict=predict, control=control, profile=RiskProfile(args.profile))
        elapsed = time.perf_counter() - t0
        rets = [c.return_ for c in sim.closed]
        intents = [o.intent for o in sim.outcomes]
        win = 100 * sum(r > 0 for r in rets) / len(rets) if rets else float("nan")
        mean = 100 * statistics.mean(rets) if rets else float("nan")
        label = mode.value if mode is CouncilMode.COUNCIL else "SOLO rsi"
        print(f"{label:<8}{threshold:>10.2f}{len(rows) / elapsed:>13,.0f}{len(rets):>11}{win:>7.1f}{mean:>12.2f}"
              f"{intents.count(Intent.TAKE_PROFIT):>10}{intents.count(Intent.REENTRY):>12}"
              f"{intents.count(Intent.DERISK):>10}")


if __name__ == "__main__":
    main()
