"""On-call tooling behind the `boomerang` command (dead letters, …)."""
