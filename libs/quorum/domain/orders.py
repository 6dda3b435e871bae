"""Order state machine and the order aggregate's fold over fills."""

from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import Decimal

from quorum.types import OrderStatus as S

TRANSITIONS: dict[S, frozenset[S]] = {
    S.PENDING: frozenset({S.SUBMITTED, S.REJECTED, S.CANCELED}),
    S.SUBMITTED: frozenset({S.ACCEPTED, S.PARTIALLY_FILLED, S.FILLED, S.REJECTED, S.CANCELED, S.EXPIRED}),
    S.ACCEPTED: frozenset({S.PARTIALLY_FILLED, S.FILLED, S.CANCELED, S.EXPIRED}),
    S.PARTIALLY_FILLED: frozenset({S.PARTIALLY_FILLED, S.FILLED, S.CANCELED, S.EXPIRED}),
    S.FILLED: frozenset(),
    S.CANCELED: frozenset(),
    S.REJECTED: frozenset(),
    S.EXPIRED: frozenset(),
}


class IllegalTransition(ValueError):
    def __init__(self, current: S, target: S) -> None:
        super().__init__(f"illegal order transition {current} -> {target}")
        self.current, self.target = current, target


def check_transition(current: S, target: S) -> None:
    if target not in TRANSITIONS[current]:
        raise IllegalTransition(current, target)


@dataclass(frozen=True)
class OrderState:
    quantity: Decimal
    status: S = S.PENDING
    filled_quantity: Decimal = Decimal(0)
    quote_spent: Decimal = Decimal(0)
    fees: Decimal = Decimal(0)

    @property
    def average_price(self) -> Decimal | None:
        return None if self.filled_quantity == 0 else self.quote_spent / self.filled_quantity

    def to(self, target: S) -> OrderState:
        check_transition(self.status, target)
        return replace(self, status=target)

    def apply_fill(self, qty: Decimal, price: Decimal, fee: Decimal) -> OrderState:
        filled = self.filled_quantity + qty
        if filled > self.quantity:
            raise ValueError(f"overfill: {filled} > {self.quantity}")
        target = S.FILLED if filled == self.quantity else S.PARTIALLY_FILLED
        check_transition(self.status, target)
        return replace(self, status=target, filled_quantity=filled, quote_spent=self.quote_spent + qty * price,
                       fees=self.fees + fee)

    def accept(self) -> OrderState:
        """The venue acknowledged the order. Its fills travel on another stream and may have come first: an
        order already past SUBMITTED stays where it is."""
        return self.to(S.ACCEPTED) if self.status is S.SUBMITTED else self

    def close(self, final: S, venue_filled: Decimal) -> OrderState | None:
        """The venue ended the order (CANCELED / EXPIRED / REJECTED) after ``venue_filled`` executed. The
        terminal state is taken only once every one of those fills is booked (None: still waiting for fills),
        so an order never goes terminal with executions unaccounted for."""
        if final not in (S.CANCELED, S.EXPIRED, S.REJECTED):
            raise ValueError(f"{final} is not a venue closing status")
        if self.status.is_terminal:
            return self
        if self.filled_quantity < venue_filled:
            return None
        return self.to(final)
