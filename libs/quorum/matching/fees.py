"""Venue fee schedules: a maker and a taker rate, charged per fill in quote or in the asset received."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from quorum.types import Liquidity, Side


class FeeAsset(StrEnum):
    QUOTE = "quote"  # always the quote currency: notional x rate
    RECEIVED = "received"  # what the fill pays out: base on a buy (quantity x rate), quote on a sell


@dataclass(frozen=True)
class VenueFees:
    """Defaults are Binance spot's base tier: 0.1% maker and taker, here charged in quote."""

    maker: Decimal = Decimal("0.001")
    taker: Decimal = Decimal("0.001")
    fee_asset: FeeAsset = FeeAsset.QUOTE

    def __post_init__(self) -> None:
        if not (0 <= self.maker < 1 and 0 <= self.taker < 1):
            raise ValueError(f"fee rates must be in [0, 1): maker={self.maker} taker={self.taker}")

    def charge(self, side: Side, quantity: Decimal, price: Decimal, liquidity: Liquidity,
               base: str, quote: str) -> tuple[Decimal, str]:
        """(fee, currency) of one fill, exact: no rounding, the ledger keeps every digit."""
        rate = self.maker if liquidity == Liquidity.MAKER else self.taker
        if self.fee_asset == FeeAsset.RECEIVED and side == Side.BUY:
            return quantity * rate, base
        return quantity * price * rate, quote

    @classmethod
    def for_venue(cls, config: Mapping[str, Mapping[str, str]], venue: str) -> VenueFees:
        """From settings shaped ``{venue: {"maker": "0.001", "taker": "0.001", "fee_asset": "quote"}}``; a venue
        or key that is missing takes the default."""
        raw = config.get(venue, {})
        return cls(Decimal(str(raw.get("maker", cls.maker))), Decimal(str(raw.get("taker", cls.taker))),
                   FeeAsset(raw.get("fee_asset", cls.fee_asset)))
