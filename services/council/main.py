from quorum.runtime.service import main_for

from .service import CouncilService, CouncilSettings

main = main_for(CouncilService, CouncilSettings)
