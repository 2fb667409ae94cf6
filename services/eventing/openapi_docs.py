"""`GET /openapi.json`: the OpenAPI 3.1 document of a service's HTTP API.

Each service keeps its document next to its code (`services/<service>/openapi.json`) and
serves it as is. The file is read once, when the app is built (not at import time), so a
missing or unreadable document stops the service at start instead of at the first request.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def load_openapi_document(path: Path) -> dict[str, Any]:
    """The document at `path`; ValueError unless it is a JSON object of OpenAPI 3.1."""
    document = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(document, dict) or not str(document.get("openapi", "")).startswith("3.1."):
        raise ValueError(f"{path} is not an OpenAPI 3.1 document")
    return document
