from quorum.runtime.service import main_for

from .service import LedgerService, LedgerSettings

main = main_for(LedgerService, LedgerSettings)
