"""Training datasets: candles in, one row per (candle, symbol) out, with the features the features service would
have computed at that candle, lagged copies, higher-timeframe features, and the label: the log return ``horizon``
bars ahead.

Why this shape: a model is only as honest as its training rows. The base features come from the same batch code
that agrees bit for bit with the streaming ``FeatureEngine`` the service runs; higher timeframes reach a row only
once their bar has closed (``join_closed``); and every build runs a leakage check that corrupts and truncates the
future and requires the past rows to stay identical, so a feature (or a ``transforms`` hook) that peeks ahead
cannot slip into training.

Time rules (decided here, relied on by walk-forward training):

* ``end`` (exclusive open time) cuts the candles before anything is computed: no feature and no label of a
  dataset uses a candle opening at or after ``end``, so the last ``horizon`` bars before it have no label.
* ``start`` (inclusive) only filters rows: the candles before it still warm the features up.
* Labels are by time, not by row: the label at ``t`` is the close of the candle opening ``horizon`` timeframes
  later. Across a gap (an exchange outage) that candle is missing and the row is dropped rather than labelled
  with a longer-horizon return. Features (like the streaming engine) and lags count bars, gaps or not.
* Gaps are allowed and reported in ``Dataset.gaps``.

Pure: frames in, frames out (``frames_from_files`` / ``frames_from_database`` are the I/O at the edge).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from quorum.indicators.engine import OHLCV, compute_features, ohlcv_frame
from quorum.indicators.spec import FeatureSetSpec
from quorum.indicators.timeframes import join_closed, resample, timeframe_ms
from quorum.marketdata.files import infer_series, read_rows
from quorum.times import from_ms, to_ms

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection

DATASET_REVISION = 1
"""Part of every dataset hash: bump it when how rows are built changes while the spec stays the same."""

Transform = Callable[[pl.DataFrame], pl.DataFrame]

LABEL_RETURN, LABEL_UP, SYMBOL_CODE = "label_return", "label_up", "symbol_code"
_RESERVED = frozenset({"ts", "symbol", LABEL_RETURN, LABEL_UP, SYMBOL_CODE, *OHLCV})
_TIMEFRAME = re.compile(r"^[1-9]\d*[mhdw]$")
_PRICES = ("open", "high", "low", "close")


def _check_timeframe(timeframe: str, what: str) -> str:
    if not _TIMEFRAME.match(timeframe):
        raise ValueError(f"{what} {timeframe!r} is not a timeframe like '5m', '1h', '1d'")
    return timeframe


PRICE_LEVEL_KINDS = frozenset({"sma", "ema", "atr", "keltner", "obv", "vwap", "session_vwap", "fib", "macd"})
"""Indicators whose outputs are in price units or cumulate (moving averages, bands, ATR, MACD in quote currency,
VWAPs, Fibonacci levels, OBV): a tree trained on one price regime would key on the level, and their distribution
drifts whenever prices move. Their normalisations (z-scores, min-max over a window) are scale-free."""
BAND_LEVELS = ("_upper", "_middle", "_lower")


def price_scaled(feature_set: FeatureSetSpec) -> frozenset[str]:
    """The feature names of ``feature_set`` that scale with the price level or cumulate."""
    out: set[str] = set()
    for ind in feature_set.indicators:
        names = ind.names()
        if ind.kind in PRICE_LEVEL_KINDS:
            out.update(names)
        elif ind.kind == "bbands":
            out.update(n for n in names if n.endswith(BAND_LEVELS))
    return frozenset(out)


class DatasetSpec(BaseModel):
    """What a dataset holds; ``hash()`` names it (stored with every model trained on it)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    symbols: tuple[str, ...] = Field(default=("BTC/USDT", "ETH/USDT"), min_length=1)
    timeframe: str = "1h"
    start: datetime | None = None
    end: datetime | None = None
    feature_set: FeatureSetSpec = FeatureSetSpec()
    lags: tuple[int, ...] = ()
    extra_timeframes: tuple[str, ...] = ()
    horizon: int = Field(default=1, ge=1)
    symbol_feature: bool = False
    scale_free: bool = Field(default=True, description="only features that do not scale with the price level or "
                                                       "cumulate (see ``price_scaled``); False: every feature")

    @field_validator("symbols")
    @classmethod
    def _unique_symbols(cls, symbols: tuple[str, ...]) -> tuple[str, ...]:
        if any(not s.strip() for s in symbols):
            raise ValueError("symbols must not be blank")
        if len(set(symbols)) != len(symbols):
            raise ValueError(f"duplicate symbols: {sorted({s for s in symbols if symbols.count(s) > 1})}")
        return symbols

    @field_validator("timeframe")
    @classmethod
    def _valid_timeframe(cls, timeframe: str) -> str:
        return _check_timeframe(timeframe, "timeframe")

    @field_validator("start", "end")
    @classmethod
    def _aware_utc(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"{value.isoformat()} has no time zone: give an aware (UTC) datetime")
        return value.astimezone(UTC)

    @field_validator("lags")
    @classmethod
    def _positive_unique_lags(cls, lags: tuple[int, ...]) -> tuple[int, ...]:
        if any(k < 1 for k in lags):
            raise ValueError(f"lags must be >= 1 (bars back), got {list(lags)}")
        if len(set(lags)) != len(lags):
            raise ValueError(f"duplicate lags: {list(lags)}")
        return lags

    @model_validator(mode="after")
    def _consistent(self) -> DatasetSpec:
        if self.start is not None and self.end is not None and self.start >= self.end:
            raise ValueError(f"start {self.start.isoformat()} must be before end {self.end.isoformat()}")
        base = timeframe_ms(self.timeframe)
        for tf in self.extra_timeframes:
            _check_timeframe(tf, "extra timeframe")
            if tf.endswith("w"):
                raise ValueError(f"extra timeframe {tf!r}: weekly bars are not supported (resampling aligns to the "
                                 "epoch, exchanges open weeks on Monday)")
            if timeframe_ms(tf) <= base or timeframe_ms(tf) % base:
                raise ValueError(f"extra timeframe {tf!r} must be a multiple of the timeframe {self.timeframe!r} "
                                 "and longer than it")
        if len(set(self.extra_timeframes)) != len(self.extra_timeframes):
            raise ValueError(f"duplicate extra timeframes: {list(self.extra_timeframes)}")
        return self

    def canonical_json(self) -> str:
        payload = {"revision": DATASET_REVISION, "feature_set_version": self.feature_set.version,
                   "spec": self.model_dump(mode="json")}
        return json.dumps(payload, sort_keys=True, separators=(",", ":"), allow_nan=False)

    def hash(self) -> str:
        """Short and the same in every process: sha256 of the canonical JSON (sorted keys, revisions included)."""
        return "ds1-" + hashlib.sha256(self.canonical_json().encode()).hexdigest()[:12]

    @property
    def base_features(self) -> tuple[str, ...]:
        """The feature set's features the dataset uses (the scale-free ones unless ``scale_free`` is off)."""
        names = self.feature_set.feature_names
        if not self.scale_free:
            return names
        levels = price_scaled(self.feature_set)
        return tuple(n for n in names if n not in levels)

    def base_columns(self) -> tuple[str, ...]:
        """The feature columns the spec itself defines (``transforms`` add theirs after these, then
        ``symbol_code``): base features, lags (by lag, then feature), higher timeframes (by timeframe)."""
        names = self.base_features
        lagged = tuple(f"{n}_lag{k}" for k in self.lags for n in names)
        higher = tuple(f"{tf}_{n}" for tf in self.extra_timeframes for n in names)
        return names + lagged + higher


