"""The pure core (services/decisions) does no I/O, not even transitively, and reads no
environment, clock or randomness: each module is imported in a fresh interpreter, which must
not load a Kafka, HTTP, YAML/JSON Schema, logging or socket module; and its source must not
import or call what reads the outside world (the caller passes time and ids in)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CORE = REPO / "services" / "decisions"
MODULES = sorted(
    ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
    for path in CORE.rglob("*.py")
)
# Loaded transitively, any of these means the module reaches I/O.
IO_MODULES = (
    "aiokafka",
    "faust",
    "mode",
    "httpx",
    "aiohttp",
    "yaml",
    "jsonschema",
    "structlog",
    "socket",
    "asyncio",
    "ssl",
    "fastavro",
    "click",
    "rich",
)
# Imported directly, these read the environment, the clock, randomness, files or processes.
FORBIDDEN_IMPORTS = frozenset(
    {"os", "time", "random", "secrets", "pathlib", "subprocess", "threading", "socket", "io"}
)
FORBIDDEN_CALLS = frozenset(
    {
        "uuid.uuid1",
        "uuid.uuid4",
        "datetime.now",
        "datetime.utcnow",
        "datetime.today",
        "date.today",
        "open",
        "input",
        "print",
    }
)

PROBE = """
import importlib, json, sys
importlib.import_module(sys.argv[1])
print(json.dumps(sorted(name for name in sys.modules if name.split(".")[0] in sys.argv[2:])))
"""


def test_the_core_has_modules_to_check() -> None:
    assert "services.decisions.saga.transitions" in MODULES
    assert "services.decisions.refunds.refund_arithmetic" in MODULES
    assert len(MODULES) >= 25


@pytest.mark.parametrize("module", MODULES)
def test_importing_a_core_module_loads_no_io_module(module: str) -> None:
    probe = subprocess.run(
        [sys.executable, "-c", PROBE, module, *IO_MODULES],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(probe.stdout) == [], f"{module} loads I/O modules"


def _called_name(call: ast.Call) -> str:
    func = call.func
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
        return f"{func.value.id}.{func.attr}"
    if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Attribute):
        return f"{func.value.attr}.{func.attr}"
    return ""


@pytest.mark.parametrize("module", MODULES)
def test_a_core_module_reads_no_environment_clock_randomness_or_files(module: str) -> None:
    path = REPO / Path(*module.split("."))
    source = path.with_suffix(".py") if path.with_suffix(".py").exists() else path / "__init__.py"
    tree = ast.parse(source.read_text())
    problems = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            problems += [a.name for a in node.names if a.name.split(".")[0] in FORBIDDEN_IMPORTS]
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module.split(".")[0] in FORBIDDEN_IMPORTS:
                problems.append(node.module)
            if not node.module.startswith(("services.decisions", "__future__")) and (
                node.module.startswith("services") or node.module.startswith("tests")
            ):
                problems.append(f"{node.module} (outside the core)")
        elif isinstance(node, ast.Call) and _called_name(node) in FORBIDDEN_CALLS:
            problems.append(f"{_called_name(node)}() at line {node.lineno}")
    assert problems == [], f"{module}: {problems}"
