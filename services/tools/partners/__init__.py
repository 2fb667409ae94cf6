"""Partner doubles: real local HTTP servers standing in for the carrier and the payment provider."""
