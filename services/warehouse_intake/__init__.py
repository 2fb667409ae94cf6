"""Warehouse intake: decides each returned item's disposition and moves stock exactly once."""
