from quorum.runtime.service import main_for

from .service import MarketDataService, MarketDataSettings

main = main_for(MarketDataService, MarketDataSettings)
