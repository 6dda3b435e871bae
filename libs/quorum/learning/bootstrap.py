"""No untrained first start: when the registry has no champion yet, ``quorum dev`` trains one from the shared data
before the services start (a progress bar, about half a minute) and makes it champion, so inference serves a
trained model from its first candle. The built-in baseline stays selectable (``SelectModel baseline-momentum@1``)
as the yardstick.

The first champion is promoted without beating one (there is none) and whatever its gate verdict (the seed's
gates, 500 trades and a Sharpe of 2, are not met by any model on this data): its ``promotion`` tag keeps the
failed checks, and later challengers must beat it through the full promotion gate.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

from quorum.clock import Clock, LiveClock
from quorum.learning.dataset import DatasetSpec
from quorum.learning.families import ModelSpec
from quorum.learning.promotion import CHAMPION
from quorum.learning.registry import ModelVersionInfo, Registry, UnknownModelError
from quorum.learning.train import Progress, TrainingRequest, train

MODEL_NAME = "quorum-global"
SYMBOLS = ("BTCUSDT", "ETHUSDT")
YEARS = 1.0


def bootstrap_request(last: datetime) -> TrainingRequest:
    """A global LightGBM classifier on the last year of BTC/USDT + ETH/USDT hourly candles, scored walk-forward
    (quarterly folds); no strategy backtest, to keep the first start short."""
    return TrainingRequest(
        model_name=MODEL_NAME,
        dataset=DatasetSpec(start=last - timedelta(days=365 * YEARS), symbol_feature=True),
        model=ModelSpec(family="lightgbm", task="classification"),  # type: ignore[arg-type]
        folds={"train_days": 120, "test_days": 60},  # type: ignore[arg-type]
        strategy_backtest=False)


def ensure_champion(registry: Registry, data_dir: Path, *, code_version: str, say: Callable[[str], None],
                    progress: Callable[[Progress], None] | None = None,
                    clock: Clock | None = None) -> ModelVersionInfo | None:
    """The champion, trained now if there is none; None (and a loud note) when the shared data is missing.
    ``clock``: only candles closed by its now are read (default: the wall clock)."""
    try:
        return registry.load(f"{MODEL_NAME}@{CHAMPION}")[1]
    except UnknownModelError:
        pass
    from quorum.backtest.data import from_files

    files = [data_dir / "ohlcv" / f"binance_{s}_1h.csv" for s in SYMBOLS]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        say(f"NO TRAINED MODEL: {', '.join(missing)} not found (QUORUM_DATA_DIR); inference serves the baseline")
        return None
    candles = from_files(files, now=(clock or LiveClock()).now()).candles
    say(f"no champion registered: training {MODEL_NAME} on the last year of {', '.join(SYMBOLS)} 1h "
        f"({registry.tracking_uri})")
    result = train(bootstrap_request(candles[-1].ts), candles, registry, code_version=code_version,
                   progress=progress)
    registry.set_alias(MODEL_NAME, CHAMPION, result.version.version)
    m = result.score.metrics
    say(f"champion {MODEL_NAME}:{result.version.version}: out of sample direction {m['direction_accuracy']:.2%} "
        f"(always up {m['always_up_accuracy']:.2%}), MSE {m['mse_vs_naive']:.3f}x the zero-return predictor's; "
        f"checks failed: {', '.join(result.verdict.failed) or 'none'}")
    return registry.load(f"{MODEL_NAME}@{CHAMPION}")[1]
