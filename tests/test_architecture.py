"""The import graph of ``src/sendwell``: no circles, and nothing imports a floor above its own.

The floors are docs/architecture.md's. A new module must be given a floor here, which is the
moment to ask where it belongs. Imports inside functions count too: a lazy import hides a
circle from Python, not from a reader.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src"

# Floor 1, pure: types, rules and decisions; no models. 2, data: storage and the shared
# limiter. 3, engine: one delivery attempt, the pipeline. 4, faces: what Django and operators
# call. Modules are matched by their longest listed prefix ("sendwell" itself only exactly).
FLOORS: dict[str, int] = {
    "sendwell": 1,
    "sendwell.check_ids": 1,
    "sendwell.compat": 1,
    "sendwell.conf": 1,
    "sendwell.db": 1,
    "sendwell.env": 1,
    "sendwell.events": 1,
    "sendwell.exceptions": 1,
    "sendwell.mime": 1,
    "sendwell.mime_display": 1,
    "sendwell.options": 1,
    "sendwell.ratecontrol": 1,
    "sendwell.ratelimit.base": 1,
    "sendwell.retry": 1,
    "sendwell.settings_check": 1,
    "sendwell.settings_table": 1,
    "sendwell.signals": 1,
    "sendwell.sns": 1,
    "sendwell.transports.base": 1,
    "sendwell.models": 2,
    "sendwell.ratelimit": 2,
    "sendwell.aws": 3,
    "sendwell.delivery": 3,
    "sendwell.pacing": 3,
    "sendwell.quota": 3,
    "sendwell.suppression": 3,
    "sendwell.feedback": 3,
    "sendwell.simulate": 3,
    "sendwell.transports": 3,
    "sendwell.worker": 3,
    "sendwell.admin": 4,
    "sendwell.apps": 4,
    "sendwell.backends": 4,
    "sendwell.checks": 4,
    "sendwell.management": 4,
    "sendwell.operations": 4,
    "sendwell.tasks": 4,
    "sendwell.warmup": 4,
    "sendwell.webhook": 4,
    "sendwell.urls": 4,
}


def _modules() -> dict[str, Path]:
    modules = {}
    for path in sorted((SRC / "sendwell").rglob("*.py")):
        if "migrations" in path.parts:
            continue
        parts = path.relative_to(SRC).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """The sendwell modules ``path`` imports, anywhere in it."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            submodules = {f"{node.module}.{alias.name}" for alias in node.names}
            found.update(name for name in submodules if name in modules)
            # `from package import submodule` imports the submodule, not a name of the package.
            if not submodules <= modules.keys():
                found.add(node.module)
    return {name for name in found if name in modules}


def _floor(module: str) -> int:
    matches = [
        prefix
        for prefix in FLOORS
        if module == prefix or (prefix != "sendwell" and module.startswith(prefix + "."))
    ]
    if not matches:
        raise AssertionError(
            f"{module} has no floor: add it to FLOORS in {__file__} and docs/architecture.md"
        )
    return FLOORS[max(matches, key=len)]


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        parent = name.rpartition(".")[0]
        # A package's __init__ importing its own submodules (re-exports) is not an edge out.
        graph[name] = {m for m in _imports(path, modules) if m != name and m != parent}
    return graph


def test_every_module_has_a_floor() -> None:
    for module in _graph():
        _floor(module)


def test_nothing_imports_a_floor_above_its_own() -> None:
    upward = [
        f"{module} (floor {_floor(module)}) imports {target} (floor {_floor(target)})"
        for module, targets in _graph().items()
        for target in sorted(targets)
        if _floor(target) > _floor(module)
    ]
    assert upward == []


def test_no_import_circles() -> None:
    graph = _graph()
    circles = []
    state: dict[str, str] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for target in sorted(graph[module]):
            if state.get(target) == "open":
                circles.append(" -> ".join([*path[path.index(target) :], target]))
            elif target not in state:
                visit(target, [*path, target])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert circles == []


@pytest.mark.parametrize(
    ("module", "imports", "expected"),
    [
        ("sendwell.delivery.queued", "sendwell.delivery.route", True),
        ("sendwell.backends.ses", "sendwell.delivery", True),
        ("sendwell.transports.ses", "sendwell.aws", True),
    ],
)
def test_the_graph_sees_imports(module: str, imports: str, expected: bool) -> None:
    """The checks above are only as good as the graph: it must see real imports."""
    assert (imports in _graph()[module]) is expected
