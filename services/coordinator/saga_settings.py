"""The saga's bounds and deadlines from the environment (the coordinator's composition root
reads them; the saga itself reads no environment)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import fields

from services.decisions.saga import SagaConfig


def saga_config_from_env(env: Mapping[str, str] | None = None) -> SagaConfig:
    """SAGA_MAX_TRIES, SAGA_BACKOFF_BASE_MS, SAGA_<NAME>_MS for every deadline, …; the risk
    step is on unless SAGA_RISK_STEP=0."""
    env = os.environ if env is None else env
    values: dict[str, int] = {"risk_step": 1}
    for config_field in fields(SagaConfig):
        key = "SAGA_" + config_field.name.upper()
        if key in env:
            values[config_field.name] = int(env[key])
    return SagaConfig(**values)
