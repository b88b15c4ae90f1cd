"""The package's import contracts, read statically from the source with `ast` (in the spirit
of Harlequin's import-linter contracts): the headless core never imports the service facade,
the CLI or the console; the facade never imports the CLI or the console; and no module
imports itself back through others. Imports inside functions count: a lazy import is still
a dependency."""

from __future__ import annotations

from pathlib import Path

from import_graph import import_statements

PACKAGE = Path(__file__).resolve().parent.parent / "appliance"
FRONTS = ("appliance.cli", "appliance.tui", "appliance.__main__")
FACADE = ("appliance.service",)


def module_names(root: Path) -> dict[str, Path]:
    """Dotted module name -> source file, for every module under `root`."""
    out = {}
    for path in root.rglob("*.py"):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _imported(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The package's modules that `name` imports anywhere in its source (`from P import M`
    is an import of the submodule M when there is one, else of P)."""
    found = set()
    for base, alias in import_statements(path.read_text("utf-8"), name,
                                         is_package=path.name == "__init__.py"):
        full = f"{base}.{alias}" if alias else base
        found.add(full if full in modules else base)
    return {m for m in found if m in modules and m != name}


def import_graph(root: Path) -> dict[str, set[str]]:
    """Each module of the package under `root` -> the package's modules it imports."""
    modules = module_names(root)
    return {name: _imported(name, path, modules) for name, path in modules.items()}


def _within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def layer_violations(graph: dict[str, set[str]]) -> list[str]:
    """`A imports B` for every import that points up the layers."""
    bad = []
    for name, targets in sorted(graph.items()):
        if _within(name, FRONTS):
            continue
        above = FRONTS if _within(name, FACADE) else (*FACADE, *FRONTS)
        bad += [f"{name} imports {t}" for t in sorted(targets) if _within(t, above)]
    return bad


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while (top := stack.pop()) != node:
                group.append(top)
            if group:
                found.append(sorted([*group, node]))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_core_and_facade_never_import_upwards() -> None:
    """No core module imports the service facade, the CLI or the console, and the facade
    imports neither the CLI nor the console."""
    assert layer_violations(import_graph(PACKAGE)) == []


def test_no_import_cycles_in_the_package() -> None:
    """No group of the package's modules imports itself back."""
    assert cycles(import_graph(PACKAGE)) == []


def test_the_checks_catch_a_cycle_and_an_upward_import(tmp_path: Path) -> None:
    """On a small package that breaks both rules (a core module importing the console
    lazily, two facade modules importing each other, relatively), both are reported."""
    pkg = tmp_path / "appliance"
    files = {"__init__.py": "", "vault.py": "def f():\n    from appliance.tui import app\n",
             "service/__init__.py": "", "service/a.py": "from . import b\n",
             "service/b.py": "from appliance.service.a import x\n",
             "tui/__init__.py": "", "tui/app.py": "import appliance.service.a\n"}
    for rel, text in files.items():
        (pkg / rel).parent.mkdir(parents=True, exist_ok=True)
        (pkg / rel).write_text(text)
    graph = import_graph(pkg)
    assert layer_violations(graph) == ["appliance.vault imports appliance.tui.app"]
    assert cycles(graph) == [["appliance.service.a", "appliance.service.b"]]


def test_the_graph_sees_lazy_imports() -> None:
    """Imports inside functions are part of the graph: the facade imports signing lazily."""
    assert "appliance.signing" in import_graph(PACKAGE)["appliance.service.artifacts"]
