"""The layout ARCHITECTURE.md describes is the layout the code has: no import cycles (deferred imports count), the
kernel imports no capability, capabilities import no adapter, API or wiring, and only the wiring reads the
environment. Imports are read from the source (ast), so an import inside a function is seen too."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

FUNCTIONS = Path(__file__).resolve().parents[2] / "functions"
CAPABILITIES = ("registry", "registration", "deployments", "schedules", "reconcile", "releases", "messaging",
                "comparison")
TOP = ("api", "bootstrap", "adapters", "console")


def modules() -> dict[str, Path]:
    found = {}
    for path in FUNCTIONS.rglob("*.py"):
        name = ".".join(path.relative_to(FUNCTIONS).with_suffix("").parts).removesuffix(".__init__")
        found[name] = path
    return found


def imports(mods: dict[str, Path]) -> dict[str, set[str]]:
    """module → the project modules it imports (a `from pkg import name` names pkg.name when that is a module)."""
    edges: dict[str, set[str]] = {m: set() for m in mods}
    for mod, path in mods.items():
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")
                    anchor = ".".join(parts[: len(parts) - node.level + 1])
                    base = f"{anchor}.{base}".strip(".") if base else anchor
                targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                continue
            edges[mod].update(t for t in targets if t in mods and t != mod)
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in edges:
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if parts[0] == "registrar" and len(parts) > 1 else parts[0]


EDGES = imports(modules())


def test_cycle_finder_finds_a_cycle_through_a_deferred_import():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles():
    assert cycles(EDGES) == []


def test_the_kernel_imports_no_capability():
    outside = {(m, t) for m, targets in EDGES.items() if layer(m) == "kernel"
               for t in targets if layer(t) != "kernel"}
    assert outside == set()


@pytest.mark.parametrize("capability", CAPABILITIES)
def test_capabilities_import_no_adapter_api_or_wiring(capability):
    wrong = {(m, t) for m, targets in EDGES.items() if layer(m) == capability
             for t in targets if layer(t) in TOP or t == "main"}
    assert wrong == set()


WRITE_SIDE = ("commands", "handlers", "follow_ups", "bus", "outbox")


def test_the_console_reads_through_the_capabilities_and_the_kernel_only():
    """The console is a presentation layer beside api/ (api.app mounts it): it imports the kernel and the
    capabilities' read side, never api, bootstrap, adapters or main, and nothing that writes (its actions call the
    API's routes from the browser)."""
    wrong = {(m, t) for m, targets in EDGES.items() if layer(m) == "console"
             for t in targets if layer(t) in ("api", "bootstrap", "adapters", "main")
             or t.rpartition(".")[2] in WRITE_SIDE}
    assert wrong == set()
    assert any(layer(m) == "console" for m in EDGES), "the console package moved: this rule checks nothing"


def test_only_the_api_app_mounts_the_console():
    mounting = {m for m, targets in EDGES.items() if layer(m) != "console" and any(layer(t) == "console" for t in targets)}
    assert mounting == {"registrar.api.app"}


def test_adapters_import_only_the_kernel_and_each_other():
    wrong = {(m, t) for m, targets in EDGES.items() if layer(m) == "adapters"
             for t in targets if layer(t) not in ("kernel", "adapters")}
    assert wrong == set()


def test_only_the_wiring_reads_the_environment():
    readers = []
    for name, path in modules().items():
        if name == "registrar.bootstrap":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv")
                    and isinstance(node.value, ast.Name) and node.value.id == "os"):
                readers.append(f"{name}:{node.lineno}")
    assert readers == []


def test_no_google_client_outside_the_adapters():
    users = [m for m, path in modules().items() if layer(m) not in ("adapters",)
             and any(isinstance(n, (ast.Import, ast.ImportFrom))
                     and any(name.startswith("google.") for name in _imported_names(n))
                     for n in ast.walk(ast.parse(path.read_text())))]
    assert users == []


def _imported_names(node: ast.Import | ast.ImportFrom) -> list[str]:
    if isinstance(node, ast.ImportFrom):
        return [node.module or ""]
    return [alias.name for alias in node.names]
