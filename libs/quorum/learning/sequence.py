"""Sequence models (an LSTM and a small Transformer encoder, in torch, on the CPU) that read the last ``window``
bars of one symbol's normalised features and output what the tree families do: (expected return, P(up)).

Why windows of feature rows and not raw candles: the features are already the causal, warm-up-checked inputs the
streaming engine computes, so a window of them is what inference has at a closed candle, with no second feature
path to keep in agreement. Windows count rows of one symbol (as the features count bars), gaps or not.

Deterministic by construction: one thread and torch's deterministic algorithms during fit and predict (the
previous settings restored after), the weights initialised and the batches shuffled from the spec's seed inside a
forked RNG (the caller's global RNG state is left as it was), eval mode at predict. Same inputs and seed give
bit-identical weights and predictions. Computation is float32; the normaliser and the outputs are float64.

Early stopping: the latest ``validation_fraction`` of the training rows (by row order, which is time order in a
``Dataset`` frame) are held out; training stops after ``patience`` epochs without a lower validation loss and
keeps the best epoch's weights. The regression target is divided by the training returns' std (``target_scale``)
so the loss is of order one whatever the bar size; outputs are scaled back.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from numpy.lib.stride_tricks import sliding_window_view
from pydantic import BaseModel, ConfigDict, Field, model_validator
from scipy.special import expit, ndtr
from torch import nn

from quorum.learning.families import MIN_RESIDUAL_STD, Normalizer, Task, _finite_matrix, feature_row

KIND = "sequence"
"""``model.json``'s ``kind`` for a sequence model directory."""

FORMAT_VERSION = 1
"""Of a sequence model's ``model.json``: bump it when the layout, a field's meaning or a module's shape changes."""

WEIGHTS_FILE = "model.pt"
_CHUNK = 4096
"""Windows per forward pass when predicting many: it bounds memory. (float32 kernels may round differently for
another batch size, so a window's output can differ in the last bits between a batch and alone.)"""


