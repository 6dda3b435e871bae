"""The model registry as the gateway reads it (MLflow, through ``RegistrySettings``: the same store the trainer
writes and inference loads from) and the model in service (``model_selection``, inference's record)."""

from __future__ import annotations

import asyncio
import functools
import math
import threading
from typing import Any

from quorum.db.tables import model_selection
from quorum.learning.registry import ModelVersionInfo, Registry
from quorum.learning.settings import RegistrySettings
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from .model_schemas import ModelInServiceOut, ModelVersionOut

_opening = threading.Lock()


@functools.lru_cache(maxsize=4)
def _registry(settings: RegistrySettings) -> Registry:
    return settings.registry()


def _open(settings: RegistrySettings) -> Registry:
    with _opening:  # MLflow creates a fresh local store on first use: once, not once per request
        return _registry(settings)


def version_out(info: ModelVersionInfo) -> ModelVersionOut:
    return ModelVersionOut(name=info.name, version=info.version, run_id=info.run_id, aliases=list(info.aliases),
                           metrics={k: v for k, v in info.metrics.items() if math.isfinite(v)}, tags=info.tags,
                           created_at=info.created_at)


async def registered_versions(settings: RegistrySettings, name: str | None = None) -> list[ModelVersionOut]:
    """Every registered version (of ``name``); MLflow blocks, so it runs in a worker thread. Raises
    ``UnknownModelError`` for an unknown ``name``."""
    def read() -> list[ModelVersionOut]:
        return [version_out(v) for v in _open(settings).versions(name)]

    return await asyncio.to_thread(read)


def in_service_of(row: Any) -> ModelInServiceOut | None:
    """A ``model_selection`` row as the model in service."""
    if row is None:
        return None
    previous = f"{row.previous_model_name}@{row.previous_version}" if row.previous_model_name else None
    return ModelInServiceOut(model_name=row.model_name, version=row.version, run_id=row.run_id, source=row.source,
                             since=row.updated_at, previous=previous)


async def model_in_service(conn: AsyncConnection) -> ModelInServiceOut | None:
    return in_service_of((await conn.execute(select(model_selection))).first())
