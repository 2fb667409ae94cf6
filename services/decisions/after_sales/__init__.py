"""After-sales figures (pure): what a saga's step adds to the KPIs, and the KPIs read back
from the services' metric samples (docs/metrics.md)."""
