"""The service packages that keep an OpenAPI document (services/<package>/openapi.json)."""

SERVICES = (
    "returns",
    "inspection",
    "pickup",
    "coordinator",
    "refund",
    "warehouse_intake",
    "settlement",
    "risk",
    "notifications",
    "cases",
    "ops",
)
