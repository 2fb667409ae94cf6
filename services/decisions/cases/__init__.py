"""Support cases (pure): what a ticket opens (type, SLA by type and market), and how a case
is assigned, escalated when overdue and closed with an outcome."""