@dataclass(frozen=True)
class Gap:
    """Missing candles in one symbol's series: ``missing`` bars after the candle opening at ``after``."""

    symbol: str
    after: datetime
    missing: int


@dataclass(frozen=True)
class Dataset:
    spec: DatasetSpec
    frame: pl.DataFrame
    feature_columns: tuple[str, ...]
    content_hash: str
    gaps: tuple[Gap, ...] = ()

    def feature_matrix(self) -> np.ndarray:
        """The feature columns as one float64 array (rows in frame order): what a model fits on."""
        return self.frame.select(self.feature_columns).to_numpy().astype(np.float64, copy=False)


class LeakageError(ValueError):
    """Features at a time ``t`` changed when the candles after ``t`` did: they read the future."""

    def __init__(self, columns: Sequence[str], symbol: str, probe: datetime) -> None:
        self.columns = tuple(columns)
        self.symbol = symbol
        self.probe = probe
        super().__init__(f"features read candles after their own: {', '.join(self.columns)} (rows at or before "
                         f"{probe.isoformat()} of {symbol} changed when later candles were corrupted or dropped)")


# --- inputs ----------------------------------------------------------------------------------------------------


def _when(ms: int) -> str:
    return from_ms(int(ms)).isoformat()


def _validated(symbol: str, raw: pl.DataFrame, timeframe: str) -> pl.DataFrame:
    """The candles of one symbol as an OHLCV frame, or a ValueError naming the symbol and the first bad row."""
    if not isinstance(raw, pl.DataFrame):
        raise ValueError(f"{symbol}: candles must be a polars DataFrame, got {type(raw).__name__}")
    missing = [c for c in OHLCV if c not in raw.columns]
    if missing:
        raise ValueError(f"{symbol}: candles lack columns {missing}; expected {', '.join(OHLCV)}")
    try:
        df = ohlcv_frame(raw)
    except pl.exceptions.PolarsError as exc:
        raise ValueError(f"{symbol}: candle columns are not numeric: {exc}") from None
    if df.is_empty():
        raise ValueError(f"{symbol}: no candles")
    for name in OHLCV:
        nulls = df.get_column(name).is_null()
        if nulls.any():
            raise ValueError(f"{symbol}: {name} is missing in row {int(nulls.arg_max())}")  # type: ignore[arg-type]
    ts = df.get_column("ts").to_numpy()
    step = np.diff(ts)
    if (step <= 0).any():
        i = int(np.argmax(step <= 0)) + 1
        why = "duplicate" if step[i - 1] == 0 else "unsorted (older than the row before)"
        raise ValueError(f"{symbol}: candle ts must be strictly ascending; {_when(ts[i])} is {why}")
    every = timeframe_ms(timeframe)
    offgrid = ts % every != 0
    if offgrid.any():
        raise ValueError(f"{symbol}: candle {_when(ts[np.argmax(offgrid)])} does not open on the {timeframe} grid")
    for name in (*_PRICES, "volume"):
        values = df.get_column(name).to_numpy()
        bad = ~np.isfinite(values) | ((values <= 0) if name != "volume" else (values < 0))
        if bad.any():
            i = int(np.argmax(bad))
            need = "positive" if name != "volume" else "non-negative"
            raise ValueError(f"{symbol}: {name} {values[i]} at {_when(ts[i])} is not a finite {need} number")
    return df


