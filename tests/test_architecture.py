"""The package's import graph: no cycles, no import from a lower layer into a higher one.

The graph is read from the source with :mod:`ast`, so it sees what a running program may never
reach: imports inside functions (the usual way a cycle hides) count as much as those at the top
of a module. Imports under ``if TYPE_CHECKING:`` are left out (they never run), and so is the
implicit import of a module's parent packages. ``from package import name`` counts as an import
of the module that defines ``name`` when the package re-exports it (eagerly or through a lazy
``_EXPORTS`` table), so a light ``__init__`` does not hide an edge.

:data:`LAYERS` is the map of the package, lowest layer first. A module may import from its own
layer and the layers below it, never from one above. The most specific entry wins
(``supcon.data.build`` is a builder although ``supcon.data`` is a component); the entry
``"supcon"`` means the top-level ``__init__`` only.
"""

from __future__ import annotations

import ast
import functools
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "supcon"

#: The layers of ``supcon``, lowest first: ``(name, modules or packages, what lives there)``.
LAYERS: tuple[tuple[str, tuple[str, ...], str], ...] = (
    (
        "foundation",
        (
            "supcon",
            "supcon._lazy",
            "supcon.arguments",
            "supcon.blocks",
            "supcon.errors",
            "supcon.io",
            "supcon.distributed",
            "supcon.devices",
            "supcon.eval_mode",
            "supcon.reporting",
            "supcon.outputs",
        ),
        "errors, argument checks, atomic files, ranks and collectives, the device rule, tables",
    ),
    (
        "core",
        (
            "supcon.losses",
            "supcon.miners",
            "supcon.samplers",
            "supcon.evaluation.metrics",
            "supcon.evaluation.backend",
            "supcon.evaluation.clustering",
            "supcon.evaluation.knn",
            "supcon.evaluation.unit",
        ),
        "pure tensor math with plain arguments: losses, miners, samplers, retrieval metrics",
    ),
    (
        "components",
        (
            "supcon.augment_spec",
            "supcon.data",
            "supcon.hub",
            "supcon.models",
            "supcon.evaluation",
            "supcon.training",
        ),
        "datasets, transforms, models, embedding and search, and the training building blocks "
        "(optimizer, schedule, AMP, checkpoints, trackers); none of them reads the config",
    ),
    ("config", ("supcon.config",), "the recipe schema, its validation and YAML loading"),
    (
        "builders",
        ("supcon.builders", "supcon.data.build"),
        "the only modules that map config sections onto components",
    ),
    (
        "training loop",
        ("supcon.training.loop", "supcon.training.preflight"),
        "train(): builds everything from the config and runs it",
    ),
    ("runs", ("supcon.runs", "supcon.export"), "loading finished runs, exporting models"),
    ("commands", ("supcon.commands",), "one module per `supcon` subcommand"),
    ("cli", ("supcon.cli", "supcon.__main__"), "the argument parser and error reporting"),
)


@dataclass(frozen=True)
class Import:
    """One ``import`` statement's edge: ``source`` imports ``target`` at ``line``."""

    source: str
    target: str
    line: int


def module_name(path: Path) -> str:
    """``supcon/losses/inputs.py`` → ``supcon.losses.inputs``; a package's ``__init__`` → it."""
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


