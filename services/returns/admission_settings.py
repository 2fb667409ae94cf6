"""The front door's admission limits from the environment (its composition root reads
them; the decision, services/decisions/admission.py, reads no environment)."""

from __future__ import annotations

import os
from collections.abc import Mapping

from services.decisions.admission import AdmissionLimits
from services.decisions.admission_pace import PaceSettings


def admission_limits_from_env(env: Mapping[str, str] | None = None) -> AdmissionLimits:
    """BOOMERANG_ADMISSION_MAX_PIPELINE_WAIT_S (seconds a return taken now may be expected
    to wait in the services' queues), BOOMERANG_ADMISSION_EARLY_SHARE (from this share of it
    some new returns are refused), BOOMERANG_ADMISSION_MAX_WAIT_S (seconds the oldest
    returns.events record may wait for the coordinator), BOOMERANG_ADMISSION_MAX_IN_FLIGHT;
    a wait limit of 0 or less: no limit."""
    env = os.environ if env is None else env
    defaults = AdmissionLimits()
    return AdmissionLimits(
        max_pipeline_wait_s=_seconds(
            env, "BOOMERANG_ADMISSION_MAX_PIPELINE_WAIT_S", defaults.max_pipeline_wait_s
        ),
        early_share=min(
            1.0, max(0.0, float(env.get("BOOMERANG_ADMISSION_EARLY_SHARE", defaults.early_share)))
        ),
        max_wait_s=_seconds(env, "BOOMERANG_ADMISSION_MAX_WAIT_S", defaults.max_wait_s),
        max_in_flight=int(env.get("BOOMERANG_ADMISSION_MAX_IN_FLIGHT", defaults.max_in_flight)),
    )


def pace_settings_from_env(
    env: Mapping[str, str] | None = None, limits: AdmissionLimits | None = None
) -> PaceSettings:
    """BOOMERANG_ADMISSION_PACE (`off`: no pace), BOOMERANG_ADMISSION_PACE_CUT (the factor
    of a cut), BOOMERANG_ADMISSION_PACE_GROWTH (per second),
    BOOMERANG_ADMISSION_PACE_MIN_RATE. The pace is cut where the early refusals start
    (`limits`: the pipeline wait's limit × the early share), and never when that limit is
    off."""
    env = os.environ if env is None else env
    limits = admission_limits_from_env(env) if limits is None else limits
    defaults = PaceSettings()
    return PaceSettings(
        slow_from_s=limits.max_pipeline_wait_s * limits.early_share,
        cut=min(1.0, max(0.05, float(env.get("BOOMERANG_ADMISSION_PACE_CUT", defaults.cut)))),
        growth=max(0.0, float(env.get("BOOMERANG_ADMISSION_PACE_GROWTH", defaults.growth))),
        min_rate=max(0.1, float(env.get("BOOMERANG_ADMISSION_PACE_MIN_RATE", defaults.min_rate))),
        enabled=env.get("BOOMERANG_ADMISSION_PACE", "on").lower() not in ("off", "0", "false"),
    )


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    value = float(env.get(name, default))
    return value if value > 0 else float("inf")
