"""Models: the registry's versions with their metrics, tags and aliases; promoting a version to champion (two
steps, like approving a configuration: the first answers with what changes and a token) and rolling back to the
model served before. Both are audited commands to inference, which loads and checks the model, moves the
``champion`` alias and confirms (or refuses with a reason code)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, status
from fastapi import Path as PathParam
from quorum.events.control import PromoteModel, RollBackModel
from quorum.learning.promotion import CHAMPION
from quorum.learning.registry import UnknownModelError
from quorum.learning.settings import RegistrySettings
from quorum.learning.train import NAME_PATTERN

from ..deps import Actor, Cmd, Conn, Reader
from ..http import CONTROL_RESPONSES
from ..model_queries import model_in_service, registered_versions
from ..model_schemas import ModelInServiceOut, ModelsOut, ModelVersionOut
from ..schemas import ConfirmableRequest, ConfirmationRequired, ControlRequest, ControlResult

router = APIRouter(tags=["models"])
PROMOTE, ROLLBACK = "model_promote", "model_rollback"
NOT_FOUND = {404: {"description": "no such registered model or version"}}
Name = Annotated[str, PathParam(pattern=NAME_PATTERN, description="the registered model")]
Version = Annotated[str, PathParam(pattern=r"^[0-9]{1,9}$", description="its version number")]


async def _versions(name: str | None) -> list[ModelVersionOut]:
    try:
        return await registered_versions(RegistrySettings(), name)
    except UnknownModelError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None


@router.get("/models", response_model=ModelsOut, responses=NOT_FOUND)
async def get_models(_: Reader, conn: Conn, name: Annotated[str | None, Query(pattern=NAME_PATTERN)] = None
                     ) -> ModelsOut:
    """Every registered version (of ``name``) with its metrics, provenance tags and aliases, and the model in
    service."""
    return ModelsOut(registry=RegistrySettings().describe(), versions=await _versions(name),
                     in_service=await model_in_service(conn))


def _figure(metrics: dict[str, float], key: str) -> str:
    value = metrics.get(key)
    return "n/a" if value is None else f"{value:.4g}"


def _warning(found: ModelVersionOut, champion: ModelVersionOut | None, serving: ModelInServiceOut | None) -> str:
    m = found.metrics
    text = (f"Inference will serve {found.name}:{found.version} (run {found.run_id}) as the champion from its next "
            f"candle: out-of-sample direction accuracy {_figure(m, 'oos_direction_accuracy')}, MSE vs naive "
            f"{_figure(m, 'oos_mse_vs_naive')}; promotion gate: {found.tags.get('promotion', 'not recorded')}.")
    if champion is not None:
        text += (f" The champion now is version {champion.version} (direction accuracy "
                 f"{_figure(champion.metrics, 'oos_direction_accuracy')}).")
    if serving is not None:
        text += f" In service now: {serving.model_name}@{serving.version}; a rollback returns to it."
    return text


@router.post("/models/{name}/versions/{version}/promote", response_model=ControlResult,
             responses={202: {"model": ConfirmationRequired, "description": "confirm with the token"},
                        **NOT_FOUND, **CONTROL_RESPONSES})
async def promote_model(actor: Actor, commands: Cmd, conn: Conn, name: Name, version: Version,
                        body: ConfirmableRequest | None = None) -> Any:
    """Make a registered version the champion and serve it (two steps: the first answers with the warning and a
    token). Inference refuses an incompatible (INCOMPATIBLE_FEATURES), too old (MODEL_TOO_OLD) or unloadable
    (MODEL_LOAD_FAILED) one; the alias moves only once it serves the version."""
    body = body or ConfirmableRequest()
    versions = await _versions(name)
    found = next((v for v in versions if v.version == version), None)
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"model {name!r} has no version {version}")
    champion = next((v for v in versions if CHAMPION in v.aliases), None)
    first = await commands.confirm_step(actor, PROMOTE, body.confirmation_token,
                                        {"model_name": name, "version": version},
                                        _warning(found, champion, await model_in_service(conn)))
    if first is not None:
        return first
    return await commands.control(PromoteModel, PROMOTE, actor, body.reason, model_name=name, version=version)


@router.post("/models/{name}/rollback", response_model=ControlResult, responses=CONTROL_RESPONSES)
async def roll_back_model(actor: Actor, commands: Cmd, name: Name, body: ControlRequest | None = None) -> Any:
    """Serve the model served before the current one again (the champion alias moves back with it). Refused when
    ``name`` is not in service (NOT_IN_SERVICE) or nothing came before it (NO_PREVIOUS_MODEL)."""
    return await commands.control(RollBackModel, ROLLBACK, actor, body.reason if body else "", model_name=name)
