from quorum.runtime.service import main_for

from .service import FeaturesService, FeaturesSettings

main = main_for(FeaturesService, FeaturesSettings)
