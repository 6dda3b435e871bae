"""Window kernels shared by the streaming and the batch indicators: sums, centred moments and extremes of the
last ``n`` values, each as a streaming class and as a batch function that does the same float operations.

Why bit for bit: MACD subtracts two nearly equal EMAs, %b subtracts the band from the close, a z-score subtracts
the window mean. A last-digit difference between two ways of summing becomes a visible difference there, so the
batch side does exactly what the streaming side does, in the same order:

* A window sum is a running sum ``S_t = S_{t-1} + (x_t - x_{t-n})``, restarted from a plain left-to-right sum of
  the window at the first full window and at every ``t % ANCHOR_EVERY == 0`` (``t`` counts the values this kernel
  has seen). The restarts bound rounding drift however long the history; they depend only on ``t``, so a prefix
  of a series gives the prefix of the results. Streaming pays O(n) per restart: amortised O(1 + n/ANCHOR_EVERY)
  per update. Batch: the restart sums are vectorised over the anchors, and the running part is ``np.cumsum``
  within blocks of ``ANCHOR_EVERY`` rows, which adds sequentially like the loop.
* Centred moments run the same scheme on ``x - c``, ``c`` being the value at the latest anchor, so the squares are
  of deviations rather than of prices: the variance stays accurate when the spread is 1e-6 of the level, where
  ``E[x^2] - E[x]^2`` would lose most of its digits. A window of identical values is recognised exactly (its
  mean is the value, its spread 0): the running sums would leave a rounding residue there, and a standard
  deviation turns a 1e-15 residue into a visible 3e-8.
* Extremes are exact in any order; the streaming side keeps a monotonic deque (amortised O(1)), the batch side
  doubles windows with ``np.maximum`` (log2(n) passes).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator

import numpy as np

ANCHOR_EVERY = 128
"""Window sums restart from a fresh left-to-right sum at this cadence (and at the first full window)."""


def seq_sum(values: Iterable[float]) -> float:
    """Left-to-right float sum. ``sum()`` compensates since Python 3.12; the batch side mirrors this plain order."""
    total = 0.0
    for v in values:
        total += v
    return total


# --- streaming --------------------------------------------------------------------------------------------


class RollingSum:
    """Sum of the last ``n`` values; ``None`` until ``n`` values were seen."""

    __slots__ = ("n", "_window", "_count", "_sum")

    def __init__(self, n: int) -> None:
        if n < 1:
            raise ValueError("window must be >= 1")
        self.n = n
        self._window: deque[float] = deque(maxlen=n)
        self._count = 0
        self._sum = 0.0

    def update(self, x: float) -> float | None:
        t = self._count
        self._count = t + 1
        if t < self.n:
            self._window.append(x)
            if t < self.n - 1:
                return None
            self._sum = seq_sum(self._window)
            return self._sum
        leaving = self._window[0]
        self._window.append(x)
        if t % ANCHOR_EVERY == 0:
            self._sum = seq_sum(self._window)
        else:
            self._sum += x - leaving
        return self._sum


class RollingMoments:
    """Mean and sum of squared deviations (``m2``) of the last ``n`` values; ``None`` until ``n`` were seen."""

    __slots__ = ("n", "_window", "_count", "_c", "_s1", "_s2", "_same")

    def __init__(self, n: int) -> None:
        if n < 1:
            raise ValueError("window must be >= 1")
        self.n = n
        self._window: deque[float] = deque(maxlen=n)
        self._count = 0
        self._c = self._s1 = self._s2 = 0.0
        self._same = 0  # how many values in a row equal their predecessor

    def _restart(self, c: float) -> None:
        s1 = s2 = 0.0
        for v in self._window:
            dev = v - c
            s1 += dev
            s2 += dev * dev
        self._c, self._s1, self._s2 = c, s1, s2

    def update(self, x: float) -> tuple[float, float] | None:
        t = self._count
        self._count = t + 1
        self._same = self._same + 1 if t and x == self._window[-1] else 0
        if t < self.n:
            self._window.append(x)
            if t < self.n - 1:
                return None
            self._restart(x)
        else:
            leaving = self._window[0]
            self._window.append(x)
            if t % ANCHOR_EVERY == 0:
                self._restart(x)
            else:
                c = self._c
                e_in, e_out = x - c, leaving - c
                step = e_in - e_out
                self._s1 += step
                self._s2 += step * (e_in + e_out)
        if self._same >= self.n - 1:
            return x, 0.0
        s1 = self._s1
        m2 = self._s2 - s1 * s1 / self.n
        return self._c + s1 / self.n, (m2 if m2 > 0.0 else 0.0)


class RollingExtreme:
    """Maximum (or minimum) of the last ``n`` values with a monotonic deque; ``None`` until ``n`` were seen."""

    __slots__ = ("n", "_keep_max", "_deque", "_count")

    def __init__(self, n: int, *, maximum: bool) -> None:
        if n < 1:
            raise ValueError("window must be >= 1")
        self.n = n
        self._keep_max = maximum
        self._deque: deque[tuple[int, float]] = deque()
        self._count = 0

    def update(self, x: float) -> float | None:
        t = self._count
        self._count = t + 1
        dq = self._deque
        if self._keep_max:
            while dq and dq[-1][1] <= x:
                dq.pop()
        else:
            while dq and dq[-1][1] >= x:
                dq.pop()
        dq.append((t, x))
        if dq[0][0] <= t - self.n:
            dq.popleft()
        return dq[0][1] if t >= self.n - 1 else None


# --- batch ------------------------------------------------------------------------------------------------


_CHUNK = 256 * ANCHOR_EVERY
"""Batch kernels work through the rows in chunks this long (whole blocks), so their scratch stays in cache."""


def _anchors(size: int, n: int) -> np.ndarray:
    """Rows where a window sum restarts: the first full window, then every multiple of ANCHOR_EVERY after it."""
    multiples = np.arange(0, size, ANCHOR_EVERY)
    return np.concatenate(([n - 1], multiples[multiples > n - 1]))


def _window_sums(values: Iterable[np.ndarray]) -> np.ndarray:
    """Left-to-right sums across the given arrays (one per window position), as ``seq_sum`` adds."""
    total: np.ndarray | None = None
    for v in values:
        total = v.copy() if total is None else np.add(total, v, out=total)
    assert total is not None
    return total


class _Chunk:
    """Rows ``start .. stop - 1`` of a batch kernel, with zeroed step buffers padded to whole blocks."""

    def __init__(self, start: int, stop: int, n: int, anchors: slice, buffers: list[np.ndarray],
                 sums: np.ndarray) -> None:
        self.start, self.stop = start, stop
        self.first_step = min(max(start, n), stop)  # rows before it have no step (warm-up)
        self.anchors = anchors  # the anchors' positions within the anchor arrays
        padded = -(-(stop - start) // ANCHOR_EVERY) * ANCHOR_EVERY
        self.steps = [b[:padded] for b in buffers]
        for b in self.steps:
            b[: self.first_step - start] = 0.0
            b[stop - start:] = 0.0
        self._sums = sums[:padded].reshape(-1, ANCHOR_EVERY)

    @property
    def step_rows(self) -> slice:
        return slice(self.first_step - self.start, self.stop - self.start)

    def running(self, steps: np.ndarray, anchors: np.ndarray, anchor_sums: np.ndarray, out: np.ndarray) -> None:
        """``S[a] = anchor sum`` at each anchor, ``S[t] = S[t-1] + steps[t]`` elsewhere, added in row order."""
        steps[anchors[self.anchors] - self.start] = anchor_sums[self.anchors]  # each block starts at an anchor
        np.cumsum(steps.reshape(-1, ANCHOR_EVERY).T, axis=0, out=self._sums.T)  # sequential within each block
        out[self.start:self.stop] = self._sums.reshape(-1)[: self.stop - self.start]


def _chunks(size: int, n: int, anchors: np.ndarray, buffers: int) -> Iterator[_Chunk]:
    scratch = [np.empty(_CHUNK) for _ in range(buffers)]
    sums = np.empty(_CHUNK)
    starts = range(0, size, _CHUNK)
    bounds = np.searchsorted(anchors, [*starts, size])
    for i, start in enumerate(starts):
        yield _Chunk(start, min(start + _CHUNK, size), n, slice(bounds[i], bounds[i + 1]), scratch, sums)


def rolling_sum(x: np.ndarray, n: int) -> np.ndarray:
    """Batch twin of ``RollingSum``: NaN for the first ``n - 1`` rows."""
    if n < 1:
        raise ValueError("window must be >= 1")
    size = len(x)
    if size < n:
        return np.full(size, np.nan)
    out = np.empty(size)  # every row is written below
    anchors = _anchors(size, n)
    sums = _window_sums(x[anchors - (n - 1) + j] for j in range(n))
    for chunk in _chunks(size, n, anchors, 1):
        lo, hi = chunk.first_step, chunk.stop
        (steps,) = chunk.steps
        np.subtract(x[lo:hi], x[lo - n:hi - n], out=steps[chunk.step_rows])
        chunk.running(steps, anchors, sums, out)
    out[: n - 1] = np.nan
    return out


def constant_windows(x: np.ndarray, n: int) -> np.ndarray:
    """Rows (>= n - 1) whose window of ``n`` values holds a single value."""
    changes = np.empty(len(x), dtype=np.int32)
    changes[0] = 0
    np.cumsum(x[1:] != x[:-1], dtype=np.int32, out=changes[1:])  # value changes up to each row
    return np.flatnonzero(changes[n - 1:] == changes[: len(x) - n + 1]) + (n - 1)


def rolling_moments(x: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Batch twin of ``RollingMoments``: (mean, m2), NaN for the first ``n - 1`` rows."""
    if n < 1:
        raise ValueError("window must be >= 1")
    size = len(x)
    if size < n:
        return np.full(size, np.nan), np.full(size, np.nan)
    mean, m2 = np.empty(size), np.empty(size)  # every row is written below
    centre = x[np.maximum(np.arange(0, size, ANCHOR_EVERY), n - 1)]  # c of each block: its anchor's value
    anchors = _anchors(size, n)
    devs = [x[anchors - (n - 1) + j] - x[anchors] for j in range(n)]
    s1, s2 = _window_sums(devs), _window_sums(d * d for d in devs)
    del devs
    for chunk in _chunks(size, n, anchors, 2):
        lo, hi, rows = chunk.first_step, chunk.stop, chunk.step_rows
        step1, step2 = chunk.steps
        c = np.repeat(centre[chunk.start // ANCHOR_EVERY:(hi - 1) // ANCHOR_EVERY + 1], ANCHOR_EVERY)
        e_in = x[lo:hi] - c[rows]
        e_out = x[lo - n:hi - n] - c[rows]
        np.subtract(e_in, e_out, out=step1[rows])
        np.multiply(step1[rows], np.add(e_in, e_out, out=e_in), out=step2[rows])  # e_in^2 - e_out^2
        chunk.running(step1, anchors, s1, mean)
        chunk.running(step2, anchors, s2, m2)
        part = slice(chunk.start, hi)
        sum1 = mean[part]
        np.maximum(m2[part] - sum1 * sum1 / n, 0.0, out=m2[part])
        np.add(c[: hi - chunk.start], sum1 / n, out=sum1)
    flat = constant_windows(x, n)
    mean[flat], m2[flat] = x[flat], 0.0
    mean[: n - 1] = m2[: n - 1] = np.nan
    return mean, m2


def _rolling_extreme(x: np.ndarray, n: int, pick: np.ufunc) -> np.ndarray:
    if n < 1:
        raise ValueError("window must be >= 1")
    cur, spare = np.array(x, dtype=np.float64), np.empty(len(x))
    span = 1
    while span < n:  # cur[t] covers x[t-span+1 .. t]
        shift = min(span, n - span)
        spare[:shift] = cur[:shift]
        pick(cur[shift:], cur[:-shift], out=spare[shift:])
        cur, spare = spare, cur
        span += shift
    cur[: n - 1] = np.nan
    return cur


def rolling_max(x: np.ndarray, n: int) -> np.ndarray:
    """Batch twin of ``RollingExtreme(maximum=True)``."""
    return _rolling_extreme(x, n, np.maximum)


def rolling_min(x: np.ndarray, n: int) -> np.ndarray:
    """Batch twin of ``RollingExtreme(maximum=False)``."""
    return _rolling_extreme(x, n, np.minimum)
