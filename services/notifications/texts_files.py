"""The notification texts on disk: `<lang>.json` per language under
BOOMERANG_NOTIFICATION_TEXTS (deploy/notifications), and each market's language from
deploy/settlement/markets.json (BOOMERANG_MARKET_LANGUAGES; the one sellers' statements
use). A set message_texts.check_texts refuses stops the start (ValueError)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

from services.decisions.notifications.message_texts import MessageTexts, check_texts

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_TEXTS = ROOT / "deploy" / "notifications"
DEFAULT_MARKETS = ROOT / "deploy" / "settlement" / "markets.json"


def load_texts(env: Mapping[str, str] = os.environ) -> MessageTexts:
    folder = Path(env.get("BOOMERANG_NOTIFICATION_TEXTS") or DEFAULT_TEXTS)
    markets_file = Path(env.get("BOOMERANG_MARKET_LANGUAGES") or DEFAULT_MARKETS)
    texts, separators = {}, {}
    for path in sorted(folder.glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        separators[path.stem] = str(data.get("decimal_separator", "."))
        texts[path.stem] = {role: data[role] for role in ("buyer", "seller") if role in data}
    problems = check_texts(texts)
    if problems:
        raise ValueError(f"{folder}: " + "; ".join(problems[:10]))
    markets = json.loads(markets_file.read_text(encoding="utf-8"))
    markets.pop("_doc", None)
    return MessageTexts(texts, markets, separators)
