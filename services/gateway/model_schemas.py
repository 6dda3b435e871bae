"""Response models of the model endpoints: the registry's versions (metrics, tags, aliases) and the model inference
has in service. Defined apart from ``schemas`` (which imports ``ModelInServiceOut`` for ``/status``)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True, protected_namespaces=())


class ModelInServiceOut(_Out):
    model_name: str
    version: str
    run_id: str | None = Field(description="the MLflow run that trained it (null: a built-in model)")
    source: str = Field(description="champion (the registry alias), selected (an operator's pin) or baseline")
    since: datetime = Field(description="when it went into service")
    previous: str | None = Field(description="the model served before it, name@version: what a rollback restores")


class ModelVersionOut(_Out):
    name: str
    version: str
    run_id: str
    aliases: list[str] = Field(description="champion, challenger")
    metrics: dict[str, float] = Field(description="the run's aggregate metrics (out of sample: oos_*)")
    tags: dict[str, str] = Field(description="provenance: dataset hash and spec, feature set, code version, verdict")
    created_at: datetime


class ModelsOut(_Out):
    registry: str = Field(description="where the registry is")
    versions: list[ModelVersionOut] = Field(description="every registered version, oldest first per model")
    in_service: ModelInServiceOut | None
