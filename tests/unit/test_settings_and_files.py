"""Service settings from the environment (prefixes, secret guards) and OHLCV file reading (row rejections)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from quorum.marketdata.files import OhlcvFileError, Rejections, SeriesId, candles, infer_series, read_rows
from quorum.runtime.settings import DEV_DATABASE_URL
from quorum.types import TradingMode

from services.gateway.service import GatewaySettings
from services.risk.service import RiskSettings

STRONG_DB = "postgresql+asyncpg://quorum:Xk2-strong-Pw9@db:5432/quorum"
STRONG_TOKEN = "tok-0f9a8b7c6d5e4f3a"
STRONG_CHAIN_KEY = "chain-7Qe2-LmZ9-xV4r-pK81"


@pytest.fixture(autouse=True)
def _clean(clean_env: pytest.MonkeyPatch) -> None:
    """Every test here starts from an environment without Quorum settings (tests/unit/conftest.py)."""


# --- settings --------------------------------------------------------------------------------------------

def test_development_with_all_defaults_is_accepted() -> None:
    risk, gateway = RiskSettings(), GatewaySettings()

    assert (risk.environment, risk.trading_mode) == ("development", TradingMode.PAPER)
    assert risk.database_url.get_secret_value() == DEV_DATABASE_URL
    assert gateway.api_token.get_secret_value() == "dev-token-change-me"
    assert (risk.http_port, gateway.http_port) == (8105, 8000)


@pytest.mark.parametrize("cls", [RiskSettings, GatewaySettings])
def test_infrastructure_urls_are_read_without_the_service_prefix(cls: type, clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("NATS_URL", "nats://bus:4222")
    clean_env.setenv("DATABASE_URL", STRONG_DB)
    s = cls()

    assert s.nats_url == "nats://bus:4222"
    assert s.database_url.get_secret_value() == STRONG_DB


def test_a_prefixed_infrastructure_url_is_not_read(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("QUORUM_RISK_NATS_URL", "nats://elsewhere:4222")

    assert RiskSettings().nats_url == "nats://127.0.0.1:4222"


def test_service_fields_are_read_with_the_service_prefix(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("QUORUM_RISK_DEFAULT_RULES", '{"min_notional": "25"}')
    clean_env.setenv("QUORUM_RISK_HTTP_PORT", "9105")
    clean_env.setenv("QUORUM_GATEWAY_API_TOKEN", STRONG_TOKEN)
    clean_env.setenv("DEFAULT_RULES", '{"min_notional": "99"}')  # unprefixed: ignored

    risk, gateway = RiskSettings(), GatewaySettings()
    assert (risk.default_rules.min_notional, risk.http_port) == (Decimal("25"), 9105)
    assert gateway.api_token.get_secret_value() == STRONG_TOKEN
    assert gateway.http_port == 8000  # another service's prefix does not leak across


def test_shared_quorum_settings_apply_to_every_service(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("QUORUM_PAPER_STARTING_CASH", "2500.50")

    assert RiskSettings().paper_starting_cash == GatewaySettings().paper_starting_cash == Decimal("2500.50")


def test_an_invalid_service_value_is_refused(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("QUORUM_RISK_CONFIG", '{"drawdown_action": "MARKET_CLOSE_ALL_AND_HALT"}')

    with pytest.raises(ValueError, match="market_close_acknowledged"):
        RiskSettings()


def test_a_stop_distance_above_the_ceiling_is_refused_at_start_up(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("QUORUM_RISK_CONFIG", '{"profiles": {"LOW": ' + LOW_WITH_WIDE_STOP + ', "MEDIUM": '
                     + LOW_WITH_WIDE_STOP.replace('"20"', '"10"') + ', "HIGH": '
                     + LOW_WITH_WIDE_STOP.replace('"20"', '"15"') + '}}')

    with pytest.raises(ValueError, match="15% ceiling"):
        RiskSettings()


LOW_WITH_WIDE_STOP = (
    '{"risk_per_trade_pct": "1", "max_drawdown_pct": "10", "max_concurrent_positions": 3, '
    '"max_total_exposure": {"mode": "PERCENT", "value": "50"}, '
    '"max_cluster_exposure": {"mode": "ABSOLUTE", "value": "2000"}, "max_stop_distance_pct": "20", '
    '"min_confidence": 0.5, "daily_loss_limit": {"mode": "PERCENT", "value": "3"}}')


@pytest.mark.parametrize("password", ["quorum", "changeme", "admin", "password"])
def test_production_with_a_default_database_password_refuses_to_build(
        password: str, clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("QUORUM_ENVIRONMENT", "production")
    clean_env.setenv("DATABASE_URL", f"postgresql+asyncpg://quorum:{password}@db:5432/quorum")

    with pytest.raises(ValueError, match="default secrets.*DATABASE_URL password"):
        RiskSettings()


def test_production_with_the_default_database_url_refuses_to_build(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("QUORUM_ENVIRONMENT", "production")

    with pytest.raises(ValueError, match="default secrets"):
        RiskSettings()


def test_production_gateway_with_the_default_token_refuses_to_build(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("QUORUM_ENVIRONMENT", "production")
    clean_env.setenv("DATABASE_URL", STRONG_DB)
    clean_env.setenv("QUORUM_CHAIN_KEY", STRONG_CHAIN_KEY)

    with pytest.raises(ValueError, match="default secrets.*QUORUM_GATEWAY_API_TOKEN"):
        GatewaySettings()
    assert RiskSettings().environment == "production"  # risk has no token, so the strong DB is enough


def test_production_with_strong_secrets_builds_and_hides_them(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("QUORUM_ENVIRONMENT", "production")
    clean_env.setenv("DATABASE_URL", STRONG_DB)
    clean_env.setenv("QUORUM_GATEWAY_API_TOKEN", STRONG_TOKEN)
    clean_env.setenv("QUORUM_CHAIN_KEY", STRONG_CHAIN_KEY)
    s = GatewaySettings()

    assert s.environment == "production"
    assert "Xk2-strong-Pw9" not in repr(s) and STRONG_TOKEN not in repr(s) and STRONG_CHAIN_KEY not in repr(s)


@pytest.mark.parametrize("environment", ["development", "production"])
def test_live_trading_mode_is_refused(environment: str, clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("QUORUM_ENVIRONMENT", environment)
    clean_env.setenv("QUORUM_TRADING_MODE", "LIVE")
    clean_env.setenv("DATABASE_URL", STRONG_DB)

    with pytest.raises(ValueError, match="LIVE is refused"):
        RiskSettings()


# --- OHLCV files -----------------------------------------------------------------------------------------

SERIES = SeriesId("binance", "BTC/USDT", "1h")
T0 = datetime(2024, 1, 1, tzinfo=UTC)
HOUR_MS = 3_600_000
NOW = T0 + timedelta(hours=10)
HEADER = "ts,open,high,low,close,volume"


def ms(hours: float) -> int:
    return int(T0.timestamp() * 1000 + hours * HOUR_MS)


def good(hours: float) -> str:
    return f"{ms(hours)},42000.10,42100.00,41900.5,42050.25,12.5"


def write(tmp_path: Path, rows: list[str], header: str = HEADER, name: str = "binance_BTCUSDT_1h.csv") -> Path:
    path = tmp_path / name
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def read(path: Path, **kw: object) -> tuple[list, Rejections]:
    rejections = Rejections()
    kw.setdefault("now", NOW)
    return list(candles(read_rows(path), SERIES, rejections=rejections, **kw)), rejections


def test_valid_rows_become_candles_in_file_order_with_every_digit(tmp_path: Path) -> None:
    out, rej = read(write(tmp_path, [good(0), good(1), good(2)]))

    assert [c.ts for c in out] == [T0, T0 + timedelta(hours=1), T0 + timedelta(hours=2)]
    assert [str(x) for x in (out[0].open, out[0].high, out[0].low, out[0].close, out[0].volume)] == [
        "42000.10", "42100.00", "41900.5", "42050.25", "12.5"]
    assert (out[0].exchange, out[0].symbol, out[0].timeframe) == ("binance", "BTC/USDT", "1h")
    assert rej.total == 0


@pytest.mark.parametrize(("row", "reason"), [
    (f"{ms(1)},100,90,95,95,1", "high_below_low"),
    (f"{ms(1)},100,110,-5,100,1", "negative_or_zero"),
    (f"{ms(1)},100,110,0,100,1", "negative_or_zero"),
    (f"{ms(1)},100,110,90,100,-1", "negative_or_zero"),
    (f"{ms(1)},100,110,90,120,1", "open_close_outside_range"),
    (f"{ms(1)},100,110,90,nan,1", "not_finite"),
    (f"{ms(1)},100,inf,90,100,1", "not_finite"),
    (f"{ms(1)},100,110,90,abc,1", "not_a_number"),
    (f"{ms(1)},100,110,90,,1", "not_a_number"),
    ("yesterday,100,110,90,100,1", "bad_timestamp"),
], ids=["high<low", "negative-low", "zero-low", "negative-volume", "close-above-high", "nan", "inf",
        "text", "empty", "text-ts"])
def test_a_bad_row_is_counted_by_reason_and_skipped_without_stopping_the_stream(
        tmp_path: Path, row: str, reason: str) -> None:
    out, rej = read(write(tmp_path, [good(0), row, good(2)]))

    assert [c.ts for c in out] == [T0, T0 + timedelta(hours=2)]
    assert rej.counts == Counter({reason: 1})


@pytest.mark.parametrize("rows", [[good(0), good(1), good(1)], [good(0), good(2), good(1)]],
                         ids=["duplicate", "backwards"])
def test_duplicate_or_backwards_timestamps_are_rejected_as_non_monotonic(tmp_path: Path, rows: list[str]) -> None:
    out, rej = read(write(tmp_path, rows))

    assert len(out) == 2
    assert rej.counts == Counter({"non_monotonic_time": 1})


def test_a_candle_still_forming_at_now_is_not_produced(tmp_path: Path) -> None:
    now = T0 + timedelta(hours=2)  # the 01:00 candle closes exactly now, the 02:00 one has just opened
    out, rej = read(write(tmp_path, [good(0), good(1), good(2), good(50)]), now=now)

    assert [c.ts for c in out] == [T0, T0 + timedelta(hours=1)]
    assert rej.counts == Counter({"not_closed_or_future": 2})


def test_rejections_are_tallied_per_reason_across_a_file(tmp_path: Path) -> None:
    rows = [good(0), f"{ms(1)},1,2,3,2,1", f"{ms(1)},1,2,3,2,1", f"{ms(1)},x,2,1,2,1", good(1), good(1), good(3),
            good(99)]
    out, rej = read(write(tmp_path, rows))

    assert [c.ts for c in out] == [T0, T0 + timedelta(hours=1), T0 + timedelta(hours=3)]
    assert rej.counts == Counter({"high_below_low": 2, "not_a_number": 1, "non_monotonic_time": 1,
                                  "not_closed_or_future": 1})
    assert rej.total == 5


def test_after_skips_rows_already_published_without_counting_them(tmp_path: Path) -> None:
    out, rej = read(write(tmp_path, [good(0), good(1), good(2), good(3)]), after=T0 + timedelta(hours=1))

    assert [c.ts for c in out] == [T0 + timedelta(hours=2), T0 + timedelta(hours=3)]
    assert rej.total == 0


def test_columns_are_found_by_name_whatever_their_order(tmp_path: Path) -> None:
    path = write(tmp_path, [f"12.5,42050.25,{ms(0)},41900.5,42100.00,42000.10,extra"],
                 header="volume,close,ts,low,high,open,note")
    out, _ = read(path)

    assert (out[0].open, out[0].close, out[0].volume) == (Decimal("42000.10"), Decimal("42050.25"), Decimal("12.5"))


def test_read_rows_refuses_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(OhlcvFileError, match="no such file"):
        read_rows(tmp_path / "binance_BTCUSDT_1h.csv")


def test_read_rows_refuses_a_file_without_the_required_columns(tmp_path: Path) -> None:
    path = write(tmp_path, [f"{ms(0)},1,2,1,2"], header="ts,open,high,low,close")

    with pytest.raises(OhlcvFileError, match=r"missing columns \['volume'\]"):
        read_rows(path)


@pytest.mark.parametrize(("name", "expected"), [
    ("binance_BTCUSDT_1h.csv", SeriesId("binance", "BTC/USDT", "1h")),
    ("binance_ETHUSDT_1m.parquet", SeriesId("binance", "ETH/USDT", "1m")),
    ("binance_ETHBTC_1d.csv", SeriesId("binance", "ETH/BTC", "1d")),
    ("kraken_USDCUSDT_15m.csv", SeriesId("kraken", "USDC/USDT", "15m")),
    ("coinbase_SOLUSD_4h.csv", SeriesId("coinbase", "SOL/USD", "4h")),
])
def test_series_is_inferred_from_the_file_name(name: str, expected: SeriesId) -> None:
    assert infer_series(Path(name)) == expected


@pytest.mark.parametrize("name", ["btc.csv", "binance_BTCXYZ_1h.csv", "binance_BTCUSDT.csv", "BTCUSDT_1h.csv"])
def test_a_file_name_that_does_not_say_gives_no_series(name: str) -> None:
    assert infer_series(Path(name)) is None
