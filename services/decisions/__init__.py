"""The pure core: policy rules and layers, liability, refund arithmetic and plan, the order
refund ledger, disposition, money and the return saga. Nothing here does I/O, reads the
environment or a clock, or draws random numbers or fresh ids: the caller passes them in
(tests/unit/test_pure_core.py checks it). Loaders and parsers are adapters beside it."""
