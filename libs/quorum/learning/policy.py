"""A position policy trained on the Sharpe ratio: an MLP over the normalised feature row, squashed by a sigmoid
into a spot position from flat (0) to fully long (1), no leverage, fitted by gradient ascent on the annualised
Sharpe ratio of its own bar returns net of fees (or on Moody & Saffell's differential Sharpe ratio).

Why a policy and not a forecast: the forecasting families predict returns and leave sizing and fees to the
council; this one learns the position directly against what is finally judged, the fee-paying Sharpe ratio, so
it learns to stay put where a trade would not pay its fee.

One formula: the strategy's bar returns and their Sharpe ratio are written once, in torch (``_bar_returns``,
``_sharpe``); the numpy functions (``bar_returns``, ``episode_reward``, ``equity_curve``) call them on float64
tensors, so the reward the policy is trained on and the one it is judged on cannot diverge.

Episodes: the rows of one symbol in time order are one episode; the position carries over from bar to bar within
an episode and starts flat at its first bar (the entry fee is paid), never across symbols. Pure: arrays in, a
policy out; ``save``/``load`` are the I/O at the edge. Deterministic: float64, one thread, torch's deterministic
algorithms, seeded initialisation in a forked RNG (the caller's torch RNG is left as it was).
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator

from quorum.learning.families import Normalizer, feature_row

FORMAT_VERSION = 1
"""Of ``model.json``: bump it when the directory layout or a field's meaning changes."""
KIND = "sharpe_policy"
WEIGHTS_FILE = "policy.pt"
HOURLY_PERIODS = 8760.0
"""``quorum.backtest.metrics.periods_per_year("1h")``, written out so this module does not import the backtest."""
DIFFERENTIAL_FLOOR_POSITION = 0.1
"""The differential Sharpe counts the policy's variance as at least that of holding this fraction of the asset
throughout (its return variance over the rows trained on), so flat stretches do not make its denominator vanish."""


