from quorum.runtime.service import main_for

from .service import OmsService, OmsSettings

main = main_for(OmsService, OmsSettings)
