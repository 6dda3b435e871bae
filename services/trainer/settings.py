"""The trainer's settings (``QUORUM_TRAINER_*``): its claim's lease, how often it reports, and when it retrains on
its own. Where models are registered is ``QUORUM_MLFLOW_*`` and what promotes them ``QUORUM_LEARNING_*``, shared
with ``quorum train``."""

from __future__ import annotations

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict
from quorum.learning.train import TrainingRequest
from quorum.runtime.settings import ServiceSettings


class TrainerSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="QUORUM_TRAINER_", extra="ignore", frozen=True)

    http_port: int = 8109
    consume_batch: int = Field(default=1, ge=1, le=1000, description="commands fetched at once: one, so a busy "
                               "trainer leaves the next ones to the others")
    trainer_id: str | None = Field(default=None, max_length=200, description="who claims jobs (default: "
                                                                              "host:pid and a random suffix)")
    lease_s: float = Field(default=60.0, ge=5, le=3600, description="a RUNNING job whose heartbeat is older than "
                                                                    "this is taken over by any trainer")
    takeover_every_s: float = Field(default=15.0, gt=0, le=3600, description="how often an idle trainer looks for "
                                                                             "jobs to take over or left queued")
    progress_every_s: float = Field(default=1.0, ge=1.0, le=60, description="progress is written and published at "
                                                                            "most this often")
    stop_timeout_s: float = Field(default=30.0, gt=0, le=600, description="how long a stopping trainer waits for "
                                                                          "its job to reach a progress report")
    retrain_every_h: float = Field(default=0.0, ge=0, le=24 * 365, description="queue default_request every so "
                                                                               "many hours (0: off)")
    retrain_on_drift: bool = Field(default=False, description="queue default_request when inference reports drift")
    default_request: TrainingRequest = Field(default_factory=TrainingRequest,
                                             description="what scheduled and drift retraining train (JSON)")

    @model_validator(mode="after")
    def _heartbeat_within_lease(self) -> TrainerSettings:
        if self.progress_every_s * 3 > self.lease_s:
            raise ValueError(f"progress_every_s ({self.progress_every_s}) must be at most a third of lease_s "
                             f"({self.lease_s}): the heartbeat rides on the progress reports")
        return self
