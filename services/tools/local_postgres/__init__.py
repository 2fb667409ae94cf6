"""A local PostgreSQL 15 cluster under `.cache/` for development, tests and the demo
(`make pg-up` / `pg-down`), as services/tools/local_kafka is for the broker."""
