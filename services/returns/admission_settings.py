"""The front door's admission limits from the environment (its composition root reads
them; the decision, services/decisions/admission.py, reads no environment)."""

from __future__ import annotations

import os
from collections.abc import Mapping

from services.decisions.admission import AdmissionLimits


def admission_limits_from_env(env: Mapping[str, str] | None = None) -> AdmissionLimits:
    """BOOMERANG_ADMISSION_MAX_WAIT_S (seconds accepted returns may wait for the
    coordinator; 0 or less: no limit) and BOOMERANG_ADMISSION_MAX_IN_FLIGHT."""
    env = os.environ if env is None else env
    defaults = AdmissionLimits()
    max_wait_s = float(env.get("BOOMERANG_ADMISSION_MAX_WAIT_S", defaults.max_wait_s))
    return AdmissionLimits(
        max_wait_s=max_wait_s if max_wait_s > 0 else float("inf"),
        max_in_flight=int(env.get("BOOMERANG_ADMISSION_MAX_IN_FLIGHT", defaults.max_in_flight)),
    )
