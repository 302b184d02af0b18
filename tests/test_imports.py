"""The import graph: no cycles, packages and experiments talk through public names only.

Parsed from the source (every ``import`` statement, including those inside
functions), so a cycle that only closes at call time is found too.
"""

from __future__ import annotations

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _module_files() -> dict[str, pathlib.Path]:
    files = {}
    for path in (ROOT / "advjax").rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        files[name] = path
    return files


MODULES = _module_files()


def _imported(module: str, path: pathlib.Path) -> set[str]:
    """The advjax modules that ``module`` imports anywhere in its source."""
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    targets = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names = [target] + [f"{target}.{alias.name}" for alias in node.names]
        for name in names:
            if name in MODULES and name != module:
                targets.add(name)
    return targets


def _package(module: str) -> str:
    return ".".join(module.split(".")[:2])


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in list(graph):
        if node not in index:
            visit(node)
    return found


def _edges() -> dict[str, set[str]]:
    return {module: _imported(module, path) for module, path in MODULES.items()}


def test_no_module_imports_another_in_a_cycle():
    # A package's __init__ re-exports its own modules; those edges are not cycles.
    graph = {
        module: {t for t in targets if not module.startswith(t + ".")}
        for module, targets in _edges().items()
    }
    assert _cycles(graph) == []


def test_no_cycle_between_packages():
    graph: dict[str, set[str]] = {}
    for module, targets in _edges().items():
        for target in targets:
            a, b = _package(module), _package(target)
            if a != b and b != "advjax":
                graph.setdefault(a, set()).add(b)
    assert _cycles(graph) == []


def test_packages_import_each_other_through_public_names():
    crossings = []
    for module, targets in _edges().items():
        for target in targets:
            parts = target.split(".")
            private = any(part.startswith("_") for part in parts[2:])
            if private and _package(target) != _package(module) and _package(target) != "advjax":
                crossings.append(f"{module} -> {target}")
    assert crossings == []


def test_experiments_import_public_advjax_names_only():
    private = []
    for path in (ROOT / "experiments").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("advjax"):
                names = [node.module] + [alias.name for alias in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names if a.name.startswith("advjax")]
            for name in names:
                if any(part.startswith("_") for part in name.split(".")):
                    private.append(f"{path.relative_to(ROOT)}: {name}")
    assert private == []


def test_every_advjax_name_an_experiment_imports_exists():
    import importlib

    missing = []
    for path in sorted((ROOT / "experiments").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("advjax"):
                module = importlib.import_module(node.module)
                for alias in node.names:
                    if not hasattr(module, alias.name):
                        try:
                            importlib.import_module(f"{node.module}.{alias.name}")
                        except ImportError:
                            missing.append(f"{path.relative_to(ROOT)}: {node.module}.{alias.name}")
    assert missing == []


def test_the_graph_check_sees_a_cycle_it_is_shown():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_backend_workarounds_are_a_leaf():
    edges = _edges()
    outside = {
        f"{module} -> {target}"
        for module, targets in edges.items()
        if module.startswith("advjax.backend")
        for target in targets
        if not target.startswith("advjax.backend")
    }
    assert outside == set()
    assert "advjax.backend" in edges["advjax.models._logits"]


def test_importing_advjax_starts_no_jax_backend():
    # ``advjax.parallel.use_cpu_devices`` must still be able to configure the devices.
    import subprocess
    import sys

    code = (
        "import advjax\n"
        "from jax._src import xla_bridge\n"
        "assert not xla_bridge._backends, 'import advjax started a backend'\n"
        "advjax.parallel.use_cpu_devices(3)\n"
        "import jax\n"
        "assert len(jax.devices()) == 3, jax.devices()\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
