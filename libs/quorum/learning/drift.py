"""Drift of a served model: are its inputs still distributed as in training, and are its predictions still as
good as predicting no move? Pure: rows, prices and times in, alerts out; no clock, no I/O, deterministic.

* **Feature drift**: the population stability index (PSI) of each input feature in a window of the latest rows
  against a reference distribution: quantile bins (edges and the reference rows' share in each). The reference
  is the training rows' (``reference_of_dataset``, to be stored with the model version) when the model carries
  one, else the first rows served after a swap (``source="live"``: drift since the model went into service).
  PSI = sum over bins of (q - p) * ln(q / p); below 0.1 is stable, 0.1-0.25 a shift, above 0.25 a major shift.
* **Prediction error**: each prediction's expected return against the realised log return ``horizon`` bars later
  (the close of the candle opening then, from the same features stream), over a rolling window, as the ratio of
  its MSE to the zero-return predictor's MSE on the same returns: scale-free (across assets and volatility
  regimes), above 1 means worse than predicting nothing.

``DriftMonitor`` keeps the windows. Each feature row is first ``observe``d (nothing changes; the returned step
says whether an alert is due) and then ``commit``ted once the caller's transaction holds, so a row is counted
once whatever retries happen before. Alerts are spaced at least ``cooldown`` apart in candle time.
"""

from __future__ import annotations

import json
import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np

from quorum.learning.dataset import SYMBOL_CODE, Dataset

FEATURE_DRIFT, PREDICTION_ERROR = "feature_drift", "prediction_error"
TRAINING, LIVE = "training", "live"
PSI_FLOOR = 1e-4
"""Share given to an empty bin (on either side) so the log stays finite; the usual choice for PSI."""
REPORTED = 10
"""At most this many features (the largest PSI first) are named in an alert."""


@dataclass(frozen=True)
class DriftReference:
    """Per feature: the interior quantile bin edges (ascending, distinct; a value ``v`` falls in the bin counting
    the edges ``<= v``) and each bin's share of the reference rows."""

    columns: tuple[str, ...]
    edges: tuple[tuple[float, ...], ...]
    shares: tuple[tuple[float, ...], ...]
    rows: int
    source: str = TRAINING

    def __post_init__(self) -> None:
        if not self.columns:
            raise ValueError("a drift reference needs at least one feature column")
        if len(self.edges) != len(self.columns) or len(self.shares) != len(self.columns):
            raise ValueError(f"drift reference: {len(self.columns)} columns but {len(self.edges)} edge lists and "
                             f"{len(self.shares)} share lists")
        for name, e, s in zip(self.columns, self.edges, self.shares, strict=True):
            if len(s) != len(e) + 1:
                raise ValueError(f"drift reference {name!r}: {len(e)} edges need {len(e) + 1} shares, got {len(s)}")
            if any(b <= a for a, b in zip(e, e[1:], strict=False)):
                raise ValueError(f"drift reference {name!r}: edges must be strictly ascending")
            if not math.isclose(sum(s), 1.0, abs_tol=1e-6) or min(s) < 0:
                raise ValueError(f"drift reference {name!r}: shares must be non-negative and sum to 1")
        if self.source not in (TRAINING, LIVE):
            raise ValueError(f"drift reference source must be {TRAINING!r} or {LIVE!r}, got {self.source!r}")

    def to_json(self) -> str:
        return json.dumps({"columns": list(self.columns), "edges": [list(e) for e in self.edges],
                           "shares": [list(s) for s in self.shares], "rows": self.rows, "source": self.source},
                          separators=(",", ":"), allow_nan=False)

    @classmethod
    def from_json(cls, text: str) -> DriftReference:
        try:
            data = json.loads(text)
            return cls(columns=tuple(data["columns"]), edges=tuple(tuple(map(float, e)) for e in data["edges"]),
                       shares=tuple(tuple(map(float, s)) for s in data["shares"]), rows=int(data["rows"]),
                       source=data.get("source", TRAINING))
        except (KeyError, TypeError, json.JSONDecodeError) as exc:
            raise ValueError(f"not a drift reference: {exc}") from None


