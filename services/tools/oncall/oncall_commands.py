"""The on-call commands of `boomerang`: replay, dlq, lag and audit (and saga, in saga_commands).

Every command that writes runs as a dry run unless given `--execute`, needs `--reason` to
execute, shows progress on stderr and records an audit event (`write_safeguards`). `--json`
prints one JSON document on stdout. Exit codes: 0 done, 1 refused or failed, 2 bad arguments,
130 stopped by Ctrl-C (with the command that resumes).

Each command lives in its own module: `replay_command`, `dlq_commands`, `lag_command`,
`audit_command`.
"""

from __future__ import annotations

from services.tools.oncall.audit_command import audit
from services.tools.oncall.dlq_commands import dlq
from services.tools.oncall.lag_command import lag
from services.tools.oncall.replay_command import replay

__all__ = ["audit", "dlq", "lag", "replay"]
