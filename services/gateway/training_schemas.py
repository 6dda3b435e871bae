"""Request and response models of the training endpoints: a job is asked for with a ``TrainingRequest``'s fields
(the trainer runs exactly that) and a reason, and shown as its ``training_jobs`` row."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field
from quorum.learning.train import TrainingRequest


class TrainingJobRequest(TrainingRequest):
    """What to train (every field has a default: ``{}`` trains the default global model on every stored candle)
    and why."""

    reason: str = Field(default="", max_length=2000, examples=["weekly retraining"])

    def training_request(self) -> TrainingRequest:
        return TrainingRequest.model_validate(self.model_dump(exclude={"reason"}))


class TrainingJobOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: UUID = Field(description="the job id")
    created_at: datetime
    created_by: str
    request: dict[str, Any] = Field(description="the TrainingRequest as the trainer runs it")
    status: str = Field(description="QUEUED, RUNNING, DONE, FAILED or CANCELED")
    stage: str | None = Field(description="dataset, folds, backtest, fit, register, done")
    progress: float = Field(description="percent, 0 to 100")
    fold: int | None
    folds: int | None
    elapsed_s: float | None
    result: dict[str, Any] | None = Field(description="registered version, dataset, out-of-sample metrics, strategy "
                                                      "metrics per asset, promotion verdict")
    error: str | None
    model_name: str | None
    version: str | None
    run_id: str | None = Field(description="the MLflow run")
    claimed_by: str | None = Field(description="the trainer running it")
    heartbeat_at: datetime | None
    cancel_requested: bool
    started_at: datetime | None
    finished_at: datetime | None