def reference_of(X: np.ndarray, columns: Sequence[str], *, bins: int = 10, source: str = TRAINING) -> DriftReference:
    """Quantile bins of each column of ``X`` (rows x columns, finite) and the rows' share in each. A column with
    few distinct values gets fewer bins (tied quantiles merge)."""
    if bins < 2:
        raise ValueError(f"bins must be >= 2, got {bins}")
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[0] < bins or X.shape[1] != len(columns):
        raise ValueError(f"X must have shape (rows >= {bins}, {len(columns)}), got {X.shape}")
    if not np.isfinite(X).all():
        raise ValueError("X has NaN or infinite values (drop warm-up rows first)")
    quantiles = np.linspace(0.0, 1.0, bins + 1)[1:-1]
    edges, shares = [], []
    for j in range(X.shape[1]):
        column = X[:, j]
        cut = np.unique(np.quantile(column, quantiles))
        cut = cut[cut > column.min()]  # an edge at the minimum would leave its bin empty by construction
        counts = np.bincount(np.searchsorted(cut, column, side="right"), minlength=cut.size + 1)
        edges.append(tuple(float(v) for v in cut))
        shares.append(tuple(float(v) for v in counts / column.size))
    return DriftReference(tuple(columns), tuple(edges), tuple(shares), int(X.shape[0]), source)


DRIFT_REFERENCE = "drift_reference"
"""The key of the training distribution in a model's extras (``TrainedModel.extras``; training stores it)."""


def reference_of_dataset(ds: Dataset, *, bins: int = 10) -> DriftReference:
    """The training distribution of a dataset's feature columns (``symbol_code`` left out: it is the mix of
    symbols, not a feature that drifts). What training stores with the model version."""
    columns = [c for c in ds.feature_columns if c != SYMBOL_CODE]
    return reference_of(ds.frame.select(columns).to_numpy().astype(np.float64), columns, bins=bins)


class _Binning:
    """The reference as padded arrays, so a row's bins and a window's PSI are a few vector operations."""

    def __init__(self, reference: DriftReference) -> None:
        width = max(len(e) for e in reference.edges) if any(reference.edges) else 0
        self.edges = np.full((len(reference.columns), max(width, 1)), np.inf)
        self.shares = np.zeros((len(reference.columns), width + 1))
        self.valid = np.zeros_like(self.shares, dtype=bool)
        for j, (e, s) in enumerate(zip(reference.edges, reference.shares, strict=True)):
            self.edges[j, :len(e)] = e
            self.shares[j, :len(s)] = s
            self.valid[j, :len(s)] = True
        self.expected = np.where(self.valid, np.maximum(self.shares, PSI_FLOOR), 1.0)

    def bins(self, row: np.ndarray) -> np.ndarray:
        return (self.edges <= row[:, None]).sum(axis=1)

    def psi(self, counts: np.ndarray, rows: int) -> np.ndarray:
        actual = np.where(self.valid, np.maximum(counts / rows, PSI_FLOOR), 1.0)
        return ((actual - self.expected) * np.log(actual / self.expected)).sum(axis=1)


def population_stability(reference: DriftReference, X: np.ndarray) -> dict[str, float]:
    """PSI of each reference column over the rows of ``X`` (columns in the reference's order)."""
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[0] == 0 or X.shape[1] != len(reference.columns):
        raise ValueError(f"X must have shape (rows, {len(reference.columns)}), got {X.shape}")
    binning = _Binning(reference)
    counts = np.zeros_like(binning.shares)
    for row in X:
        counts[np.arange(len(row)), binning.bins(row)] += 1
    return dict(zip(reference.columns, (float(v) for v in binning.psi(counts, X.shape[0])), strict=True))


@dataclass(frozen=True)
class DriftLimits:
    """When drift is reported: PSI above ``psi_limit`` for any feature over a full window of ``window`` rows, or
    the error ratio above ``error_limit`` over ``error_window`` realised returns; at most once per ``cooldown``
    of candle time. ``reference_rows``: rows a live reference is built from."""

    psi_limit: float = 0.25
    error_limit: float = 1.5
    window: int = 500
    error_window: int = 200
    reference_rows: int = 500
    bins: int = 10
    cooldown: timedelta = timedelta(days=1)

    def __post_init__(self) -> None:
        if not (self.psi_limit > 0 and self.error_limit > 0):
            raise ValueError(f"drift limits must be positive, got psi {self.psi_limit}, error {self.error_limit}")
        if min(self.window, self.error_window) < 2 or self.reference_rows < self.bins or self.bins < 2:
            raise ValueError(f"drift windows must hold >= 2 rows and the reference >= bins ({self.bins}) rows, got "
                             f"window {self.window}, error_window {self.error_window}, "
                             f"reference_rows {self.reference_rows}")
        if self.cooldown < timedelta(0):
            raise ValueError(f"drift cooldown must not be negative, got {self.cooldown}")


