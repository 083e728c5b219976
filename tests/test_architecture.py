"""The packages of sparc import each other without a circle, and none reads another's
underscored names.

The import graph of ``src/sparc`` is read with :mod:`ast` — imports at module level and
inside functions both count (a lazy import is still a dependency), imports under
``if TYPE_CHECKING:`` do not (they never run) — and collapsed to packages: each
subpackage (``sparc.model``, ``sparc.train``, ...) is one node, each top-level module
(``sparc.workspace``, ``sparc.publish``, ...) its own node.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).parents[1] / "src"
ROOT = SRC / "sparc"


def node_of(module: str) -> str | None:
    """The graph node of dotted ``module``: ``sparc.PACKAGE`` for anything inside a
    subpackage, ``sparc.MODULE`` for a top-level module, ``sparc`` for the package
    itself; None outside sparc."""
    parts = module.split(".")
    if parts[0] != "sparc":
        return None
    return ".".join(parts[:2])


def module_name(path: Path) -> str:
    rel = path.relative_to(SRC).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def exists(module: str) -> bool:
    path = SRC.joinpath(*module.split("."))
    return path.with_suffix(".py").is_file() or path.is_dir()


def imported_modules(text: str, package: str) -> set[str]:
    """The modules that source ``text`` of a module in ``package`` imports anywhere
    except under ``if TYPE_CHECKING:``."""
    tree = ast.parse(text)
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and is_type_checking(node.test):
            for child in node.orelse:  # the else branch runs
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.add(module)
            # `from sparc import workspace` imports the module sparc.workspace
            found.update(f"{module}.{alias.name}" for alias in node.names if exists(f"{module}.{alias.name}"))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def package_graph() -> dict[str, set[str]]:
    """Node → the nodes it imports (itself left out)."""
    graph: dict[str, set[str]] = {}
    for path in sorted(ROOT.rglob("*.py")):
        src = node_of(module_name(path))
        assert src is not None
        targets = graph.setdefault(src, set())
        this = module_name(path)
        package = this if path.name == "__init__.py" else this.rpartition(".")[0]
        for module in imported_modules(path.read_text(), package):
            dst = node_of(module)
            if dst is not None and dst != src:
                targets.add(dst)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as [a, b, ..., a], or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def dfs(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := dfs(nxt)) is not None:
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := dfs(node)) is not None:
            return cycle
    return None


def test_the_graph_sees_the_packages_and_their_imports():
    graph = package_graph()
    for node in ("sparc.model", "sparc.train", "sparc.data", "sparc.eval", "sparc.explore", "sparc.extract",
                 "sparc.localize", "sparc.cli", "sparc.workspace"):
        assert node in graph, node
    assert "sparc.model" in graph["sparc.train"]  # a module-level import
    assert "sparc.localize" in graph["sparc.cli"]  # only inside functions (cli/localize.py): they count too


def test_type_checking_imports_do_not_count_and_the_rest_do():
    text = ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from sparc.model import SPARC\n"
            "else:\n    import sparc.data\ndef f():\n    from sparc.train import run\n"
            "from . import rows\nfrom sparc import workspace\n")
    found = imported_modules(text, "sparc.data")
    assert "sparc.model" not in found
    assert {"sparc.data", "sparc.train", "sparc.train.run", "sparc.data.rows", "sparc.workspace"} <= found


def test_find_cycle_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_no_import_circle_between_packages():
    cycle = find_cycle(package_graph())
    if cycle is not None:
        pytest.fail("import circle between sparc's packages: " + " → ".join(cycle))


# ---------------------------------------------------------------------------- underscored names

TREE = SRC.parent


def private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def owner_of(path: Path) -> str:
    """The package a file belongs to: a node of the graph above for src/, else its top
    folder (``tests``, ``benchmarks``: each one package)."""
    return node_of(module_name(path)) if SRC in path.parents else path.relative_to(TREE).parts[0]


def private_definitions(files: list[Path]) -> dict[str, set[str]]:
    """Underscored name → the packages that define it (functions, classes, module names,
    attributes assigned anywhere)."""
    defined: dict[str, set[str]] = {}
    for path in files:
        pkg = owner_of(path)
        for node in ast.walk(ast.parse(path.read_text())):
            names: list[str] = []
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names = [node.name]
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                names = [node.attr]
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names = [node.id]
            for name in names:
                if private(name):
                    defined.setdefault(name, set()).add(pkg)
    return defined


def foreign_private_reads(text: str, own: str, defined: dict[str, set[str]]) -> list[str]:
    """Where source ``text`` of package ``own`` reads an underscored name of another sparc
    package: ``from sparc.x import _y``, ``module._y`` on an imported sparc module, or
    ``obj._y`` where only other packages define ``_y`` (``self``/``cls`` are one's own)."""
    tree = ast.parse(text)
    found: list[str] = []
    modules: dict[str, str] = {}  # local name → the sparc module or object it stands for
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sparc"):
            for alias in node.names:
                if private(alias.name) and node_of(node.module) != own:
                    found.append(f"line {node.lineno}: from {node.module} import {alias.name}")
                modules[alias.asname or alias.name] = f"{node.module}.{alias.name}"
        elif isinstance(node, ast.Import):
            modules.update({a.asname or a.name.split(".")[0]: a.name for a in node.names if a.name.startswith("sparc")})
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Attribute) and private(node.attr)):
            continue
        receiver = node.value.id if isinstance(node.value, ast.Name) else None
        if receiver in ("self", "cls"):
            continue
        if receiver in modules:
            if node_of(modules[receiver]) != own:
                found.append(f"line {node.lineno}: {receiver}.{node.attr}")
        elif (owners := defined.get(node.attr)) and own not in owners and owners - {"tests", "benchmarks"}:
            found.append(f"line {node.lineno}: .{node.attr} (defined in {', '.join(sorted(owners))})")
    return found


def test_foreign_private_reads_are_found():
    defined = {"_shadow": {"sparc.model"}, "_helper": {"sparc.train"}}
    text = ("from sparc.model.sparc import _streams\nfrom sparc.train import optim\nimport sparc.data as d\n"
            "m._shadow\nself._shadow\noptim._helper\nd._rows\nx._unknown\n")
    assert foreign_private_reads(text, "tests", defined) == [
        "line 1: from sparc.model.sparc import _streams", "line 4: ._shadow (defined in sparc.model)",
        "line 6: optim._helper", "line 7: d._rows"]
    assert foreign_private_reads(text.replace("sparc.model.sparc", "sparc.model.x"), "sparc.model", defined) == [
        "line 6: optim._helper", "line 7: d._rows"]


def test_no_package_reads_another_packages_underscored_names():
    src = sorted(ROOT.rglob("*.py"))
    others = sorted((TREE / "tests").rglob("*.py")) + sorted((TREE / "benchmarks").rglob("*.py"))
    defined = private_definitions(src)
    problems = [f"{path.relative_to(TREE)} {where}" for path in src + others
                for where in foreign_private_reads(path.read_text(), owner_of(path), defined)]
    assert not problems, "reads of another package's underscored names:\n" + "\n".join(problems)
