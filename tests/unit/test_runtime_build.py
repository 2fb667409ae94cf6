"""What ships: the wheel and the runtime image hold the services, their runtime and the
on-call commands; the partner doubles, the local broker, the demo/chaos drivers and the
sample round trip stay in the checkout (the doubles get an image of their own)."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import yaml
from setuptools import find_packages

from services.cli import PARTNER_DOUBLES

REPO = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
TOOLING = ("services.tools.partners", "services.tools.local_kafka", "services.tools.local_stack")
NOT_IN_RUNTIME_IMAGE = TOOLING


def shipped_packages() -> set[str]:
    found = PYPROJECT["tool"]["setuptools"]["packages"]["find"]
    return set(find_packages(str(REPO), include=found["include"], exclude=found["exclude"]))


def module_of(path: Path) -> str:
    return ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")


def test_the_wheel_ships_the_runtime_and_the_on_call_commands_but_no_tooling():
    packages = shipped_packages()
    assert {"services.decisions.saga", "services.refund", "services.tools.oncall"} <= packages
    assert not [p for p in packages if p.startswith(TOOLING)]


def _guarded(tree: ast.Module) -> set[int]:
    """Lines of imports inside `try: … except ModuleNotFoundError` (optional in a build)."""
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try) and any(
            isinstance(h.type, ast.Name) and h.type.id == "ModuleNotFoundError"
            for h in node.handlers
        ):
            lines |= {n.lineno for n in ast.walk(node) if isinstance(n, ast.ImportFrom)}
    return lines


def test_nothing_that_ships_imports_what_does_not_unless_it_may_be_missing():
    packages = shipped_packages()
    problems = []
    for path in (REPO / "services").rglob("*.py"):
        module = module_of(path)
        if module.rsplit(".", 1)[0] not in packages and module not in packages:
            continue
        if module.startswith(NOT_IN_RUNTIME_IMAGE):
            continue
        tree = ast.parse(path.read_text())
        optional = _guarded(tree)
        imports = [n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module]
        problems += [
            f"{module}:{node.lineno} imports {node.module}"
            for node in imports
            if node.module.startswith(NOT_IN_RUNTIME_IMAGE) and node.lineno not in optional
        ]
    assert problems == []


def test_the_runtime_image_leaves_the_tooling_out_and_the_doubles_image_adds_them():
    dockerfile = (REPO / "deploy/docker/Dockerfile").read_text()
    source, rest = dockerfile.split("AS runtime")
    runtime, doubles = rest.split("AS partner-doubles")
    pruned = source.split("RUN rm -rf", 1)[1]
    for module in NOT_IN_RUNTIME_IMAGE:
        assert module.replace(".", "/") in pruned  # pruned before any runtime layer
    assert "COPY --from=source /src/services/ services/" in runtime
    assert "COPY services/" not in runtime  # no layer of the runtime holds the tooling
    assert "COPY deploy/policies/" in runtime  # the front door decides with them
    assert "COPY services/tools/partners/" in doubles


def test_compose_runs_the_services_from_the_runtime_image_and_the_partners_from_theirs():
    services = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]
    partners = PARTNER_DOUBLES
    for name, service in services.items():
        if "build" not in service:
            continue
        wanted = "partner-doubles" if name in partners else "runtime"
        assert service["build"]["target"] == wanted, name