def _prepared(candles: Mapping[str, pl.DataFrame], spec: DatasetSpec) -> dict[str, pl.DataFrame]:
    """Each spec symbol's validated candles, cut at ``spec.end``."""
    frames: dict[str, pl.DataFrame] = {}
    for symbol in spec.symbols:
        if symbol not in candles:
            raise ValueError(f"no candles for {symbol}; got candles for {sorted(candles)}")
        df = _validated(symbol, candles[symbol], spec.timeframe)
        if spec.end is not None:
            df = df.filter(pl.col("ts") < to_ms(spec.end))
            if df.is_empty():
                raise ValueError(f"{symbol}: no candles before end {spec.end.isoformat()}")
        frames[symbol] = df
    return frames


def _gaps(symbol: str, df: pl.DataFrame, timeframe: str) -> list[Gap]:
    ts = df.get_column("ts").to_numpy()
    every = timeframe_ms(timeframe)
    step = np.diff(ts)
    return [Gap(symbol, from_ms(int(ts[i])), int(step[i] // every) - 1) for i in np.flatnonzero(step > every)]


# --- features --------------------------------------------------------------------------------------------------


def _features(df: pl.DataFrame, spec: DatasetSpec, transforms: Sequence[Transform]) -> tuple[pl.DataFrame, list[str]]:
    """``ts``, ``close`` and every feature of one symbol's candles (null while warming up), and the names the
    transforms added. Causal by construction except for what ``transforms`` do: the leakage check's subject."""
    names = spec.base_features
    base = compute_features(df, spec.feature_set, threads=1)
    frame = df.hstack(base.drop("ts").get_columns())
    if spec.lags:
        frame = frame.with_columns(pl.col(n).shift(k).alias(f"{n}_lag{k}") for k in spec.lags for n in names)
    for tf in spec.extra_timeframes:
        higher = compute_features(resample(df, tf), spec.feature_set, threads=1)
        suffix = f"__{tf}"
        frame = join_closed(frame, higher, tf, suffix=suffix).drop(f"ts{suffix}")
        frame = frame.rename({f"{n}{suffix}": f"{tf}_{n}" for n in names})
    added: list[str] = []
    for transform in transforms:
        before = frame
        frame = transform(before)
        if not isinstance(frame, pl.DataFrame) or frame.height != before.height or "ts" not in frame.columns \
                or not frame.get_column("ts").equals(before.get_column("ts")):
            raise ValueError(f"transform {getattr(transform, '__name__', transform)!r} must return the frame it got "
                             "with columns added (same rows, same ts)")
        new = [c for c in frame.columns if c not in before.columns]
        clash = [c for c in new if c in _RESERVED]
        if clash:
            raise ValueError(f"transform added reserved column names {clash}")
        added += new
    columns = [*spec.base_columns(), *added]
    try:
        features = frame.select(pl.col(c).cast(pl.Float64).fill_nan(None) for c in columns)
    except pl.exceptions.PolarsError as exc:
        raise ValueError(f"feature columns must be numeric: {exc}") from None
    return pl.concat([frame.select("ts", "close"), features], how="horizontal"), added


def _labelled(features: pl.DataFrame, spec: DatasetSpec) -> pl.DataFrame:
    """Adds ``label_return`` = log(close[t + horizon bars] / close[t]) by time; null when that candle is absent."""
    ahead = spec.horizon * timeframe_ms(spec.timeframe)
    future = features.select((pl.col("ts") - ahead).alias("ts"), pl.col("close").alias("__future"))
    return (features.join(future, on="ts", how="left", maintain_order="left")
            .with_columns((pl.col("__future") / pl.col("close")).log().alias(LABEL_RETURN)).drop("__future"))


# --- leakage ---------------------------------------------------------------------------------------------------


def _corrupted(df: pl.DataFrame, probe: int, rng: np.random.Generator) -> pl.DataFrame:
    """Every candle after row ``probe`` scaled by random factors (one per candle for the prices, so each stays a
    consistent bar, another for the volume)."""
    tail = df.height - probe - 1
    price = np.concatenate([np.ones(probe + 1), rng.uniform(0.5, 1.5, tail)])
    volume = np.concatenate([np.ones(probe + 1), rng.uniform(0.5, 1.5, tail)])
    return df.with_columns(*(pl.col(c) * price for c in _PRICES), pl.col("volume") * volume)


def _same(a: pl.Series, b: pl.Series) -> bool:
    return bool(np.array_equal(a.to_numpy(), b.to_numpy(), equal_nan=True))


def _leaks(frames: Mapping[str, pl.DataFrame], spec: DatasetSpec, transforms: Sequence[Transform], probes: int,
           seed: int, computed: Mapping[str, pl.DataFrame] | None = None) -> tuple[list[str], str, int] | None:
    """The leaking columns with the symbol and probe (row ts) where they were first seen, or None when clean.
    ``computed``: each symbol's features of ``frames`` when the caller has them already."""
    if probes < 1:
        raise ValueError(f"probes must be >= 1, got {probes}")
    rng = np.random.default_rng(seed)
    for symbol in spec.symbols:
        df = frames[symbol]
        if df.height < 2:
            continue  # no candle after any probe to change
        full = computed[symbol] if computed is not None else _features(df, spec, transforms)[0]
        low, high = df.height // 4, df.height - 1  # probes past the early warm-up, with candles after them
        for probe in np.sort(rng.choice(np.arange(low, high), size=min(probes, high - low), replace=False)):
            probe = int(probe)
            past = full.head(probe + 1)
            for variant in (_corrupted(df, probe, rng), df.head(probe + 1)):
                again = _features(variant, spec, transforms)[0].head(probe + 1)
                leaking = [c for c in past.columns[2:] if not _same(past.get_column(c), again.get_column(c))]
                if leaking:
                    return leaking, symbol, int(df.get_column("ts")[probe])
    return None


def leakage_check(candles: Mapping[str, pl.DataFrame], spec: DatasetSpec, transforms: Sequence[Transform] = (),
                  probes: int = 3, seed: int = 0) -> list[str]:
    """The feature columns that read the future (empty: clean). At ``probes`` rows ``t`` per symbol (from ``seed``),
    the candles after ``t`` are corrupted (scaled by random factors), and separately dropped; every feature at rows
    ``<= t`` must come out identical (NaN equal to NaN). Stops at the first probe that finds a leak."""
    found = _leaks(_prepared(candles, spec), spec, transforms, probes, seed)
    return [] if found is None else found[0]


# --- the dataset -----------------------------------------------------------------------------------------------


def _content_hash(spec: DatasetSpec, frame: pl.DataFrame) -> str:
    """sha256 over the spec and the frame's values column by column (little-endian bytes, strings with their
    lengths), so it depends on the values only, not on how polars chunks them."""
    digest = hashlib.sha256(spec.canonical_json().encode())
    digest.update(f"rows={frame.height}\0".encode())
    for series in frame.get_columns():
        digest.update(f"{series.name}\0{series.dtype}\0".encode())
        if series.dtype == pl.String:
            for text in series.to_list():
                raw = text.encode()
                digest.update(len(raw).to_bytes(4, "little") + raw)
        else:
            values = series.to_numpy()
            digest.update(np.ascontiguousarray(values, dtype=values.dtype.newbyteorder("<")).tobytes())
    return digest.hexdigest()


def _rows(symbol: str, features: pl.DataFrame, spec: DatasetSpec, columns: Sequence[str]) -> pl.DataFrame:
    labelled = _labelled(features, spec)
    complete = labelled.drop_nulls([*columns, LABEL_RETURN])
    if complete.is_empty():
        warming = [c for c in columns if labelled.get_column(c).null_count() == labelled.height]
        raise ValueError(f"{symbol}: {features.height} candles are too few for the feature set's warm-up and a "
                         f"{spec.horizon}-bar label: no row has all of them"
                         + (f" (never computed: {', '.join(warming[:5])})" if warming else ""))
    if spec.start is not None:
        complete = complete.filter(pl.col("ts") >= to_ms(spec.start))
        if complete.is_empty():
            raise ValueError(f"{symbol}: no complete rows at or after start {spec.start.isoformat()}")
    extra = [pl.lit(spec.symbols.index(symbol), dtype=pl.Float64).alias(SYMBOL_CODE)] if spec.symbol_feature else []
    return complete.select(
        "ts", pl.lit(symbol, dtype=pl.String).alias("symbol"), "close", *columns, *extra, LABEL_RETURN,
        (pl.col(LABEL_RETURN) > 0).cast(pl.Int8).alias(LABEL_UP),
    )


def build_dataset(candles: Mapping[str, pl.DataFrame], spec: DatasetSpec,
                  transforms: Sequence[Transform] = ()) -> Dataset:
    """The rows of ``spec`` from ``candles`` (symbol -> OHLCV frame, ``ts`` epoch ms open time, oldest first):
    sorted by (ts, symbol), warm-up rows and rows without a label dropped. ``transforms`` add feature columns to
    each symbol's frame (it has the OHLCV columns and the spec's features). Raises ``LeakageError`` when a feature
    reads candles after its row, ``ValueError`` for bad candles."""
    frames = _prepared(candles, spec)
    computed: dict[str, pl.DataFrame] = {}
    added: dict[str, list[str]] = {}
    for symbol, df in frames.items():
        computed[symbol], added[symbol] = _features(df, spec, transforms)
    if len({tuple(a) for a in added.values()}) > 1:
        raise ValueError(f"transforms added different columns per symbol: {added}")
    found = _leaks(frames, spec, transforms, probes=3, seed=0, computed=computed)
    if found is not None:
        raise LeakageError(found[0], found[1], from_ms(found[2]))
    columns = [*spec.base_columns(), *added[spec.symbols[0]]]
    frame = pl.concat([_rows(s, computed[s], spec, columns) for s in spec.symbols]).sort("ts", "symbol")
    feature_columns = (*columns, *([SYMBOL_CODE] if spec.symbol_feature else []))
    gaps = tuple(g for s in spec.symbols for g in _gaps(s, frames[s], spec.timeframe))
    return Dataset(spec, frame, feature_columns, _content_hash(spec, frame), gaps)


# --- sources ---------------------------------------------------------------------------------------------------


def frames_from_files(paths: Sequence[Path]) -> dict[str, pl.DataFrame]:
    """OHLCV frames by symbol from files in the shared data format; the symbol comes from each file's name
    (``binance_BTCUSDT_1h.csv`` -> BTC/USDT). One file per symbol."""
    frames: dict[str, pl.DataFrame] = {}
    origin: dict[str, Path] = {}
    for path in map(Path, paths):
        series = infer_series(path)
        if series is None:
            raise ValueError(f"{path}: the name does not say the symbol; expected e.g. binance_BTCUSDT_1h.csv")
        if series.symbol in frames:
            raise ValueError(f"{path} and {origin[series.symbol]} both hold {series.symbol}: give one file per symbol")
        try:
            frames[series.symbol] = ohlcv_frame(read_rows(path))
        except pl.exceptions.PolarsError as exc:
            raise ValueError(f"{path}: not numeric OHLCV: {exc}") from None
        origin[series.symbol] = path
    return frames


async def frames_from_database(conn: AsyncConnection, spec: DatasetSpec,
                               exchange: str | None = None) -> dict[str, pl.DataFrame]:
    """The spec's symbols on its timeframe from the ``candles`` table, every candle before ``spec.end`` (those
    before ``start`` warm the features up). Prices come as doubles (PostgreSQL rounds NUMERIC correctly, as the
    file reader does the text). Without ``exchange``, each symbol must be stored for one exchange only."""
    from sqlalchemy import BigInteger, Float, cast, func, select

    from quorum.db.tables import candles as table

    c = table.c
    ms = cast(func.floor(func.extract("epoch", c.ts) * 1000), BigInteger).label("ts")
    query = select(c.exchange, c.symbol, ms, *(cast(getattr(c, n), Float).label(n) for n in OHLCV[1:])).where(
        c.symbol.in_(spec.symbols), c.timeframe == spec.timeframe)
    if exchange is not None:
        query = query.where(c.exchange == exchange)
    if spec.end is not None:
        query = query.where(c.ts < spec.end)
    rows = (await conn.execute(query.order_by(c.symbol, c.ts, c.exchange))).all()
    found = pl.DataFrame([tuple(r) for r in rows], schema={"exchange": pl.String, "symbol": pl.String,
                                                           "ts": pl.Int64, **{n: pl.Float64 for n in OHLCV[1:]}},
                         orient="row")
    frames: dict[str, pl.DataFrame] = {}
    for (symbol,), group in found.group_by("symbol", maintain_order=True):
        exchanges = group.get_column("exchange").unique().sort().to_list()
        if len(exchanges) > 1:
            raise ValueError(f"{symbol} {spec.timeframe} is stored for several exchanges ({', '.join(exchanges)}): "
                             "choose one with exchange=")
        frames[str(symbol)] = group.select(OHLCV)
    return frames


__all__ = [
    "DATASET_REVISION", "Dataset", "DatasetSpec", "Gap", "LeakageError", "build_dataset", "frames_from_database",
    "frames_from_files", "leakage_check",
]
