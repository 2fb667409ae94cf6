"""Risk decisions (pure): rolling event-time counts per buyer, seller, SKU and address,
rule sets as versioned data, and the decision a rule set makes over a return's features."""
