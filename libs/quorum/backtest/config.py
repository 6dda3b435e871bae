"""The runner's configuration: the very settings classes the services read, so a backtest or a replay of a
running system decides with what the services decide with (the same ``QUORUM_<SERVICE>_*`` variables)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from quorum.council.decide import CouncilParams
from quorum.council.settings import CouncilConfig
from quorum.domain.models import DEFAULT_MODEL, Predictor
from quorum.indicators import FeatureSetSpec
from quorum.indicators.decide import FeaturesConfig
from quorum.ledger.book import LedgerBook, LedgerParams
from quorum.matching.settings import VenueConfig
from quorum.matching.venue import VenueBook, VenueParams
from quorum.oms.book import OmsBook
from quorum.oms.decide import OmsParams
from quorum.risk.decide import RiskParams
from quorum.risk.settings import RiskSettingsBase
from quorum.types import TradingMode


@dataclass(frozen=True)
class RunnerConfig:
    feature_set: FeatureSetSpec
    council: CouncilParams
    risk: RiskParams
    oms: OmsParams
    venue: VenueParams
    ledger: LedgerParams
    starting_cash: Decimal
    quote_currency: str = "USDT"
    mode: TradingMode = TradingMode.PAPER
    model: tuple[str, str] = DEFAULT_MODEL  # a built-in model (``quorum.domain.models.MODELS``)
    predictor: Predictor | None = None  # a trained model instead (what the learning loop scores); its name,
    # version and run id are in the predictions, hence in what the run is compared by
    described: dict[str, Any] = field(default_factory=dict)  # the settings as given, for the report and the hash

    @property
    def feature_set_version(self) -> str:
        return self._version

    def __post_init__(self) -> None:
        object.__setattr__(self, "_version", self.feature_set.version)

    @property
    def config_hash(self) -> str:
        return hashlib.sha256(json.dumps(self.described, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def oms_book(self) -> OmsBook:
        """Routing authorized: a backtest is an operator's explicit request to trade the history."""
        return OmsBook(routing_connected=True)

    def venue_book(self) -> VenueBook:
        return VenueBook()

    def ledger_book(self) -> LedgerBook:
        return LedgerBook()

    @classmethod
    def from_env(cls, **overrides: Any) -> RunnerConfig:
        """Read every service's settings from the environment (and ``overrides``: ``{"council": {...}}`` per
        service, field name -> value), as the services would."""
        features = FeaturesConfig(**overrides.get("features", {}))
        council = CouncilConfig(**overrides.get("council", {}))
        risk = RiskSettingsBase(**overrides.get("risk", {}))
        venue = VenueConfig(**overrides.get("matching", {}))
        # serialize_as_any: a strategy's own parameters too (typed StrategyBase, they would be dropped, and two
        # configurations differing only in a strategy's parameters would share a hash)
        described = {name: s.model_dump(mode="json", exclude={"database_url", "chain_key", "nats_url"},
                                        serialize_as_any=True)
                     for name, s in (("features", features), ("council", council), ("risk", risk),
                                     ("matching", venue))}
        return cls(feature_set=features.feature_set, council=council.params(), risk=risk.params(),
                   oms=OmsParams(mode=risk.trading_mode, risk_profile=risk.risk_profile.value),
                   venue=venue.params(),
                   ledger=LedgerParams(chain_key=risk.chain_key.get_secret_value().encode(),
                                       quote_currency=risk.quote_currency, starting_cash=risk.paper_starting_cash),
                   starting_cash=risk.paper_starting_cash, quote_currency=risk.quote_currency,
                   mode=risk.trading_mode, described=described)
