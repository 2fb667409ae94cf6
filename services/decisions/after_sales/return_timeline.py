"""A return's timeline for the ops dashboard (pure, no I/O): from the coordinator's view of
its saga, every event with the state it moved the saga from and to, the rules that fired,
the risk decision, and the money that moved (the refund, its settlement, who is liable),
in time order. An entry whose time the saga did not keep sits after its step's event."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from services.decisions.money import CURRENCY_EXPONENTS, Money


def shown_amount(amount: Mapping[str, Any] | None) -> str:
    """ "25.99 EUR" for {"amount_minor": 2599, "currency": "EUR"} ("" when there is none)."""
    if not amount or amount.get("currency") not in CURRENCY_EXPONENTS:
        return ""
    return str(Money(int(amount.get("amount_minor") or 0), amount["currency"]))


def _event_entries(history: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    entries = []
    for item in history:
        commands = [c.get("command", "") for c in item.get("commands") or ()]
        detail = f"{item.get('from', '')} → {item.get('to', '')}"
        if commands:
            detail += f"; sent {', '.join(commands)}"
        if item.get("note"):
            detail += f"; {item['note']}"
        entries.append(
            {
                "at": item.get("at"),
                "kind": "event",
                "title": str(item.get("event_type", "")),
                "detail": detail,
                "step": item.get("step"),
                "state": item.get("to"),
                "event_id": item.get("event_id"),
            }
        )
    return entries


def _at_of_step(events: Sequence[Mapping[str, Any]], step: Any) -> Any:
    """When the event that ended `step` happened: the one after the last event leaving the
    saga in it (rules fire on the event that decides their step); the last event's time
    when the saga is still in it, or never was."""
    last = max((n for n, entry in enumerate(events) if entry.get("step") == step), default=None)
    if last is None:
        return events[-1]["at"] if events else None
    return events[min(last + 1, len(events) - 1)]["at"]


def _rule_entries(view: Mapping[str, Any], events: Sequence[Mapping[str, Any]]) -> list[dict]:
    entries = []
    risk_decided_at = (view.get("risk") or {}).get("decided_at")
    for rule in view.get("rules_fired") or ():
        at = rule.get("at") or (risk_decided_at if rule.get("step") == "RISK" else None)
        effect = rule.get("effect")
        facts = rule.get("facts")
        detail = str(effect) if effect not in (None, "") else ""
        if facts:
            detail += f"{'; ' if detail else ''}facts: {facts}"
        entries.append(
            {
                "at": at or _at_of_step(events, rule.get("step")),
                "kind": "rule",
                "title": f"Rule {rule.get('rule_id', '?')} fired",
                "detail": detail,
                "step": rule.get("step"),
            }
        )
    return entries


def _risk_entries(view: Mapping[str, Any], events: Sequence[Mapping[str, Any]]) -> list[dict]:
    risk = view.get("risk") or {}
    if not risk.get("outcome"):
        return []
    rules = [r.get("rule_id", r) if isinstance(r, Mapping) else r for r in risk.get("rules") or ()]
    detail = f"score {risk.get('score')}" if risk.get("score") is not None else ""
    if rules:
        detail += f"{'; ' if detail else ''}rules: {', '.join(map(str, rules))}"
    entries = [
        {
            "at": risk.get("decided_at") or _at_of_step(events, "RISK"),
            "kind": "risk",
            "title": f"Risk decision: {risk['outcome']}",
            "detail": detail,
            "step": "RISK",
        }
    ]
    verdict = risk.get("verdict")
    if isinstance(verdict, Mapping):
        entries.append(
            {
                "at": verdict.get("decided_at") or _at_of_step(events, "RISK"),
                "kind": "risk",
                "title": f"Reviewer's verdict: {verdict.get('verdict')}",
                "detail": f"by {verdict.get('reviewer', '?')}: {verdict.get('reason', '')}",
                "step": "RISK",
            }
        )
    return entries


def _money_entries(view: Mapping[str, Any], events: Sequence[Mapping[str, Any]]) -> list[dict]:
    refund = view.get("refund") or {}
    entries = []
    if refund.get("issued_at"):
        via = refund.get("provider") or "?"
        reference = refund.get("provider_refund_id") or ""
        entries.append(
            {
                "at": refund["issued_at"],
                "kind": "money",
                "title": "Refund issued by the provider",
                "detail": f"{shown_amount(refund.get('amount'))} to {refund.get('method', '?')}"
                f" via {via}" + (f" ({reference})" if reference else ""),
                "step": "REFUND",
            }
        )
    if refund.get("settled_at"):
        entries.append(
            {
                "at": refund["settled_at"],
                "kind": "money",
                "title": "Refund settled by the provider",
                "detail": shown_amount(refund.get("amount")),
                "step": "REFUND",
            }
        )
    liability = view.get("liability") or {}
    if liability.get("liable"):
        detail = ", ".join(
            f"{k}: {v}" for k, v in liability.items() if k != "liable" and isinstance(v, str | int)
        )
        entries.append(
            {
                "at": (view.get("outcome") or {}).get("at") or view.get("updated_at"),
                "kind": "money",
                "title": f"Liable: {liability['liable']}",
                "detail": detail,
                "step": "REFUND",
            }
        )
    return entries


def return_timeline(view: Mapping[str, Any]) -> dict[str, Any]:
    """{return_id, status, terminal, request, entries: [...]} from the coordinator's view."""
    events = _event_entries(view.get("history") or ())
    others = [
        *_rule_entries(view, events),
        *_risk_entries(view, events),
        *_money_entries(view, events),
    ]
    ordered = sorted(
        [(entry, 0, n) for n, entry in enumerate(events)]
        + [(entry, 1, n) for n, entry in enumerate(others)],
        key=lambda item: (item[0].get("at") or 0, item[1], item[2]),
    )
    request = view.get("request") or {}
    return {
        "return_id": view.get("return_id"),
        "status": view.get("status"),
        "terminal": bool(view.get("terminal")),
        "outcome": view.get("outcome"),
        "request": {
            key: request.get(key)
            for key in (
                "order_ref",
                "buyer_id",
                "seller_id",
                "market",
                "category",
                "reason_code",
                "payment_method",
                "requested_at",
            )
        },
        "entries": [entry for entry, _, _ in ordered],
    }
