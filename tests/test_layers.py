"""The apps' floors hold (impex <- syncapp <- orders): no upward import, no private name across apps, no circle
of module imports, and no function-level import that only dodges one.

What is scanned: every module of impex, syncapp and orders but their migrations and their tests/ folders, read with
ast (nothing is imported). The tests are left out on purpose: the engine's tests in impex/tests import real
entities of the floors above as fixtures, which is how they test the engine on the data it imports.
"""

import ast
import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Lowest floor first: an app imports its own floor and the ones below, never one above (impex.registry says how the
# apps above give impex what it needs instead).
FLOORS = ("impex", "syncapp", "orders")
FLOOR = {app: level for level, app in enumerate(FLOORS)}
MODULE_LEVEL, FUNCTION_LEVEL, TYPE_CHECKING = "module-level", "function-level", "TYPE_CHECKING"
# Function-level imports that close a circle and stay, (file, module) -> why.
DODGES_KEPT = {
    ("impex/storage/sftp.py", "impex.storage.sftp_client"): "paramiko is slow to import; only sftp:// needs it",
}


@dataclass(frozen=True)
class Edge:
    """One import of a module of the apps: where it is written, what it imports, and when it runs."""

    source: str
    target: str
    names: tuple[str, ...]
    path: str
    line: int
    when: str


def module_name(path: Path, root: Path) -> str:
    """Return the dotted name of a module file under root."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def scanned_files(root: Path) -> list[Path]:
    """Return the modules of the apps, but their migrations and tests."""
    return sorted(
        path
        for app in FLOORS
        for path in (root / app).rglob("*.py")
        if not {"migrations", "tests"} & set(path.relative_to(root).parts)
    )


def known_modules(root: Path) -> set[str]:
    """Return the dotted names of every module and package of the apps."""
    return {module_name(path, root) for app in FLOORS for path in (root / app).rglob("*.py")}


def longest_known(dotted: str, modules: set[str]) -> str | None:
    """Return the longest leading part of a dotted name that is a module of the apps, None if none is."""
    parts = dotted.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in modules:
            return candidate
    return None


def is_type_checking(node: ast.AST) -> bool:
    """Say whether a statement is `if TYPE_CHECKING:` (or typing.TYPE_CHECKING), whose imports never run."""
    if not isinstance(node, ast.If):
        return False
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_of(path: Path, root: Path, modules: set[str]) -> list[Edge]:
    """Return the imports of modules of the apps in one file, module- and function-level."""
    source = module_name(path, root)
    package = source if path.name == "__init__.py" else source.rpartition(".")[0]
    rel = str(path.relative_to(root))
    edges: list[Edge] = []

    def add(target: str, names: tuple[str, ...], node: ast.stmt, when: str) -> None:
        edges.append(Edge(source, target, names, rel, node.lineno, when))

    def visit(node: ast.AST, when: str) -> None:
        for child in ast.iter_child_nodes(node):
            inner = when
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                inner = FUNCTION_LEVEL
            elif is_type_checking(child) and when == MODULE_LEVEL:
                inner = TYPE_CHECKING
            if isinstance(child, ast.Import):
                for alias in child.names:
                    if target := longest_known(alias.name, modules):
                        add(target, (), child, when)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    up = package.split(".")[: len(package.split(".")) - (child.level - 1)]
                    base = ".".join(up + ([child.module] if child.module else []))
                for alias in child.names:
                    if f"{base}.{alias.name}" in modules:
                        add(f"{base}.{alias.name}", (), child, when)
                    elif target := longest_known(base, modules):
                        add(target, (alias.name,), child, when)
            visit(child, inner)

    visit(ast.parse(path.read_text(), filename=rel), MODULE_LEVEL)
    return edges


def app_of(module: str) -> str:
    """Return the app a dotted module name belongs to."""
    return module.split(".", 1)[0]


def is_private(name: str) -> bool:
    """Say whether a name is private by convention: one leading underscore, not a dunder."""
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def import_faults(edge: Edge) -> list[str]:
    """Return what is wrong with one import: it goes up a floor, or takes a private name of another app."""
    src, dst = app_of(edge.source), app_of(edge.target)
    faults = []
    if FLOOR[dst] > FLOOR[src]:
        faults.append(f"{edge.path}:{edge.line}: {edge.when} import of {edge.target} goes up ({src} -> {dst})")
    private = [part for part in (*edge.target.split("."), *edge.names) if is_private(part)]
    if dst != src and private:
        faults.append(f"{edge.path}:{edge.line}: imports {', '.join(private)}, private to {edge.target}")
    return faults


def use_faults(path: Path, root: Path, modules: set[str]) -> list[str]:
    """Return the uses in one file of another app's private names through a module (`exports._lookup`), and the
    strings that name a module of a floor above (a task's dotted name: the upper app registers it instead)."""
    source = module_name(path, root)
    rel = path.relative_to(root)
    tree = ast.parse(path.read_text(), filename=str(rel))
    aliases: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            aliases.update({alias.asname: alias.name for alias in node.names if alias.asname and alias.name in modules})
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                if f"{node.module}.{alias.name}" in modules:
                    aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    faults = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases:
            module = aliases[node.value.id]
            if app_of(module) != app_of(source) and is_private(node.attr):
                faults.append(f"{rel}:{node.lineno}: uses {node.attr}, private to {module}")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            parts = node.value.split(".")
            target = longest_known(node.value, modules) if all(p.isidentifier() for p in parts) else None
            # A module inside the app: "syncapp.synclog" is a model's label, checked below.
            if target and "." in target and FLOOR[app_of(target)] > FLOOR[app_of(source)]:
                faults.append(f"{rel}:{node.lineno}: the string {node.value!r} names {target}, a floor above")
            # A model's label ("syncapp.synclog", e.g. a ForeignKey's target) or an admin URL's name
            # ("admin:syncapp_syncerror_changelist") of a floor above: the upper app hands it over instead.
            named = re.fullmatch(r"admin:([a-z]+)_\w+|([a-z]+)\.[A-Za-z]\w*", node.value)
            app = named and (named.group(1) or named.group(2))
            if app in FLOOR and FLOOR[app] > FLOOR[app_of(source)]:
                faults.append(f"{rel}:{node.lineno}: the string {node.value!r} names a model or page of {app}")
    return faults


def module_graph(edges: list[Edge]) -> dict[str, list[Edge]]:
    """Return the imports that run when a module is imported, by importing module."""
    graph: dict[str, list[Edge]] = {}
    for edge in edges:
        if edge.when == MODULE_LEVEL and edge.target != edge.source:
            graph.setdefault(edge.source, []).append(edge)
    return graph


def module_cycles(edges: list[Edge]) -> list[str]:
    """Return one circle per group of modules that import each other when imported, each step with its file:line."""
    graph = module_graph(edges)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[list[str]] = []

    def connect(node: str) -> None:
        # Tarjan's strongly connected components; the apps' import depth is far below the recursion limit.
        index[node] = low[node] = len(index)
        stack.append(node)
        for edge in graph.get(node, ()):
            if edge.target not in index:
                connect(edge.target)
                low[node] = min(low[node], low[edge.target])
            elif edge.target in stack:
                low[node] = min(low[node], index[edge.target])
        if low[node] == index[node]:
            group = stack[stack.index(node) :]
            del stack[stack.index(node) :]
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return [circle(group, graph) for group in groups]


def circle(group: list[str], graph: dict[str, list[Edge]]) -> str:
    """Return the shortest way round a group from its first module back to it: `a (a.py:3) -> b (b.py:1) -> a`."""
    way = shortest_way(group[0], group[0], graph, within=set(group))
    assert way is not None, f"no way round {group}"
    return way


def shortest_way(start: str, end: str, graph: dict[str, list[Edge]], within: set[str] | None = None) -> str | None:
    """Return the shortest chain of module-level imports from start to end, each step with its file:line."""
    came_by: dict[str, Edge] = {}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for edge in graph.get(node, ()):
            if edge.target == end:
                steps = [edge]
                while steps[0].source != start:
                    steps.insert(0, came_by[steps[0].source])
                return " -> ".join([f"{s.source} ({s.path}:{s.line})" for s in steps] + [end])
            if (within is None or edge.target in within) and edge.target not in came_by:
                came_by[edge.target] = edge
                queue.append(edge.target)
    return None


def dodges(edges: list[Edge]) -> list[str]:
    """Return the function-level imports that would close a circle at module level: they only dodge it."""
    graph = module_graph(edges)
    faults = []
    for edge in edges:
        if edge.when != FUNCTION_LEVEL or edge.target == edge.source:
            continue
        way = shortest_way(edge.target, edge.source, graph)
        if way is not None and (edge.path, edge.target) not in DODGES_KEPT:
            faults.append(f"{edge.path}:{edge.line}: function-level import of {edge.target} dodges the circle {way}")
    return faults


def layer_faults(root: Path = ROOT) -> list[str]:
    """Return every upward import, private name taken across apps and circle of module imports, once each."""
    modules = known_modules(root)
    faults: list[str] = []
    edges: list[Edge] = []
    for path in scanned_files(root):
        found = imports_of(path, root, modules)
        edges += found
        for edge in found:
            faults += import_faults(edge)
        faults += use_faults(path, root, modules)
    faults += [f"import circle: {way}" for way in module_cycles(edges)]
    faults += dodges(edges)
    return list(dict.fromkeys(faults))


def test_the_apps_depend_one_way_without_private_names_or_circles():
    faults = layer_faults()
    assert not faults, "\n".join(["the floors impex <- syncapp <- orders are broken:", *faults])


def write_tree(root: Path, files: dict[str, str]) -> None:
    """Write a small tree of apps for the scan's own tests."""
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_the_scan_names_each_fault_by_file_and_line(tmp_path):
    write_tree(
        tmp_path,
        {
            "impex/__init__.py": "",
            "impex/engine.py": "import os\n\n\ndef run():\n    from orders.models import Order\n",
            "impex/a.py": "from impex import b\n",
            "impex/b.py": "from . import a\n",
            "impex/c.py": "from typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n    from impex import d\n",
            "impex/d.py": "from impex.c import x\n",
            "impex/e.py": "from impex import f\n",
            "impex/f.py": "def g():\n    from impex.e import h\n",
            "impex/tasks.py": 'NAME = "syncapp.tasks.record_events"\n',
            "impex/admin.py": 'URL = "admin:syncapp_syncerror_changelist"\nLABEL = "orders.Order"\n',
            "impex/migrations/0001_x.py": "from orders import models\n",
            "impex/tests/test_x.py": "from orders import models\n",
            "syncapp/__init__.py": "",
            "syncapp/tasks.py": "from impex.engine import _private, run\nimport impex.a as a\n\nx = a._hidden\n",
            "syncapp/views.py": "from orders import models\n",
            "syncapp/types.py": "from typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n    import orders.models\n",
            "orders/__init__.py": "",
            "orders/models.py": "from syncapp import tasks\nimport impex.engine\n",
        },
    )
    assert sorted(layer_faults(tmp_path)) == sorted(
        [
            "impex/engine.py:5: function-level import of orders.models goes up (impex -> orders)",
            "impex/engine.py:5: function-level import of orders.models dodges the circle"
            " orders.models (orders/models.py:2) -> impex.engine",
            "impex/tasks.py:1: the string 'syncapp.tasks.record_events' names syncapp.tasks, a floor above",
            "impex/admin.py:1: the string 'admin:syncapp_syncerror_changelist' names a model or page of syncapp",
            "impex/admin.py:2: the string 'orders.Order' names a model or page of orders",
            "syncapp/tasks.py:1: imports _private, private to impex.engine",
            "syncapp/tasks.py:4: uses _hidden, private to impex.a",
            "syncapp/types.py:4: TYPE_CHECKING import of orders.models goes up (syncapp -> orders)",
            "syncapp/views.py:1: module-level import of orders.models goes up (syncapp -> orders)",
            "import circle: impex.a (impex/a.py:1) -> impex.b (impex/b.py:1) -> impex.a",
            "impex/f.py:2: function-level import of impex.e dodges the circle impex.e (impex/e.py:1) -> impex.f",
        ]
    )


def test_a_tree_whose_apps_register_upwards_passes(tmp_path):
    write_tree(
        tmp_path,
        {
            "impex/__init__.py": "",
            "impex/registry.py": "registry = {}\n",
            "impex/engine.py": "from impex.registry import registry\n\n\ndef run():\n    return registry['x']()\n",
            "syncapp/__init__.py": "",
            "syncapp/apps.py": "def ready():\n    from impex.registry import registry\n",
            "orders/__init__.py": "",
            "orders/models.py": "from syncapp import apps\nfrom impex.registry import registry\n",
        },
    )
    assert layer_faults(tmp_path) == []