class PolicySpec(BaseModel):
    """How to train a policy. ``epochs`` is a maximum: training stops once the validation reward (the episode
    Sharpe on the last ``validation_fraction`` of each episode's rows) has not improved for ``patience`` epochs,
    and the best weights are kept. ``validation_fraction`` 0: every epoch runs, the last weights are kept."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    hidden: tuple[int, ...] = Field(default=(32,), max_length=4, description="hidden layer widths; () is linear")
    learning_rate: float = Field(default=0.01, gt=0, le=1)
    epochs: int = Field(default=300, ge=1, le=100_000)
    patience: int = Field(default=30, ge=1, le=100_000)
    validation_fraction: float = Field(default=0.2, ge=0, le=0.5)
    fee_rate: float = Field(default=0.001, ge=0, lt=1, description="fee per unit of position change (taker fee)")
    weight_decay: float = Field(default=0.0, ge=0, le=1)
    seed: int = Field(default=7, ge=0, le=2**31 - 1)
    objective: Literal["episode_sharpe", "differential_sharpe"] = "episode_sharpe"
    differential_eta: float = Field(default=0.01, gt=0, lt=1, description="the differential Sharpe's EMA rate")
    periods_per_year: float = Field(default=HOURLY_PERIODS, gt=0, description="bars in a year; "
                                    "quorum.backtest.metrics.periods_per_year(timeframe)")

    @field_validator("hidden")
    @classmethod
    def _widths(cls, hidden: tuple[int, ...]) -> tuple[int, ...]:
        if any(not 1 <= w <= 1024 for w in hidden):
            raise ValueError(f"hidden layer widths must be within [1, 1024], got {list(hidden)}")
        return hidden


# --- the one formula (torch) -----------------------------------------------------------------------------------


def _bar_returns(positions: torch.Tensor, simple: torch.Tensor, starts: torch.Tensor,
                 fee_rate: float) -> torch.Tensor:
    """Per bar: position x the bar's simple return, less the fee on the position change from the bar before
    (from flat at each episode start, ``starts`` True there)."""
    previous = torch.where(starts, torch.zeros_like(positions), torch.roll(positions, 1))
    return positions * simple - fee_rate * (positions - previous).abs()


def _sharpe(bar: torch.Tensor, periods_per_year: float) -> torch.Tensor:
    """mean / std (population, ddof=0) x sqrt(periods_per_year); 0 for a riskless (constant) series."""
    std = bar.std(correction=0)
    risky = std > 0
    return torch.where(risky, bar.mean() / torch.where(risky, std, torch.ones_like(std)),
                       torch.zeros_like(std)) * math.sqrt(periods_per_year)


def _ema(x: torch.Tensor, eta: float, block: int = 128) -> torch.Tensor:
    """A_t = (1 - eta) A_{t-1} + eta x_t from A_0 = 0, for every t, without a Python loop per bar: each block of
    ``block`` bars is one lower-triangular matmul, and the blocks' carries another."""
    n = x.shape[0]
    m = -(-n // block)
    padded = torch.cat([x, x.new_zeros(m * block - n)]).reshape(m, block)
    k = torch.arange(block, dtype=x.dtype)
    lag = k[:, None] - k[None, :]
    inside = torch.where(lag >= 0, eta * (1 - eta) ** lag.clamp(min=0), x.new_zeros(()))
    local = padded @ inside.T  # the EMA of each block from a zero start
    j = torch.arange(m, dtype=x.dtype)
    gap = j[:, None] - j[None, :] - 1
    across = torch.where(gap >= 0, ((1 - eta) ** block) ** gap.clamp(min=0), x.new_zeros(()))
    carry = across @ local[:, -1]  # A just before each block
    return (local + carry[:, None] * (1 - eta) ** (k + 1)).reshape(-1)[:n]


def _differential_sharpe(bar: torch.Tensor, starts: torch.Tensor, eta: float, floor: float) -> torch.Tensor:
    """The mean of Moody & Saffell's differential Sharpe ratio D_t = (B ΔA - A ΔB / 2) / (B - A^2)^(3/2) (A, B
    the EMAs of the return and its square up to t-1; ΔA = R_t - A, ΔB = R_t^2 - B), restarted per episode, each
    episode's first ceil(1/eta) bars left out while the moments warm up. The EMA variance is floored at
    ``floor``: unfloored, a policy that sits flat for a while and then trades earns unbounded D_t (a near-zero
    denominator) and gradient ascent learns exactly that."""
    warm = math.ceil(1 / eta)
    bounds = [*torch.nonzero(starts).flatten().tolist(), bar.shape[0]]
    terms = []
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=False):
        r = bar[lo:hi]
        if r.shape[0] <= warm:
            continue
        a, b = _ema(r, eta), _ema(r * r, eta)
        a_prev, b_prev = a[warm - 1:-1], b[warm - 1:-1]
        now = r[warm:]
        variance = (b_prev - a_prev * a_prev).clamp(min=floor)
        terms.append((b_prev * (now - a_prev) - 0.5 * a_prev * (now * now - b_prev)) / variance ** 1.5)
    if not terms:
        raise ValueError(f"the differential Sharpe needs an episode longer than its {warm}-bar warm-up "
                         f"(1 / differential_eta)")
    return torch.cat(terms).mean()


# --- inputs ----------------------------------------------------------------------------------------------------


def _vector(values: np.ndarray, what: str, n: int | None = None) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1 or values.shape[0] == 0:
        raise ValueError(f"{what} must be a non-empty 1-d array, got shape {values.shape}")
    if n is not None and values.shape[0] != n:
        raise ValueError(f"{what} must have shape ({n},) to match the other inputs, got {values.shape}")
    if not np.isfinite(values).all():
        raise ValueError(f"{what} has NaN or infinite values")
    return values


def _matrix(X: np.ndarray, what: str = "X") -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[0] == 0:
        raise ValueError(f"{what} must be a non-empty 2-d array, got shape {X.shape}")
    if not np.isfinite(X).all():
        raise ValueError(f"{what} has NaN or infinite values (warm-up rows must be dropped first)")
    return X


