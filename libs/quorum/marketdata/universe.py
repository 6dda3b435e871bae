"""The trading universe: versioned configuration, resolved per exchange against what it actually lists.

A symbol an exchange does not list is reported, never fatal.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Universe:
    version: str
    bases: tuple[str, ...]


UNIVERSE_V1 = Universe(
    version="v1",
    bases=("BTC", "ETH", "BNB", "XRP", "SOL", "TRX", "ADA", "BCH", "XMR", "LINK", "XLM", "HBAR", "LTC", "AVAX", "ZEC",
           "SUI", "SHIB", "TON", "DOT", "UNI", "AAVE", "TAO", "NEAR", "ETC", "ICP", "POL", "KAS", "ALGO", "FIL", "APT"),
)
UNIVERSES = {UNIVERSE_V1.version: UNIVERSE_V1}

# Quote currencies to try, in order of preference, per exchange (USDT where the venue trades it, else USD).
QUOTES: Mapping[str, tuple[str, ...]] = {
    "binance": ("USDT",),
    "kraken": ("USD", "USDT"),
    "coinbase": ("USD", "USDT"),
}
DEFAULT_QUOTES = ("USDT", "USD")


@dataclass(frozen=True)
class Resolution:
    exchange: str
    universe: str
    listed: tuple[str, ...]  # ccxt symbols, e.g. "BTC/USDT"
    unlisted: tuple[str, ...]  # bases the exchange has no active spot market for


def get_universe(version: str) -> Universe:
    try:
        return UNIVERSES[version]
    except KeyError:
        raise ValueError(f"unknown universe {version!r}; known: {sorted(UNIVERSES)}") from None


def resolve(universe: Universe, exchange: str, markets: Mapping[str, Mapping[str, Any]]) -> Resolution:
    """Pick, for each base, the first preferred quote the exchange lists as an active spot market."""
    listed: list[str] = []
    unlisted: list[str] = []
    for base in universe.bases:
        for quote in QUOTES.get(exchange, DEFAULT_QUOTES):
            market = markets.get(f"{base}/{quote}")
            if market and market.get("spot", True) and market.get("active", True) is not False:
                listed.append(f"{base}/{quote}")
                break
        else:
            unlisted.append(base)
    return Resolution(exchange, universe.version, tuple(listed), tuple(unlisted))