@functools.cache
def raw_imports(path: Path) -> list[tuple[str, str | None, int]]:
    """Every import in ``path`` (module and function level) as ``(module, name, line)``.

    ``name`` is the imported name for ``from module import name``, else ``None``. Relative
    imports are made absolute; ``if TYPE_CHECKING:`` bodies are skipped.
    """
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: list[tuple[str, str | None, int]] = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for other in child.orelse:
                    visit_node(other)
            else:
                visit_node(child)

    def visit_node(node: ast.AST) -> None:
        if isinstance(node, ast.Import):
            found.extend((alias.name, None, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(parts + ([node.module] if node.module else []))
            found.extend((base, alias.name, node.lineno) for alias in node.names)
        else:
            visit(node)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    return found


def re_exports(path: Path) -> dict[str, str]:
    """Names a package ``__init__`` takes from its modules: name → defining module.

    Covers eager ``from module import name`` at the top level and a lazy ``_EXPORTS = {name:
    module}`` table (see :mod:`supcon._lazy`).
    """
    exported: dict[str, str] = {}
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            exported.update({a.asname or a.name: node.module for a in node.names})
        targets = node.targets if isinstance(node, ast.Assign) else []
        if isinstance(node, ast.AnnAssign):
            targets = [node.target]
        if any(isinstance(t, ast.Name) and t.id == "_EXPORTS" for t in targets):
            assert node.value is not None
            exported.update(ast.literal_eval(node.value))
    return exported


def import_graph() -> tuple[dict[str, Path], list[Import], list[Import]]:
    """``(modules, edges, unresolved)`` of the ``supcon`` package.

    ``unresolved`` holds imports of ``supcon.*`` modules that do not exist.
    """
    modules = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
    exports = {
        name: re_exports(path) for name, path in modules.items() if path.name == "__init__.py"
    }
    edges: list[Import] = []
    unresolved: list[Import] = []
    for source, path in modules.items():
        for base, name, line in raw_imports(path):
            if base != "supcon" and not base.startswith("supcon."):
                continue
            target = base
            if name is not None and f"{base}.{name}" in modules:
                target = f"{base}.{name}"
            elif name is not None and name in exports.get(base, {}):
                target = exports[base][name]
            if target not in modules:
                unresolved.append(Import(source, target, line))
            elif target != source:
                edges.append(Import(source, target, line))
    return modules, edges, unresolved


def layer_of(module: str) -> int:
    """Index in :data:`LAYERS` of the most specific entry covering ``module`` (-1: none)."""
    best, best_len = -1, -1
    for index, (_, entries, _) in enumerate(LAYERS):
        for entry in entries:
            covers = module == entry or (entry != "supcon" and module.startswith(entry + "."))
            if covers and len(entry) > best_len:
                best, best_len = index, len(entry)
    return best


def cycles(modules: dict[str, Path], edges: list[Import]) -> list[list[str]]:
    """The import cycles: strongly connected components with more than one module (Tarjan)."""
    graph: dict[str, list[str]] = {m: [] for m in modules}
    for edge in edges:
        graph[edge.source].append(edge.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in graph[node]:
            if succ not in index:
                connect(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
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

    for node in graph:
        if node not in index:
            connect(node)
    return found


@pytest.fixture(scope="module")
def graph() -> tuple[dict[str, Path], list[Import], list[Import]]:
    return import_graph()


def _where(edge: Import) -> str:
    return f"{edge.source} imports {edge.target} (line {edge.line})"


def test_graph_sees_function_level_and_re_exported_imports(graph) -> None:
    _, edges, _ = graph
    pairs = {(e.source, e.target) for e in edges}
    # Inside a function of supcon.config; through supcon.data's re-exports; lazy _EXPORTS.
    assert ("supcon.config", "supcon.losses.registry") in pairs
    assert ("supcon.training.loop", "supcon.data.build") in pairs
    assert ("supcon.commands.train", "supcon.training.loop") in pairs
    # supcon.evaluation imports its modules only under `if TYPE_CHECKING:`, which never runs.
    assert ("supcon.evaluation", "supcon.evaluation.index") not in pairs


def test_every_supcon_import_names_an_existing_module(graph) -> None:
    _, _, unresolved = graph
    assert not unresolved, "imports of missing modules:\n" + "\n".join(map(_where, unresolved))


def shortest_cycle(component: list[str], edges: list[Import]) -> list[Import]:
    """The shortest closed path of imports through the modules of ``component``."""
    members = set(component)
    succ: dict[str, list[Import]] = {m: [] for m in component}
    for edge in edges:
        if edge.source in members and edge.target in members:
            succ[edge.source].append(edge)
    best: list[Import] = []
    for start in component:
        paths: dict[str, list[Import]] = {start: []}
        frontier = [start]
        while frontier and not (best and len(paths[frontier[0]]) >= len(best)):
            node = frontier.pop(0)
            for edge in succ[node]:
                if edge.target == start:
                    if not best or len(paths[node]) + 1 < len(best):
                        best = [*paths[node], edge]
                elif edge.target not in paths:
                    paths[edge.target] = [*paths[node], edge]
                    frontier.append(edge.target)
    return best


def test_no_import_cycles(graph) -> None:
    modules, edges, _ = graph
    found = cycles(modules, edges)
    lines = [
        f"cycle among {len(c)} modules, e.g. " + " -> ".join(map(_where, shortest_cycle(c, edges)))
        for c in found
    ]
    assert not found, "\n".join(lines)


def test_every_module_has_a_layer(graph) -> None:
    modules, _, _ = graph
    missing = sorted(m for m in modules if layer_of(m) < 0)
    assert not missing, f"add these modules to LAYERS in {Path(__file__).name}: {missing}"


def test_no_module_imports_from_a_higher_layer(graph) -> None:
    _, edges, _ = graph
    upward = sorted(
        {
            f"{_where(e)}: {LAYERS[layer_of(e.source)][0]} -> {LAYERS[layer_of(e.target)][0]}"
            for e in edges
            if layer_of(e.target) > layer_of(e.source)
        }
    )
    assert not upward, "imports from a higher layer:\n" + "\n".join(upward)


def test_core_never_imports_training_builders_commands_or_cli(graph) -> None:
    _, edges, _ = graph
    core = LAYERS[[name for name, _, _ in LAYERS].index("core")][1]
    above = ("supcon.training", "supcon.builders", "supcon.commands", "supcon.cli")

    def under(module: str, prefixes: tuple[str, ...]) -> bool:
        return any(module == p or module.startswith(p + ".") for p in prefixes)

    bad = sorted({_where(e) for e in edges if under(e.source, core) and under(e.target, above)})
    assert not bad, "\n".join(bad)


def test_no_private_name_is_imported_from_another_module() -> None:
    """``_name`` and ``_module`` stay inside their module or package; share public names."""
    modules = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
    bad = []
    for source, path in modules.items():
        for base, name, line in raw_imports(path):
            if not base.startswith("supcon"):
                continue
            target = f"{base}.{name}" if f"{base}.{name}" in modules else base
            private_part = next(
                (p for p in target.split(".") if p.startswith("_") and not p.startswith("__")),
                None,
            )
            if private_part and not (source + ".").startswith(
                target.rpartition("." + private_part)[0] + "."
            ):
                bad.append(f"{source} imports private module {target} (line {line})")
            if target == base and name and name.startswith("_") and not name.startswith("__"):
                bad.append(f"{source} imports private name {base}.{name} (line {line})")
    assert not bad, "\n".join(bad)