def episode_starts(episodes: np.ndarray | None, n: int) -> np.ndarray:
    """True at each episode's first row. ``episodes``: an int id per row, each episode's rows contiguous (None:
    one episode)."""
    if episodes is None:
        return np.arange(n) == 0
    ids = np.asarray(episodes)
    if ids.shape != (n,):
        raise ValueError(f"episodes must have shape ({n},) to match the other inputs, got {ids.shape}")
    if not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"episodes must be integer ids, got dtype {ids.dtype}")
    starts = np.r_[True, ids[1:] != ids[:-1]]
    runs = ids[starts]
    if len(np.unique(runs)) != len(runs):
        again = next(int(e) for e in runs if (runs == e).sum() > 1)
        raise ValueError(f"episodes are not contiguous: the rows of episode {again} are split by other episodes "
                         "(order rows by symbol, then time)")
    return starts


def _positions(positions: np.ndarray, n: int | None = None) -> np.ndarray:
    positions = _vector(positions, "positions", n)
    if (positions < 0).any() or (positions > 1).any():
        raise ValueError("positions must lie within [0, 1] (flat to fully long)")
    return positions


def _numpy_bar_returns(positions: np.ndarray, returns: np.ndarray, fee_rate: float,
                       episodes: np.ndarray | None) -> torch.Tensor:
    returns = _vector(returns, "returns")
    positions = _positions(positions, returns.shape[0])
    if not 0 <= fee_rate < 1:
        raise ValueError(f"fee_rate must be within [0, 1), got {fee_rate}")
    starts = torch.tensor(episode_starts(episodes, returns.shape[0]))
    with torch.no_grad():
        return _bar_returns(torch.tensor(positions), torch.expm1(torch.tensor(returns)), starts, fee_rate)


def bar_returns(positions: np.ndarray, returns: np.ndarray, fee_rate: float,
                episodes: np.ndarray | None = None) -> np.ndarray:
    """The strategy's simple return per bar: ``positions[t] * (exp(returns[t]) - 1) - fee_rate * |positions[t] -
    positions[t-1]|``, flat before each episode. ``returns``: the next-bar log returns (``label_return``)."""
    return _numpy_bar_returns(positions, returns, fee_rate, episodes).numpy()


def episode_reward(positions: np.ndarray, returns: np.ndarray, fee_rate: float, periods_per_year: float,
                   episodes: np.ndarray | None = None) -> float:
    """The annualised Sharpe ratio (mean / population std x sqrt(periods_per_year), 0 when riskless) of the bar
    returns of ``bar_returns``; with several episodes, of all their bar returns together."""
    if not periods_per_year > 0:
        raise ValueError(f"periods_per_year must be positive, got {periods_per_year}")
    return float(_sharpe(_numpy_bar_returns(positions, returns, fee_rate, episodes), periods_per_year))


def equity_curve(positions: np.ndarray, returns: np.ndarray, fee_rate: float, initial: float = 1.0,
                 episodes: np.ndarray | None = None) -> np.ndarray:
    """Equity after each bar from ``initial``, the bar returns of ``bar_returns`` compounded (episodes chained)."""
    return initial * np.cumprod(1.0 + bar_returns(positions, returns, fee_rate, episodes))


# --- the policy ------------------------------------------------------------------------------------------------


@contextmanager
def _deterministic() -> Iterator[None]:
    """One thread and torch's deterministic algorithms for the block, the caller's settings restored after."""
    threads, strict = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(strict)
        torch.set_num_threads(threads)


def _network(inputs: int, hidden: Sequence[int]) -> torch.nn.Sequential:
    """Normalised features -> tanh hidden layers -> one logit (the sigmoid that makes it a position is applied
    by the caller, so the saved state is the plain network)."""
    layers: list[torch.nn.Module] = []
    width = inputs
    for h in hidden:
        layers += [torch.nn.Linear(width, h, dtype=torch.float64), torch.nn.Tanh()]
        width = h
    layers.append(torch.nn.Linear(width, 1, dtype=torch.float64))
    return torch.nn.Sequential(*layers)


def _forward(network: torch.nn.Module, Z: torch.Tensor) -> torch.Tensor:
    return torch.sigmoid(network(Z)).squeeze(-1)


