"""The gateway's routes, one module per resource, each a thin ``APIRouter`` over the read models (``queries``)
and the command layer (``commands``), with its dependencies from ``deps``."""
