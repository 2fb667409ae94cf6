"""A service process's garbage collector settings (services/engine/collector.py)."""

from __future__ import annotations

import gc

from services.engine import collector
from services.engine.settings import ServiceSettings


def test_tune_sets_the_young_generation_and_zero_keeps_pythons_default() -> None:
    before = gc.get_threshold()
    try:
        collector.tune(0)
        assert gc.get_threshold() == before
        collector.tune(12_345)
        assert gc.get_threshold() == (12_345, before[1], before[2])
    finally:
        gc.set_threshold(*before)


def test_the_setting_comes_from_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9")
    monkeypatch.setenv("BOOMERANG_GC_YOUNG_OBJECTS", "0")
    assert ServiceSettings.from_env("pickup", 8000).gc_young_objects == 0
    monkeypatch.delenv("BOOMERANG_GC_YOUNG_OBJECTS")
    assert ServiceSettings.from_env("pickup", 8000).gc_young_objects == collector.YOUNG_OBJECTS
