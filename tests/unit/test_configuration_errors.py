"""A configuration error names the environment variable to fix (``QUORUM_COUNCIL_STRATEGIES``), not just the
settings field, both when settings are built and when a service refuses to start on them."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from quorum.runtime.settings import ConfigurationError

from services.council.service import CouncilSettings
from services.gateway.service import GatewaySettings
from tests.support import REPO_ROOT


@pytest.mark.parametrize(("value", "why"), [
    ('[{"type": "no-such-strategy"}]', "no-such-strategy"),  # valid JSON, not a strategy
    ('["rsi"]', "valid dictionary"),
    ("rsi,macd", "not valid JSON"),
])
def test_a_bad_strategies_value_names_its_environment_variable(
        clean_env: pytest.MonkeyPatch, value: str, why: str) -> None:
    clean_env.setenv("QUORUM_COUNCIL_STRATEGIES", value)

    with pytest.raises(ConfigurationError, match=r"QUORUM_COUNCIL_STRATEGIES\b") as err:
        CouncilSettings()
    assert why in str(err.value)


def test_aliased_fields_and_keyword_arguments_name_their_variables(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("QUORUM_RISK_PROFILE", "EXTREME")

    with pytest.raises(ConfigurationError) as err:
        GatewaySettings(http_port="not-a-port", api_token="short")
    lines = str(err.value).splitlines()
    assert any(line.startswith("QUORUM_RISK_PROFILE:") and "EXTREME" in line for line in lines), lines
    assert any(line.startswith("QUORUM_GATEWAY_HTTP_PORT:") for line in lines), lines
    assert any(line.startswith("QUORUM_GATEWAY_API_TOKEN:") and "short" not in line for line in lines), lines


def test_a_service_refuses_to_start_and_says_which_variable_is_wrong(clean_env: pytest.MonkeyPatch) -> None:
    env = {**os.environ, "QUORUM_COUNCIL_STRATEGIES": '[{"type": "rsi", "period": -3}]'}
    done = subprocess.run([sys.executable, "-m", "services.council"], cwd=REPO_ROOT, env=env, capture_output=True,
                          text=True, timeout=60)

    assert done.returncode != 0
    assert "QUORUM_COUNCIL_STRATEGIES" in done.stderr and "period" in done.stderr, done.stderr
