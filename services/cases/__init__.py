"""Support cases: tickets become cases with a type and an SLA, assigned, escalated when
overdue and closed with an outcome, by support agents over HTTP or `boomerang cases`."""
