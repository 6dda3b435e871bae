"""Risk's state: cash, reservations and positions as risk books them, the halt, the active profile, the kill
switches, the drawdown tracker and each day's starting equity. A fold over the messages risk has applied."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal

from quorum.risk.drawdown import DrawdownState
from quorum.risk.killswitch import GLOBAL, KillState
from quorum.risk.sizing import Holding, PortfolioView
from quorum.types import RiskProfile

ZERO = Decimal(0)
PositionKey = tuple[str, str]  # (exchange, symbol)


@dataclass(frozen=True)
class RiskPosition:
    exchange: str
    symbol: str
    quantity: Decimal = ZERO
    cost: Decimal = ZERO  # quote spent on what is held, buy fees included
    reserved_cash: Decimal = ZERO  # set aside for the pending buy
    pending_client_order_id: str | None = None
    last_price: Decimal | None = None

    @property
    def key(self) -> PositionKey:
        return (self.exchange, self.symbol)

    @property
    def is_held(self) -> bool:
        return self.quantity > 0 or self.reserved_cash > 0


@dataclass(frozen=True)
class Halt:
    halted: bool
    emergency: bool
    reason: str
    updated_by: str


@dataclass(frozen=True)
class ProfileChoice:
    profile: RiskProfile
    updated_by: str


@dataclass(frozen=True)
class KillSwitches:
    state: KillState = field(default_factory=KillState)
    automatic: frozenset[str] = frozenset()  # scopes engaged automatically, for as long as the scope is kept
    updated_by: str = ""

    @staticmethod
    def scopes(state: KillState) -> frozenset[str]:
        """The scopes with anything to keep: an engaged switch or a losing streak."""
        return frozenset(state.losing_streaks) | state.symbols | ({GLOBAL} if state.global_engaged else frozenset())

    def changed(self, state: KillState, actor: str, tripped: frozenset[str] = frozenset()) -> KillSwitches:
        return KillSwitches(state, (self.automatic | tripped) & self.scopes(state), actor)


def day_of(ts: datetime) -> datetime:
    return ts.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


@dataclass(frozen=True)
class RiskBook:
    cash: Decimal  # available quote cash: reservations are already deducted
    positions: Mapping[PositionKey, RiskPosition] = field(default_factory=dict)
    halt: Halt | None = None
    profile: ProfileChoice | None = None
    kill: KillSwitches = field(default_factory=KillSwitches)
    drawdown: DrawdownState | None = None
    day_starts: Mapping[datetime, Decimal] = field(default_factory=dict)  # the days a message needed, at least

    def position(self, exchange: str, symbol: str) -> RiskPosition:
        return self.positions.get((exchange, symbol)) or RiskPosition(exchange, symbol)

    def with_position(self, pos: RiskPosition) -> RiskBook:
        return replace(self, positions={**self.positions, pos.key: pos})

    def active_profile(self, default: RiskProfile) -> RiskProfile:
        return self.profile.profile if self.profile else default

    @property
    def halted(self) -> bool:
        return bool(self.halt and self.halt.halted)

    @property
    def emergency(self) -> bool:
        return bool(self.halt and self.halt.emergency)

    def holdings(self) -> dict[str, Holding]:
        return {p.symbol: Holding(symbol=p.symbol, quantity=p.quantity, mark_price=p.last_price,
                                  reserved=p.reserved_cash, pending=p.pending_client_order_id is not None)
                for p in self.positions.values()}

    def view(self, ts: datetime) -> tuple[RiskBook, PortfolioView]:
        """The portfolio as sizing sees it at ``ts``; the day's starting equity is fixed by the first look."""
        holdings = self.holdings()
        equity = PortfolioView(cash=self.cash, holdings=holdings, day_start_equity=ZERO).equity
        day = day_of(ts)
        book = self if day in self.day_starts else replace(self, day_starts={**self.day_starts, day: equity})
        kill = self.kill.state
        return book, PortfolioView(cash=self.cash, holdings=holdings, day_start_equity=book.day_starts[day],
                                   halted=self.halted, kill_global=kill.global_engaged,
                                   killed_symbols=kill.symbols)
