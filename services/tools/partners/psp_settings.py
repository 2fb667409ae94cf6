"""The PSP double's settings (`PSP_*` variables) and its fault plan (`PSP_FAULTS`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from services.tools.partners import http_support
from services.tools.partners.fault_injection import FaultPlan, codes_field, rate_field
from services.tools.partners.partner_double import faults_from_env
from services.tools.partners.psp_refunds import SERVICE_NAME, TRANSFERS

DEFAULT_DECLINE_CODES = ("account_closed", "card_expired", "do_not_honor")


@dataclass
class PspFaults(FaultPlan):
    """The shared faults plus the PSP's own: declined and pending card refunds, pending
    refunds that fail when they settle, settlement webhooks delivered twice, declined
    charges."""

    decline_rate: float = rate_field()
    decline_codes: tuple[str, ...] = codes_field(DEFAULT_DECLINE_CODES)
    declined_methods: tuple[str, ...] = codes_field(("ALL",))  # or e.g. ["CARD"]
    pending_rate: float = rate_field()
    settlement_failure_rate: float = rate_field()
    webhook_duplicate_rate: float = rate_field()
    charge_decline_rate: float = rate_field()  # buyers' charges (exchange differences)


@dataclass(frozen=True)
class PspSettings:
    host: str = "127.0.0.1"
    port: int = 8092
    ledger_file: Path | None = None
    settle_delay_ms: int = 1000  # a pending card refund
    transfer_settle_ms: int = 3000  # DIRECT_DEBIT and BANK_TRANSFER: "days", compressed
    name: str = SERVICE_NAME  # the "provider" in every refund and webhook
    refund_fee_bps: int = 20  # the fee on each refund in the settlement report
    webhook_url: str | None = None  # settlement webhooks are sent only if set
    webhook_secret: str = "dev-psp-webhook-secret"
    faults: PspFaults = field(default_factory=PspFaults)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> PspSettings:
        """Settings from `PSP_*` variables; ValueError names the variable that is wrong."""
        defaults = cls()
        faults = faults_from_env(PspFaults, env, "PSP_FAULTS")
        return cls(
            host=env.get("PSP_HOST") or defaults.host,
            port=http_support.env_int(env, "PSP_PORT", defaults.port, minimum=0),
            ledger_file=http_support.env_path(env, "PSP_LEDGER_FILE"),
            settle_delay_ms=http_support.env_int(
                env, "PSP_SETTLE_DELAY_MS", defaults.settle_delay_ms, minimum=0
            ),
            transfer_settle_ms=http_support.env_int(
                env, "PSP_TRANSFER_SETTLE_MS", defaults.transfer_settle_ms, minimum=0
            ),
            name=env.get("PSP_NAME") or defaults.name,
            refund_fee_bps=http_support.env_int(
                env, "PSP_REFUND_FEE_BPS", defaults.refund_fee_bps, minimum=0
            ),
            webhook_url=env.get("PSP_WEBHOOK_URL") or None,
            webhook_secret=env.get("PSP_WEBHOOK_SECRET") or defaults.webhook_secret,
            faults=faults,
        )

    def settle_delay_for(self, method: str) -> int:
        """How long a pending refund of `method` takes to settle, in ms."""
        return self.transfer_settle_ms if method in TRANSFERS else self.settle_delay_ms
