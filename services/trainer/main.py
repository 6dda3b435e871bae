from quorum.runtime.service import main_for

from .service import TrainerService
from .settings import TrainerSettings

main = main_for(TrainerService, TrainerSettings)
