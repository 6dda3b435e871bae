"""Risk's view of cash and positions against the ledger's, pure. Risk keeps its own projection (to decide fast,
without asking the ledger), so a lost or doubled settlement would silently skew every later verdict; comparing
the two books catches it.

Differences while orders settle are normal (the ledger posts each fill, risk settles an order when it ends),
so a divergence counts only when it is identical in two consecutive checks with no order activity between.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum

ZERO = Decimal(0)


class Kind(StrEnum):
    CASH = "cash"  # quote currency
    POSITION = "position"  # quantity held of a symbol's base asset


@dataclass(frozen=True)
class BookView:
    """One side's books: quote cash and the quantity held per symbol (a missing symbol holds nothing)."""

    cash: Decimal
    positions: Mapping[str, Decimal] = field(default_factory=dict)


def risk_view(available_cash: Decimal, reserved_cash: Decimal, positions: Mapping[str, Decimal]) -> BookView:
    """Risk sets cash aside for an approved buy until its order ends; the ledger still counts it as cash until a
    fill spends it, so the comparable figure is what is available plus what is reserved."""
    return BookView(cash=available_cash + reserved_cash, positions=positions)


@dataclass(frozen=True, order=True)
class Divergence:
    kind: Kind
    asset: str  # the currency (cash) or the symbol (position)
    risk: Decimal
    ledger: Decimal

    @property
    def difference(self) -> Decimal:
        """Risk's figure minus the ledger's."""
        return self.risk - self.ledger


def compare(risk: BookView, ledger: BookView, currency: str) -> tuple[Divergence, ...]:
    """Every figure on which the two books differ, cash first, then positions by symbol; () when they agree."""
    out = [Divergence(Kind.CASH, currency, risk.cash, ledger.cash)] if risk.cash != ledger.cash else []
    for symbol in sorted(set(risk.positions) | set(ledger.positions)):
        mine, theirs = risk.positions.get(symbol, ZERO), ledger.positions.get(symbol, ZERO)
        if mine != theirs:
            out.append(Divergence(Kind.POSITION, symbol, mine, theirs))
    return tuple(out)


@dataclass(frozen=True)
class Check:
    """One observation: the divergences seen, and a marker of the order activity so far (anything that changes
    whenever an order is settled or a fill is posted)."""

    divergences: tuple[Divergence, ...]
    activity: Hashable


@dataclass(frozen=True)
class Review:
    persistent: tuple[Divergence, ...]  # real, not in flight
    alert: bool  # a persistent set not alerted before: raise the alarm now
    cleared: tuple[tuple[Kind, str], ...]  # alerted before, and the books agree on it now
    alerted: tuple[Divergence, ...]  # what stands alerted after this check (pass it to the next review)


def review(previous: Check | None, current: Check, alerted: tuple[Divergence, ...] = ()) -> Review:
    """Which divergences persisted (identical in ``previous`` and ``current``, no activity between), whether that
    calls for a new alert (a persistent divergence not alerted yet, or one whose figures changed: not one alert
    per check), and which alerted ones are gone.
    An alert stands while its figure still differs, even when activity keeps it from being confirmed again."""
    quiet = previous is not None and previous.activity == current.activity
    before = set(previous.divergences) if previous is not None and quiet else set()
    persistent = tuple(d for d in current.divergences if d in before)
    present = {(d.kind, d.asset) for d in current.divergences}
    cleared = tuple(sorted({(d.kind, d.asset) for d in alerted} - present))
    confirmed = {(d.kind, d.asset) for d in persistent}
    standing = tuple(sorted((*persistent, *(d for d in alerted if (d.kind, d.asset) in present - confirmed))))
    return Review(persistent=persistent, alert=bool(set(persistent) - set(alerted)), cleared=cleared,
                  alerted=standing)