class SequenceSpec(BaseModel):
    """What to train: the architecture and its size, the task, the optimiser, early stopping and the seed."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    architecture: Literal["lstm", "transformer"]
    task: Task = Task.REGRESSION  # regression: MSE on label_return; classification: BCE on label_return > 0
    window: int = Field(default=48, ge=2, le=2048, description="bars (rows of one symbol) per sample")
    hidden_size: int = Field(default=32, ge=1, le=1024, description="LSTM state / Transformer model width")
    layers: int = Field(default=1, ge=1, le=8)
    heads: int = Field(default=2, ge=1, le=64, description="attention heads (transformer only)")
    pooling: Literal["last", "mean"] = Field(default="last", description="transformer: the last token or the mean")
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)
    learning_rate: float = Field(default=1e-3, gt=0.0, le=1.0)
    batch_size: int = Field(default=256, ge=1, le=65_536)
    max_epochs: int = Field(default=30, ge=1, le=10_000)
    patience: int = Field(default=3, ge=1, le=10_000, description="epochs without a better validation loss")
    validation_fraction: float = Field(default=0.2, gt=0.0, lt=1.0, description="latest training rows held out")
    weight_decay: float = Field(default=0.0, ge=0.0, le=1.0)
    seed: int = Field(default=7, ge=0, le=2**31 - 1)

    @model_validator(mode="after")
    def _heads_divide_width(self) -> SequenceSpec:
        if self.architecture == "transformer" and self.hidden_size % self.heads:
            raise ValueError(f"transformer hidden_size {self.hidden_size} must be a multiple of heads {self.heads}")
        return self


# --- windows ---------------------------------------------------------------------------------------------------


def window_rows(groups: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray]:
    """The row numbers of every window: (rows (m, length), index (m,)), rows[i] the ``length`` rows of one group
    ending at row index[i], oldest first; windows in ascending ``index`` order. Rows with fewer than length - 1
    earlier rows in their group have no window."""
    groups = np.asarray(groups)
    if groups.ndim != 1:
        raise ValueError(f"groups must be 1-d (one symbol code per row), got shape {groups.shape}")
    if isinstance(length, bool) or not isinstance(length, int | np.integer) or length < 1:
        raise ValueError(f"window length must be an integer >= 1, got {length!r}")
    length = int(length)
    rows, index = [], []
    if len(groups):
        _, code = np.unique(groups, return_inverse=True)
        for g in range(int(code.max()) + 1):
            positions = np.flatnonzero(code == g)
            if len(positions) >= length:
                rows.append(sliding_window_view(positions, length))
                index.append(positions[length - 1:])
    if not rows:
        return np.empty((0, length), dtype=np.intp), np.empty(0, dtype=np.intp)
    all_rows, all_index = np.concatenate(rows), np.concatenate(index)
    order = np.argsort(all_index, kind="stable")
    return all_rows[order], all_index[order]


def windows(X: np.ndarray, groups: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray]:
    """(W (m, length, k), index (m,)): W[i] the ``length`` rows of X's group ending at row index[i] (inclusive,
    oldest first). X's rows are in time order within each group (a group's rows need not be contiguous); rows with
    fewer than length - 1 predecessors in their group are left out."""
    X = np.asarray(X)
    if X.ndim != 2 or not np.issubdtype(X.dtype, np.number):
        raise ValueError(f"X must be a numeric 2-d array (rows x features), got shape {X.shape} of {X.dtype}")
    groups = np.asarray(groups)
    if groups.shape != (X.shape[0],):
        raise ValueError(f"groups must have shape ({X.shape[0]},) to match X, got {groups.shape}")
    rows, index = window_rows(groups, length)
    return X.astype(np.float64, copy=False)[rows], index


# --- the networks ----------------------------------------------------------------------------------------------


class _Lstm(nn.Module):
    """LSTM over the window; the last layer's final hidden state feeds a linear head."""

    def __init__(self, features: int, spec: SequenceSpec) -> None:
        super().__init__()
        self.lstm = nn.LSTM(features, spec.hidden_size, spec.layers, batch_first=True,
                            dropout=spec.dropout if spec.layers > 1 else 0.0)
        self.dropout = nn.Dropout(spec.dropout)
        self.head = nn.Linear(spec.hidden_size, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, (hidden, _) = self.lstm(x)
        return self.head(self.dropout(hidden[-1])).squeeze(-1)


class _Transformer(nn.Module):
    """Linear embedding plus a learned positional embedding, a small Transformer encoder, last-token or mean
    pooling, a linear head."""

    def __init__(self, features: int, spec: SequenceSpec) -> None:
        super().__init__()
        width = spec.hidden_size
        self.embed = nn.Linear(features, width)
        self.position = nn.Parameter(torch.randn(1, spec.window, width) * 0.02)
        layer = nn.TransformerEncoderLayer(width, spec.heads, dim_feedforward=2 * width, dropout=spec.dropout,
                                           batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, spec.layers, enable_nested_tensor=False)
        self.mean_pool = spec.pooling == "mean"
        self.head = nn.Linear(width, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        encoded = self.encoder(self.embed(x) + self.position)
        pooled = encoded.mean(dim=1) if self.mean_pool else encoded[:, -1]
        return self.head(pooled).squeeze(-1)


def _network(spec: SequenceSpec, features: int) -> nn.Module:
    """A freshly initialised network from ``spec.seed``, leaving the caller's global RNG as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec.seed)
        return (_Lstm if spec.architecture == "lstm" else _Transformer)(features, spec)


@contextmanager
def _deterministic() -> Iterator[None]:
    """One thread and deterministic algorithms for the block; the caller's settings restored after."""
    threads = torch.get_num_threads()
    strict = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(strict, warn_only=warn_only)
        torch.set_num_threads(threads)


def _forward(net: nn.Module, Z: torch.Tensor, rows: torch.Tensor) -> np.ndarray:
    """The network's output (float64) for the windows ``Z[rows]``, in eval mode, ``_CHUNK`` windows at a time."""
    net.eval()
    with torch.inference_mode():
        parts = [net(Z[rows[i:i + _CHUNK]]) for i in range(0, len(rows), _CHUNK)]
    return torch.cat(parts).double().numpy() if parts else np.empty(0)


def _outputs(task: Task, raw: np.ndarray, residual_std: float,
             mean_abs_return: float) -> tuple[np.ndarray, np.ndarray]:
    """(expected_return, p_up) from the raw output (the return, or P(up)): what ``TrainedModel._outputs`` does."""
    if task is Task.REGRESSION:
        return raw, ndtr(raw / residual_std)
    return (2.0 * raw - 1.0) * mean_abs_return, raw


def _raw(task: Task, output: np.ndarray, target_scale: float) -> np.ndarray:
    """The network's output as the return (regression) or P(up) (classification, from the logit)."""
    return output * target_scale if task is Task.REGRESSION else expit(output)


# --- the trained model -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SequenceModel:
    """A trained network with what scoring a window needs: the column order, the feature set, the training
    normaliser, the regression target's scale, and the training samples' residual spread and mean absolute return
    (the other half of (expected_return, p_up), as in ``TrainedModel``)."""

    spec: SequenceSpec
    feature_columns: tuple[str, ...]
    feature_set: str
    normalizer: Normalizer
    module: nn.Module = field(compare=False, repr=False)
    residual_std: float
    mean_abs_return: float
    target_scale: float  # the regression target was y / target_scale; 1 for classification
    best_epoch: int  # the epoch whose weights were kept (1-based)
    epochs_run: int
    extras: Mapping[str, str] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if len(self.feature_columns) != self.normalizer.mean.shape[0]:
            raise ValueError(f"{len(self.feature_columns)} feature columns but the normalizer has "
                             f"{self.normalizer.mean.shape[0]}")
        self.module.eval()

    @property
    def window(self) -> int:
        return self.spec.window

    def predict_windows(self, W: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(expected_return, p_up) per window: W (m, window, k), raw feature rows in ``feature_columns`` order,
        oldest first (``windows`` builds them)."""
        W = np.asarray(W, dtype=np.float64)
        k = len(self.feature_columns)
        if W.ndim != 3 or W.shape[1:] != (self.window, k):
            raise ValueError(f"W must have shape (windows, {self.window}, {k}), got {W.shape}")
        if not np.isfinite(W).all():
            raise ValueError("W has NaN or infinite values (windows must not reach into warm-up rows)")
        Z = ((W - self.normalizer.mean) / self.normalizer.std).astype(np.float32)
        with _deterministic():
            output = _forward(self.module, torch.from_numpy(Z), torch.arange(len(Z)))
        return _outputs(self.spec.task, _raw(self.spec.task, output, self.target_scale), self.residual_std,
                        self.mean_abs_return)

    def predict_recent(self, rows: Sequence[Mapping[str, float | None]]) -> tuple[float, float] | None:
        """(expected_return, p_up) from one symbol's latest feature rows by name, oldest first (the last
        ``window`` are used); None while there are fewer or any of them is still warming up (None or NaN)."""
        if len(rows) < self.window:
            return None
        what = f"sequence model {self.spec.architecture}, feature set {self.feature_set}"
        recent = [feature_row(r, self.feature_columns, what) for r in rows[len(rows) - self.window:]]
        if any(x is None for x in recent):
            return None
        values = np.stack(recent)  # type: ignore[arg-type]
        expected, p_up = self.predict_windows(values[None])
        return float(expected[0]), float(p_up[0])

    def save(self, directory: Path) -> None:
        """``model.json`` (everything but the weights) and ``model.pt`` (the network's state_dict)."""
        directory.mkdir(parents=True, exist_ok=True)
        torch.save(self.module.state_dict(), directory / WEIGHTS_FILE)
        meta = {
            "kind": KIND, "format_version": FORMAT_VERSION, "spec": self.spec.model_dump(mode="json"),
            "feature_columns": list(self.feature_columns), "feature_set": self.feature_set,
            "normalizer": self.normalizer.to_dict(), "residual_std": self.residual_std,
            "mean_abs_return": self.mean_abs_return, "target_scale": self.target_scale,
            "best_epoch": self.best_epoch, "epochs_run": self.epochs_run, "weights_file": WEIGHTS_FILE,
            "extras": dict(self.extras),
        }
        (directory / "model.json").write_text(json.dumps(meta, indent=1, sort_keys=True))

    @classmethod
    def load(cls, directory: Path) -> SequenceModel:
        path = directory / "model.json"
        if not path.is_file():
            raise ValueError(f"no model.json in {directory}")
        meta = json.loads(path.read_text())
        if meta.get("kind") != KIND or meta.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{path}: kind {meta.get('kind')!r} format {meta.get('format_version')!r}, this code "
                             f"reads kind {KIND!r} format {FORMAT_VERSION}")
        weights = directory / meta["weights_file"]
        if not weights.is_file():
            raise ValueError(f"{path} names weights {meta['weights_file']!r}, which {directory} lacks")
        spec = SequenceSpec.model_validate(meta["spec"])
        columns = tuple(meta["feature_columns"])
        module = _network(spec, len(columns))
        module.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
        return cls(spec=spec, feature_columns=columns, feature_set=meta["feature_set"],
                   normalizer=Normalizer.from_dict(meta["normalizer"]), module=module,
                   residual_std=float(meta["residual_std"]), mean_abs_return=float(meta["mean_abs_return"]),
                   target_scale=float(meta["target_scale"]), best_epoch=int(meta["best_epoch"]),
                   epochs_run=int(meta["epochs_run"]),
                   extras={str(k): str(v) for k, v in meta.get("extras", {}).items()})


def signature_example(model: SequenceModel) -> np.ndarray:
    """One window (1, window, k) of the training means: the input example the registry's signature is made of."""
    return np.broadcast_to(model.normalizer.mean, (1, model.window, len(model.feature_columns))).copy()


# --- training --------------------------------------------------------------------------------------------------


def fit_sequence(spec: SequenceSpec, X: np.ndarray, y: np.ndarray, groups: np.ndarray,
                 feature_columns: Sequence[str], feature_set: str) -> SequenceModel:
    """Train on the training rows only: X (rows x features, ``feature_columns`` order, rows in time order), y the
    rows' forward log returns (the classifier learns y > 0), groups the rows' symbol codes. Every row with a full
    window of its symbol is a sample; those ending in the latest ``validation_fraction`` of the rows are the
    early-stopping fold. The normaliser comes from X; the scale and both statistics from the samples."""
    X = _finite_matrix(X, "X")
    y = np.asarray(y, dtype=np.float64)
    groups = np.asarray(groups)
    columns = tuple(feature_columns)
    n = X.shape[0]
    if y.shape != (n,):
        raise ValueError(f"y must have shape ({n},) to match X, got {y.shape}")
    if not np.isfinite(y).all():
        raise ValueError("y has NaN or infinite values")
    if groups.shape != (n,):
        raise ValueError(f"groups must have shape ({n},) to match X, got {groups.shape}")
    if len(columns) != X.shape[1] or len(set(columns)) != len(columns):
        raise ValueError(f"feature_columns must name X's {X.shape[1]} columns once each, got {len(columns)} names "
                         f"({len(set(columns))} distinct)")
    rows, index = window_rows(groups, spec.window)
    first_validation = n - math.ceil(n * spec.validation_fraction)
    held_out = index >= first_validation
    train_at, valid_at = np.flatnonzero(~held_out), np.flatnonzero(held_out)
    if not len(train_at) or not len(valid_at):
        raise ValueError(f"{n} rows give {len(train_at)} training and {len(valid_at)} validation windows of "
                         f"{spec.window} bars: need at least one of each (more rows, a shorter window or another "
                         f"validation_fraction)")
    sample_y = y[index]
    target = sample_y if spec.task is Task.REGRESSION else (sample_y > 0).astype(np.float64)
    if spec.task is Task.CLASSIFICATION and target[train_at].min() == target[train_at].max():
        raise ValueError("classification needs both up (y > 0) and down (y <= 0) training windows")
    target_scale = 1.0
    if spec.task is Task.REGRESSION:
        target_scale = float(np.std(target[train_at])) or 1.0
    normalizer = Normalizer.fit(X)
    Z = torch.from_numpy(normalizer.transform(X).astype(np.float32))
    R = torch.from_numpy(rows.astype(np.int64))
    T = torch.from_numpy((target / target_scale).astype(np.float32))
    net = _network(spec, X.shape[1])
    with _deterministic(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec.seed)  # dropout masks
        best_epoch, epochs_run, best_state = _train(spec, net, Z, R, T, torch.from_numpy(train_at),
                                                    torch.from_numpy(valid_at))
        net.load_state_dict(best_state)
        output = _forward(net, Z, R)
    raw = _raw(spec.task, output, target_scale)
    mean_abs_return = float(np.abs(sample_y).mean())
    expected, _ = _outputs(spec.task, raw, 1.0, mean_abs_return)
    residual_std = max(float(np.std(sample_y - expected)), MIN_RESIDUAL_STD)
    if not math.isfinite(residual_std):
        raise ValueError("training residuals are not finite (the network diverged: lower the learning rate)")
    return SequenceModel(spec=spec, feature_columns=columns, feature_set=feature_set, normalizer=normalizer,
                         module=net, residual_std=residual_std, mean_abs_return=mean_abs_return,
                         target_scale=target_scale, best_epoch=best_epoch, epochs_run=epochs_run)


def _train(spec: SequenceSpec, net: nn.Module, Z: torch.Tensor, R: torch.Tensor, T: torch.Tensor,
           train_at: torch.Tensor, valid_at: torch.Tensor) -> tuple[int, int, dict[str, torch.Tensor]]:
    """Epochs of shuffled mini-batches until ``patience`` epochs bring no lower validation loss: (best epoch,
    epochs run, the best epoch's weights)."""
    loss_of = nn.MSELoss() if spec.task is Task.REGRESSION else nn.BCEWithLogitsLoss()
    optimiser = torch.optim.AdamW(net.parameters(), lr=spec.learning_rate, weight_decay=spec.weight_decay)
    shuffle = torch.Generator().manual_seed(spec.seed)
    best_loss, best_epoch, best_state, stale, epoch = math.inf, 0, _copy(net), 0, 0
    for epoch in range(1, spec.max_epochs + 1):
        net.train()
        order = train_at[torch.randperm(len(train_at), generator=shuffle)]
        for start in range(0, len(order), spec.batch_size):
            batch = order[start:start + spec.batch_size]
            optimiser.zero_grad(set_to_none=True)
            loss = loss_of(net(Z[R[batch]]), T[batch])
            loss.backward()
            nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            optimiser.step()
        output = torch.from_numpy(_forward(net, Z, R[valid_at]))
        valid_loss = float(loss_of(output, T[valid_at].double()))
        if not math.isfinite(valid_loss):
            raise ValueError(f"validation loss is {valid_loss} at epoch {epoch}: lower the learning rate")
        if valid_loss < best_loss:
            best_loss, best_epoch, best_state, stale = valid_loss, epoch, _copy(net), 0
        else:
            stale += 1
            if stale >= spec.patience:
                break
    return best_epoch, epoch, best_state


def _copy(net: nn.Module) -> dict[str, torch.Tensor]:
    return {name: value.detach().clone() for name, value in net.state_dict().items()}


__all__ = [
    "FORMAT_VERSION", "KIND", "SequenceModel", "SequenceSpec", "WEIGHTS_FILE", "fit_sequence", "signature_example",
    "window_rows", "windows",
]
