"""ccxt exchanges for public market data, and what a failing one raises.

Library code only: the caller owns (and closes) the exchanges made here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import ccxt
import ccxt.async_support
import ccxt.pro

# What a failing source raises: ccxt wraps HTTP and websocket trouble in its own errors; sockets may leak OSError.
SOURCE_ERRORS: tuple[type[BaseException], ...] = (ccxt.BaseError, OSError)

# Per-exchange options so that loading markets fetches spot markets only (binance loads futures by default).
_SPOT_ONLY_OPTIONS: Mapping[str, Mapping[str, Any]] = {
    "binance": {"fetchMarkets": {"types": ["spot"]}},
}


def make_exchange(
    exchange_id: str,
    *,
    urls: Mapping[str, Any] | None = None,
    base_url: str | None = None,
    pro: bool = True,
    numbers_as_text: bool = False,
    config: Mapping[str, Any] | None = None,
) -> Any:
    """A keyless, rate-limited, spot-only ccxt exchange for public data.

    ``pro`` picks the ccxt.pro (websocket) class where ccxt.pro has one, else the REST-only async class, whose
    feeds then poll. ``urls`` is deep-merged into ``exchange.urls['api']`` so tests can point REST and websocket
    endpoints at local servers (binance: ``{"public": "http://h/api/v3", "ws": {"spot": "ws://h/stream/ws"}}``);
    ``base_url`` moves every REST base URL to another host keeping its path (a mirror or a local fake:
    ``https://api.binance.com/api/v3`` -> ``{base_url}/api/v3``). ``numbers_as_text`` keeps the exchange's text
    for prices (every digit reaches Decimal; used by the backfill, whose rows go straight to the database).
    ``newUpdates`` is off because feeds diff the recent candle window themselves (a revision of an older candle
    would otherwise be invisible).
    """
    module = ccxt.pro if pro and exchange_id in ccxt.pro.exchanges else ccxt.async_support
    if exchange_id not in module.exchanges:
        raise ValueError(f"unknown ccxt exchange {exchange_id!r}")
    options = {"defaultType": "spot", **_SPOT_ONLY_OPTIONS.get(exchange_id, {})}
    settings: dict[str, Any] = {"enableRateLimit": True, "newUpdates": False, **(config or {})}
    settings["options"] = {**options, **settings.get("options", {})}
    exchange = getattr(module, exchange_id)(settings)
    if numbers_as_text:
        exchange.number = str
    if base_url:
        base = base_url.rstrip("/")
        for name, url in list(exchange.urls["api"].items()):
            if isinstance(url, str):
                exchange.urls["api"][name] = base + urlsplit(url).path
    if urls:
        api = exchange.urls.get("api")
        exchange.urls["api"] = exchange.deep_extend(api, dict(urls)) if isinstance(api, dict) else dict(urls)
    return exchange
