"""The structure stays as built (docs/architecture.md): import-linter's contracts hold, flows stay short, and the
shared services are constructed in one place."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

PRODUCTION = ["core", "model_registry", "services", "training", "monitoring", "deployments", "tasks", "flows", "mlops"]
SERVICES = ("ModelRegistry", "ProjectStore", "RolloutStore", "PredictionLog")


def _python_files() -> list[Path]:
    return [p for package in PRODUCTION for p in sorted((REPO / package).rglob("*.py"))]


def test_import_linter_contracts_hold() -> None:
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert exe, "lint-imports is missing: run `make install`"
    done = subprocess.run([exe, "--no-cache"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout


@pytest.mark.parametrize("path", sorted((REPO / "flows").glob("*.py")), ids=lambda p: p.name)
def test_flow_functions_read_as_their_stages(path: Path) -> None:
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and any(
            isinstance(d, ast.Call) and getattr(d.func, "id", None) == "flow" for d in node.decorator_list
        ):
            length = node.end_lineno - node.lineno + 1  # type: ignore[operator]
            assert length <= 80, f"flow {node.name} in {path.name} is {length} lines; move the work into tasks"
            returns = ast.unparse(node.returns) if node.returns else "nothing"
            assert node.returns is not None and "dict" not in returns, (
                f"flow {node.name} must return a typed result (a dataclass), not {returns}"
            )


def test_the_shared_services_are_built_in_one_place() -> None:
    builders: dict[str, list[str]] = {}
    for path in _python_files():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) in SERVICES:
                builders.setdefault(node.func.id, []).append(str(path.relative_to(REPO)))  # type: ignore[attr-defined]
    # One exception: the gateway's drainer process rebuilds its parent's prediction log from the parent's own
    # parameters, passed on its command line (core/store/drainer.py), not from settings of its own.
    assert {name: sorted(set(where)) for name, where in builders.items()} == {
        name: sorted(["services/context.py"] + (["core/store/drainer.py"] if name == "PredictionLog" else []))
        for name in SERVICES
    }


def test_only_settings_touch_the_environment() -> None:
    offenders = []
    for path in _python_files():
        text = path.read_text()
        if path != REPO / "core" / "settings.py" and ("os.environ" in text or "os.getenv" in text):
            offenders.append(str(path.relative_to(REPO)))
    assert offenders == []