@dataclass(frozen=True)
class SharpePolicy:
    """A fitted policy with everything needed to turn a feature row into a position target: the column order, the
    feature set it was trained on, the training normaliser, the network (eval mode) and its rewards."""

    spec: PolicySpec
    feature_columns: tuple[str, ...]
    feature_set: str
    normalizer: Normalizer
    network: torch.nn.Module = field(compare=False, repr=False)
    training_reward: float
    validation_reward: float | None  # None: trained without a validation tail
    initial_reward: float  # the untrained (seeded) network's training reward: what learning is measured against
    best_epoch: int = 0  # the epoch whose weights were kept (0: the initial ones)
    extras: Mapping[str, str] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if len(self.feature_columns) != self.normalizer.mean.shape[0]:
            raise ValueError(f"{len(self.feature_columns)} feature columns but the normalizer has "
                             f"{self.normalizer.mean.shape[0]}")
        self.network.eval()

    def positions(self, X: np.ndarray) -> np.ndarray:
        """The position in [0, 1] for every row of X (columns in ``feature_columns`` order)."""
        Z = torch.tensor(self.normalizer.transform(_matrix(X)))
        with _deterministic(), torch.no_grad():
            return _forward(self.network, Z).numpy()

    def position_one(self, values: Mapping[str, float | None]) -> float | None:
        """The position for one feature row by name; None while a feature is still warming up (None or NaN).
        Extra names in ``values`` are ignored."""
        x = feature_row(values, self.feature_columns, f"sharpe policy, feature set {self.feature_set}")
        if x is None:
            return None
        return float(self.positions(x[None, :])[0])

    def save(self, directory: Path) -> None:
        """``model.json`` (everything but the weights) and ``policy.pt`` (the network's state_dict)."""
        directory.mkdir(parents=True, exist_ok=True)
        torch.save(self.network.state_dict(), directory / WEIGHTS_FILE)
        meta = {
            "kind": KIND, "format_version": FORMAT_VERSION, "spec": self.spec.model_dump(mode="json"),
            "feature_columns": list(self.feature_columns), "feature_set": self.feature_set,
            "normalizer": self.normalizer.to_dict(), "training_reward": self.training_reward,
            "validation_reward": self.validation_reward, "initial_reward": self.initial_reward,
            "best_epoch": self.best_epoch,
            "weights_file": WEIGHTS_FILE, "extras": dict(self.extras),
        }
        (directory / "model.json").write_text(json.dumps(meta, indent=1, sort_keys=True))

    @classmethod
    def load(cls, directory: Path) -> SharpePolicy:
        path = directory / "model.json"
        if not path.is_file():
            raise ValueError(f"no model.json in {directory}")
        meta = json.loads(path.read_text())
        if meta.get("kind") != KIND:
            raise ValueError(f"{path}: kind {meta.get('kind')!r} is not a {KIND}")
        if meta.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{path}: format version {meta.get('format_version')!r}, this code reads "
                             f"{FORMAT_VERSION}")
        spec = PolicySpec.model_validate(meta["spec"])
        columns = tuple(meta["feature_columns"])
        network = _network(len(columns), spec.hidden)
        network.load_state_dict(torch.load(directory / meta["weights_file"], weights_only=True))
        validation = meta["validation_reward"]
        return cls(spec=spec, feature_columns=columns, feature_set=meta["feature_set"],
                   normalizer=Normalizer.from_dict(meta["normalizer"]), network=network,
                   training_reward=float(meta["training_reward"]),
                   validation_reward=None if validation is None else float(validation),
                   initial_reward=float(meta["initial_reward"]),
                   best_epoch=int(meta["best_epoch"]), extras={str(k): str(v) for k, v in meta["extras"].items()})


# --- training --------------------------------------------------------------------------------------------------


def _validation_tail(starts: np.ndarray, fraction: float) -> np.ndarray:
    """True on the last ``fraction`` of each episode's rows (the validation tail), so every symbol is validated
    on its latest bars and trained on the earlier ones."""
    bounds = [*np.flatnonzero(starts).tolist(), len(starts)]
    tail = np.zeros(len(starts), dtype=bool)
    for episode, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:], strict=False)):
        held = math.floor((hi - lo) * fraction)
        if fraction > 0 and (held < 2 or hi - lo - held < 2):
            raise ValueError(f"episode {episode} (rows {lo}..{hi - 1}) is too short to keep {fraction:.0%} for "
                             "validation: each part needs 2 rows")
        tail[hi - held:hi] = True
    return tail


