"""The versioned universe resolves against what an exchange lists; Parquet files replay like CSV files."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest
from quorum.marketdata.files import SeriesId, candles, read_rows
from quorum.marketdata.universe import UNIVERSE_V1, get_universe, resolve
from quorum.marketdata.validation import Rejections

NOW = datetime(2030, 1, 1, tzinfo=UTC)


def test_universe_v1_is_the_required_top_30_list() -> None:
    assert len(UNIVERSE_V1.bases) == 30 and len(set(UNIVERSE_V1.bases)) == 30
    assert UNIVERSE_V1.bases[:3] == ("BTC", "ETH", "BNB") and UNIVERSE_V1.bases[-1] == "APT"
    assert get_universe("v1") is UNIVERSE_V1


def test_unknown_universe_version_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown universe 'v9'"):
        get_universe("v9")


def test_symbols_an_exchange_does_not_list_are_reported_not_fatal() -> None:
    markets = {"BTC/USDT": {"spot": True, "active": True}, "ETH/USDT": {"spot": True, "active": False},
               "SOL/USDT": {"spot": False}}
    r = resolve(UNIVERSE_V1, "binance", markets)
    assert r.listed == ("BTC/USDT",)
    assert "ETH" in r.unlisted and "SOL" in r.unlisted and len(r.unlisted) == 29


def test_usd_venues_fall_back_to_usd_quotes_in_preference_order() -> None:
    markets = {"BTC/USD": {"spot": True}, "BTC/USDT": {"spot": True}, "ETH/USDT": {"spot": True}}
    r = resolve(UNIVERSE_V1, "kraken", markets)
    assert r.listed[:2] == ("BTC/USD", "ETH/USDT")


def test_a_parquet_file_replays_the_same_candles_as_its_csv(tmp_path: Path) -> None:
    rows = {"ts": [1_700_000_000_000, 1_700_000_060_000], "open": ["1.5", "1.6"], "high": ["2", "2"],
            "low": ["1", "1"], "close": ["1.6", "1.7"], "volume": ["10", "0.000001"]}
    csv_path, pq_path = tmp_path / "x.csv", tmp_path / "x.parquet"
    pl.DataFrame(rows).write_csv(csv_path)
    pl.DataFrame(rows).write_parquet(pq_path)
    series = SeriesId("binance", "BTC/USDT", "1m")

    def replay(path: Path) -> list[tuple[Decimal, ...]]:
        out = candles(read_rows(path), series, now=NOW, rejections=Rejections())
        return [(c.open, c.close, c.volume) for c in out]

    assert replay(pq_path) == replay(csv_path) == [
        (Decimal("1.5"), Decimal("1.6"), Decimal("10")), (Decimal("1.6"), Decimal("1.7"), Decimal("0.000001"))]
