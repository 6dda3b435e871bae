from quorum.runtime.service import main_for

from .service import MatchingService, MatchingSettings

main = main_for(MatchingService, MatchingSettings)
