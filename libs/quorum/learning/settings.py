"""Where the MLflow tracking store and model registry are (``QUORUM_MLFLOW_*``): a tracking server when a URI
is given (docker compose runs one on PostgreSQL), else the local store under the state folder (SQLite and an
artifact folder in ``.quorum/mlflow``; no server needed for ``make dev``)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

if TYPE_CHECKING:
    from quorum.learning.registry import Registry


class RegistrySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="QUORUM_MLFLOW_", extra="ignore", frozen=True)

    tracking_uri: str | None = Field(default=None, description="an MLflow tracking server (http://...) or a "
                                                               "database URI; default: the local store")
    artifact_root: Path | None = Field(default=None, description="artifacts of a database tracking URI")
    state_dir: Path = Field(default=Path(".quorum"), description="the local store lives in <state_dir>/mlflow")

    def registry(self) -> Registry:
        from quorum.learning.registry import Registry

        if self.tracking_uri is None:
            return Registry.local(self.state_dir)
        return Registry(self.tracking_uri, artifact_root=self.artifact_root)

    def describe(self) -> str:
        return self.tracking_uri or f"the local store in {(self.state_dir / 'mlflow').resolve()}"