@dataclass(frozen=True)
class _Rows:
    """One part (training or validation) of the rows as tensors."""

    Z: torch.Tensor
    simple: torch.Tensor
    starts: torch.Tensor

    @classmethod
    def of(cls, Z: np.ndarray, returns: np.ndarray, starts: np.ndarray, chosen: np.ndarray) -> _Rows:
        part_starts = starts[chosen] | np.r_[True, np.diff(np.flatnonzero(chosen)) > 1]  # each part starts flat
        return cls(torch.tensor(Z[chosen]), torch.expm1(torch.tensor(returns[chosen])),
                   torch.tensor(part_starts))

    def reward(self, network: torch.nn.Module, spec: PolicySpec) -> torch.Tensor:
        return _sharpe(_bar_returns(_forward(network, self.Z), self.simple, self.starts, spec.fee_rate),
                       spec.periods_per_year)

    def objective(self, network: torch.nn.Module, spec: PolicySpec) -> torch.Tensor:
        if spec.objective == "episode_sharpe":
            return self.reward(network, spec)
        bar = _bar_returns(_forward(network, self.Z), self.simple, self.starts, spec.fee_rate)
        floor = float((DIFFERENTIAL_FLOOR_POSITION * self.simple).var(correction=0))
        return _differential_sharpe(bar, self.starts, spec.differential_eta, max(floor, 1e-300))


def fit_policy(spec: PolicySpec, X: np.ndarray, returns: np.ndarray, episodes: np.ndarray,
               feature_columns: Sequence[str], feature_set: str) -> SharpePolicy:
    """Train on the training rows only: X (rows x features, ``feature_columns`` order), ``returns`` the rows'
    next-bar log returns, ``episodes`` an int id per row (one per symbol; each episode's rows contiguous and in
    time order). Full-batch Adam ascent on the objective; the normaliser comes from the rows trained on (the
    validation tail excluded). Rewards are always the episode Sharpe, whatever the objective."""
    X = _matrix(X)
    returns = _vector(returns, "returns", X.shape[0])
    starts = episode_starts(episodes, X.shape[0])
    columns = tuple(feature_columns)
    if len(columns) != X.shape[1] or len(set(columns)) != len(columns):
        raise ValueError(f"feature_columns must name X's {X.shape[1]} columns once each, got {len(columns)} names "
                         f"({len(set(columns))} distinct)")
    tail = _validation_tail(starts, spec.validation_fraction)
    if (~tail).sum() < 2:
        raise ValueError("need at least 2 training rows")
    normalizer = Normalizer.fit(X[~tail])
    Z = normalizer.transform(X)
    train_rows = _Rows.of(Z, returns, starts, ~tail)
    held_rows = _Rows.of(Z, returns, starts, tail) if tail.any() else None
    judge = held_rows or train_rows
    with _deterministic(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec.seed)
        network = _network(X.shape[1], spec.hidden)
        optimiser = torch.optim.Adam(network.parameters(), lr=spec.learning_rate, weight_decay=spec.weight_decay)
        with torch.no_grad():
            initial = float(train_rows.reward(network, spec))
            best = float(judge.reward(network, spec))
        best_state, best_epoch, stale = copy.deepcopy(network.state_dict()), 0, 0
        for epoch in range(1, spec.epochs + 1):
            optimiser.zero_grad()
            (-train_rows.objective(network, spec)).backward()
            optimiser.step()
            with torch.no_grad():
                score = float(judge.reward(network, spec))
            if held_rows is None or score > best:
                best, best_state, best_epoch, stale = score, copy.deepcopy(network.state_dict()), epoch, 0
            else:
                stale += 1
                if stale >= spec.patience:
                    break
        network.load_state_dict(best_state)
        network.eval()
        with torch.no_grad():
            training = float(train_rows.reward(network, spec))
            validation = None if held_rows is None else float(held_rows.reward(network, spec))
    return SharpePolicy(spec=spec, feature_columns=columns, feature_set=feature_set, normalizer=normalizer,
                        network=network, training_reward=training, validation_reward=validation, initial_reward=initial,
                        best_epoch=best_epoch)


__all__ = [
    "FORMAT_VERSION", "KIND", "PolicySpec", "SharpePolicy", "bar_returns", "episode_reward", "episode_starts",
    "equity_curve", "fit_policy",
]
