from quorum.runtime.service import main_for

from .service import RiskService, RiskSettings

main = main_for(RiskService, RiskSettings)
