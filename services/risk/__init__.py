"""Risk (issue 21, in progress): the adapters around services/decisions/risk. So far the
back-test command; the risk service follows."""
