"""Runs the whole system locally as separate OS processes: partner doubles and services.

Used by `make demo`, the end-to-end tests and the chaos run. Each process is started with
the same command docker-compose uses (`boomerang run <name>`).
"""
