"""Settlement (pure): who pays for a return, as double-entry journal entries balanced per
currency, converted into the seller's settlement currency with the rounding residue booked
explicitly. The settlement service (services/settlement) stores them in PostgreSQL."""