@dataclass(frozen=True)
class Observation:
    """One served candle: its series, open time, bar length, close, the model's input values by name, and the
    model's expected return over its horizon (None: a model that gives only a direction)."""

    series: tuple[str, str, str]
    ts: datetime
    bar: timedelta
    close: float
    values: Mapping[str, float | None]
    expected_return: float | None


@dataclass(frozen=True)
class DriftAlert:
    reasons: tuple[str, ...]
    at: datetime
    reference: str
    psi: dict[str, float]
    max_psi: float | None
    error_ratio: float | None
    rows: int
    error_rows: int


@dataclass(frozen=True)
class Step:
    """What one observation changes once committed, and the alert it raises (if any)."""

    ts: datetime
    row: np.ndarray | None  # the feature row (None: some input still warming up)
    bins: np.ndarray | None  # its bins (None: no reference yet, the row goes to the live reference)
    pending: tuple[tuple[str, str, str], datetime, float, float | None]
    error: tuple[float, float] | None  # (squared error, squared realised return) of a prediction now realised
    alert: DriftAlert | None
    psi_max: float | None
    error_ratio: float | None
    psi_by_feature: Mapping[str, float] | None = None  # every input's PSI, once the window is full


@dataclass
class DriftMonitor:
    """The windows of one served model. ``columns``: its input features; ``reference``: the training one, or
    None to build a live one from the first ``limits.reference_rows`` complete rows; ``horizon``: bars between a
    prediction and the close it is about."""

    columns: tuple[str, ...]
    limits: DriftLimits = DriftLimits()
    reference: DriftReference | None = None
    horizon: int = 1
    _binning: _Binning | None = field(init=False, default=None, repr=False)
    _collected: list[np.ndarray] = field(init=False, default_factory=list, repr=False)
    _window: deque[np.ndarray] = field(init=False, repr=False)
    _counts: np.ndarray | None = field(init=False, default=None, repr=False)
    _pending: dict[tuple[str, str, str], deque[tuple[datetime, float, float | None]]] = field(
        init=False, default_factory=dict, repr=False)
    _errors: deque[tuple[float, float]] = field(init=False, repr=False)
    _sums: tuple[float, float, int] = field(init=False, default=(0.0, 0.0, 0), repr=False)  # over _errors
    _added: int = field(init=False, default=0, repr=False)
    _last_alert: datetime | None = field(init=False, default=None, repr=False)

    def __post_init__(self) -> None:
        if not self.columns:
            raise ValueError("a drift monitor needs at least one input column")
        if self.horizon < 1:
            raise ValueError(f"horizon must be >= 1 bar, got {self.horizon}")
        self.columns = tuple(self.columns)
        if self.reference is not None:
            missing = [c for c in self.columns if c not in self.reference.columns]
            if missing:
                raise ValueError(f"the drift reference lacks the model's inputs {missing[:5]}")
            if self.reference.columns != self.columns:
                self.reference = _select(self.reference, self.columns)
            self._use(self.reference)
        self._window = deque()
        self._errors = deque()

    def _use(self, reference: DriftReference) -> None:
        self.reference = reference
        self._binning = _Binning(reference)
        self._counts = np.zeros_like(self._binning.shares)

    @property
    def reference_source(self) -> str | None:
        return None if self.reference is None else self.reference.source

    def observe(self, obs: Observation) -> Step:
        """The step ``obs`` makes, with the alert it raises; the monitor itself is unchanged until ``commit``."""
        raw = [obs.values.get(c) for c in self.columns]
        row = None if any(v is None for v in raw) else np.asarray(raw, dtype=np.float64)
        if row is not None and not np.isfinite(row).all():
            row = None
        bins = psi_max = by_feature = None
        psi: dict[str, float] = {}
        rows = len(self._window)
        if row is not None and self._binning is not None and self._counts is not None:
            bins = self._binning.bins(row)
            counts = self._counts.copy()
            counts[np.arange(len(bins)), bins] += 1
            if rows == self.limits.window:
                counts[np.arange(len(bins)), self._window[0]] -= 1
            rows = min(rows + 1, self.limits.window)
            if rows == self.limits.window:
                values = self._binning.psi(counts, rows)
                psi_max = float(values.max())
                by_feature = {c: float(v) for c, v in zip(self.columns, values, strict=True)}
                if psi_max > self.limits.psi_limit:
                    psi = {c: float(v) for c, v in zip(self.columns, values, strict=True)
                           if v > self.limits.psi_limit}
        error = self._realised(obs)
        sq_error, sq_return, error_rows = self._sums
        if error is not None:
            sq_error, sq_return, error_rows = sq_error + error[0], sq_return + error[1], error_rows + 1
            if error_rows > self.limits.error_window:
                oldest = self._errors[0]
                sq_error, sq_return, error_rows = sq_error - oldest[0], sq_return - oldest[1], error_rows - 1
        ratio = None
        if error_rows == self.limits.error_window and sq_return > 0:
            ratio = max(sq_error, 0.0) / sq_return
        reasons = ((FEATURE_DRIFT,) if psi else ()) + (
            (PREDICTION_ERROR,) if ratio is not None and ratio > self.limits.error_limit else ())
        alert = None
        if reasons and (self._last_alert is None or obs.ts - self._last_alert >= self.limits.cooldown):
            top = dict(sorted(psi.items(), key=lambda kv: (-kv[1], kv[0]))[:REPORTED])
            alert = DriftAlert(reasons, obs.ts, self.reference_source or LIVE, top, psi_max, ratio,
                               rows if self._binning is not None else 0, error_rows)
        expected = obs.expected_return if obs.expected_return is not None and math.isfinite(
            obs.expected_return) else None
        return Step(obs.ts, row, bins, (obs.series, obs.ts, obs.close, expected), error, alert, psi_max, ratio,
                    by_feature)

    def _realised(self, obs: Observation) -> tuple[float, float] | None:
        """The prediction made ``horizon`` bars before ``obs`` on its series (by time: across a gap there is
        none), scored on the close now known: (squared error, squared realised return)."""
        made_at = obs.ts - self.horizon * obs.bar
        for ts, close, expected in self._pending.get(obs.series, ()):
            if ts == made_at:
                if expected is None or close <= 0 or obs.close <= 0:
                    return None
                realised = math.log(obs.close / close)
                return (expected - realised) ** 2, realised**2
        return None

    def commit(self, step: Step) -> None:
        """Adopt a step ``observe`` returned (once, in observation order)."""
        series, ts, close, expected = step.pending
        self._pending.setdefault(series, deque(maxlen=self.horizon)).append((ts, close, expected))
        if step.error is not None:
            self._errors.append(step.error)
            sq_error, sq_return = self._sums[0] + step.error[0], self._sums[1] + step.error[1]
            if len(self._errors) > self.limits.error_window:
                oldest = self._errors.popleft()
                sq_error, sq_return = sq_error - oldest[0], sq_return - oldest[1]
            self._added += 1
            if self._added % self.limits.error_window == 0:  # exact again now and then: no drift from rounding
                sq_error, sq_return = math.fsum(e[0] for e in self._errors), math.fsum(e[1] for e in self._errors)
            self._sums = (sq_error, sq_return, len(self._errors))
        if step.alert is not None:
            self._last_alert = step.alert.at
        if step.row is None:
            return
        if step.bins is None:
            self._collected.append(step.row)
            if len(self._collected) >= self.limits.reference_rows:
                self._use(reference_of(np.vstack(self._collected), self.columns, bins=self.limits.bins,
                                       source=LIVE))
                self._collected = []
            return
        assert self._counts is not None
        index = np.arange(len(step.bins))
        self._counts[index, step.bins] += 1
        self._window.append(step.bins)
        if len(self._window) > self.limits.window:
            self._counts[index, self._window.popleft()] -= 1


def _select(reference: DriftReference, columns: Sequence[str]) -> DriftReference:
    index = [reference.columns.index(c) for c in columns]
    return DriftReference(tuple(columns), tuple(reference.edges[i] for i in index),
                          tuple(reference.shares[i] for i in index), reference.rows, reference.source)
