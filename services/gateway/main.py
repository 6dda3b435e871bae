from quorum.runtime.service import main_for

from .service import GatewayService, GatewaySettings

main = main_for(GatewayService, GatewaySettings)
