from quorum.runtime.service import main_for

from .service import MarketDataService
from .settings import MarketDataSettings

main = main_for(MarketDataService, MarketDataSettings)
