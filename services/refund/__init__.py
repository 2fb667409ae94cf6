"""Refund service: pays buyers back through the payment provider, exactly once."""
