from quorum.runtime.service import main_for

from .service import InferenceService, InferenceSettings

main = main_for(InferenceService, InferenceSettings)
