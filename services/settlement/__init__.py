"""The settlement service: a double-entry ledger in PostgreSQL fed from the return events
(who pays for every return), settlement cycles and statements, reconciliation with the
payment providers' reports. Its decisions are pure (services/decisions/settlement)."""
