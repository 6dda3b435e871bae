"""Pieces of Binance's public API that both fakes (REST and websocket) serve identically."""

from __future__ import annotations

from typing import Any

RATE_LIMITS = [
    {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 6000},
    {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100},
    {"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE", "intervalNum": 5, "limit": 61000},
]


def exchange_info(symbols: list[dict[str, Any]]) -> dict[str, Any]:
    """The ``/api/v3/exchangeInfo`` document ccxt's ``load_markets`` reads."""
    return {"timezone": "UTC", "serverTime": 0, "rateLimits": RATE_LIMITS, "exchangeFilters": [], "symbols": symbols}
