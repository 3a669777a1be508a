"""Static import graph of falconproc, read with ``ast`` (nothing is imported).

Used by tests/architecture/test_imports.py and runnable as a report::

    python -m tests.architecture.import_graph [--root DIR] [--package NAME]

``--root`` is the directory that holds ``falconproc/`` (and ``tests/``,
``benchmarks/``), so an old tree can be measured too, e.g. one unpacked with
``git archive <commit> falconproc tests benchmarks | tar -x -C /tmp/before``.

What counts as an import (each one records where it sits, ``context``):
- ``module``: executed when the module is imported (top level, class bodies,
  ``try``/``if`` at top level);
- ``function``: lazy, inside a function or method. It still runs whenever that
  code path runs, so it counts for cycles like any other import;
- ``type_checking``: inside ``if TYPE_CHECKING:``. Never executed, so it is left
  out of cycle detection, but it still counts as a reach-in (it couples the
  importer to a private module all the same).
``importlib.import_module("literal")`` and ``__import__("literal")`` count too
(``via="dynamic"``); computed names (f-strings, variables) cannot be resolved
statically and are skipped.
"""
from __future__ import annotations

import argparse
import ast
import functools
import sys
from collections import defaultdict, deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

Context = Literal["module", "function", "type_checking"]
# import: ``import a.b``; from: ``from a import b``; dynamic: import_module("a.b");
# parent: the implicit import of a package's __init__ that importing a.b.c implies.
Via = Literal["import", "from", "dynamic", "parent"]

PACKAGE = "falconproc"
NATIVE = "falconproc.native"
# Where reach-ins are looked for (directories under the root; missing ones are skipped).
SCANNED = ("falconproc", "tests", "benchmarks")
# Constructors/factories of the content store, the derived cache and the job queue.
CONSTRUCTORS = ("create_store", "create_queue", "LocalContentStore", "LocalDerivedCache", "FlatFileQueue", "DerivedCache")
ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True, slots=True)
class Module:
    name: str
    path: Path
    is_package: bool


@dataclass(frozen=True, slots=True)
class Import:
    source: str  # importing module
    target: str  # resolved imported module (may not exist: see ImportGraph.unresolved)
    path: Path
    line: int
    context: Context
    via: Via
    names: tuple[str, ...] = ()  # attributes taken by ``from target import ...`` (not submodules)

    def where(self, root: Path) -> str:
        return f"{_rel(self.path, root)}:{self.line}"

    def describe(self, root: Path) -> str:
        tags = [t for t in (
            "lazy" if self.context == "function" else "",
            "TYPE_CHECKING" if self.context == "type_checking" else "",
            "dynamic" if self.via == "dynamic" else "",
            "implicit package __init__" if self.via == "parent" else "",
        ) if t]
        suffix = f" ({', '.join(tags)})" if tags else ""
        return f"{self.source} -> {self.target}  {self.where(root)}{suffix}"


@dataclass(slots=True)
class ImportGraph:
    root: Path
    package: str
    modules: dict[str, Module]
    imports: list[Import]  # every import in the package's modules, external ones included

    def internal(self) -> list[Import]:
        """Imports between modules of the package (targets that exist as source)."""
        return [i for i in self.imports if i.target in self.modules]

    def cycle_edges(self) -> list[Import]:
        # TYPE_CHECKING-only imports never run, so they cannot take part in an import cycle.
        return [i for i in self.internal() if i.context != "type_checking"]

    def unresolved(self) -> list[Import]:
        """Imports of ``package.*`` names that exist neither as source nor as an extension module."""
        return [i for i in self.imports if _in_package(i.target, self.package) and i.target not in self.modules
                and not module_exists(self.root, i.target)]


@dataclass(frozen=True, slots=True)
class ModuleCycle:
    members: tuple[str, ...]
    example: tuple[str, ...]  # one shortest cycle through the component, first node repeated at the end
    edges: tuple[Import, ...]  # every edge between members


@dataclass(frozen=True, slots=True)
class PackageCycle:
    units: tuple[str, ...]  # one strongly connected component of top-level units
    cycles: tuple[tuple[str, ...], ...]  # its elementary cycles (capped), first unit repeated at the end
    edges: dict[tuple[str, str], tuple[Import, ...]] = field(default_factory=dict)  # unit pair -> module edges


@dataclass(frozen=True, slots=True)
class ReachIn:
    importer: str
    path: Path
    line: int
    target: str  # the private module, or module.name for a private name
    how: str

    def describe(self, root: Path) -> str:
        return f"{_rel(self.path, root)}:{self.line}  {self.importer} {self.how} {self.target}"


@dataclass(frozen=True, slots=True)
class Site:
    module: str
    path: Path
    line: int
    callee: str
    enclosing: str  # qualified name of the enclosing function, or "<module>"

    def describe(self, root: Path) -> str:
        return f"{_rel(self.path, root)}:{self.line}  {self.callee}(  in {self.enclosing}"


# --------------------------------------------------------------------------- discovery


def _rel(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def _in_package(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def discover(root: Path, top: str) -> dict[str, Module]:
    """Every ``.py`` module under ``root/top``, by dotted name."""
    modules: dict[str, Module] = {}
    base = root / top
    if not base.is_dir():
        return modules
    for path in sorted(base.rglob("*.py")):
        rel = path.relative_to(root).with_suffix("")
        if any(part == "__pycache__" or part.startswith(".") or not part.isidentifier() for part in rel.parts):
            continue
        is_package = rel.name == "__init__"
        parts = rel.parts[:-1] if is_package else rel.parts
        modules[".".join(parts)] = Module(".".join(parts), path, is_package)
    return modules


@functools.lru_cache(maxsize=None)
def module_exists(root: Path, dotted: str) -> bool:
    """Whether ``dotted`` is a module under root: a .py file, a package directory
    (regular or namespace) or a compiled extension (the native twins ship as .so)."""
    parts = dotted.split(".")
    if not all(p.isidentifier() for p in parts):
        return False
    path = root.joinpath(*parts)
    if path.with_name(path.name + ".py").is_file():
        return True
    if path.is_dir() and ((path / "__init__.py").is_file() or any(path.glob("*.py"))):
        return True
    parent = path.parent
    return parent.is_dir() and any(
        any(parent.glob(pattern)) for pattern in (f"{path.name}.*.so", f"{path.name}.so", f"{path.name}.*.pyd"))


@functools.lru_cache(maxsize=None)
def _has_init(root: Path, dotted: str) -> bool:
    return root.joinpath(*dotted.split("."), "__init__.py").is_file()


# --------------------------------------------------------------------------- import collection


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


class _Collector(ast.NodeVisitor):
    """Walks one module, tracking whether the current code is lazy or TYPE_CHECKING-only."""

    def __init__(self, root: Path, module: Module) -> None:
        self.root = root
        self.module = module
        self.imports: list[Import] = []
        self.function_depth = 0
        self.type_checking_depth = 0
        # name bound in this file -> dotted name it refers to (for ``native._x`` attribute reach-ins)
        self.bindings: dict[str, str] = {}
        self.attribute_uses: list[tuple[str, int]] = []  # (dotted chain ending in a private name, line)

    @property
    def context(self) -> Context:
        if self.type_checking_depth:
            return "type_checking"
        return "function" if self.function_depth else "module"

    def _add(self, target: str, line: int, via: Via, names: tuple[str, ...] = ()) -> None:
        self.imports.append(Import(self.module.name, target, self.module.path, line, self.context, via, names))
        # Importing a.b.c runs a/__init__ and a/b/__init__ first. Packages containing the
        # importer are already (being) imported before it runs, so they add no edge.
        parts = target.split(".")
        for i in range(1, len(parts)):
            parent = ".".join(parts[:i])
            if (self.module.name == parent or self.module.name.startswith(parent + ".")
                    or not _has_init(self.root, parent)):
                continue
            self.imports.append(Import(self.module.name, parent, self.module.path, line, self.context, "parent"))

    # -- scopes
    def _visit_function(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) -> None:
        # Decorators and defaults run where the function is defined; only the body is lazy.
        if not isinstance(node, ast.Lambda):
            for deco in node.decorator_list:
                self.visit(deco)
        for default in (*node.args.defaults, *node.args.kw_defaults):
            if default is not None:
                self.visit(default)
        self.function_depth += 1
        for stmt in (node.body if isinstance(node.body, list) else [node.body]):
            self.visit(stmt)
        self.function_depth -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _visit_function

    def visit_If(self, node: ast.If) -> None:
        test = node.test
        negated = isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not)
        if not _is_type_checking(test.operand if negated and isinstance(test, ast.UnaryOp) else test):
            self.generic_visit(node)
            return
        guarded, runtime = (node.orelse, node.body) if negated else (node.body, node.orelse)
        self.type_checking_depth += 1
        for stmt in guarded:
            self.visit(stmt)
        self.type_checking_depth -= 1
        for stmt in runtime:
            self.visit(stmt)

    # -- imports
    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(alias.name, node.lineno, "import")
            if alias.asname:
                self.bindings[alias.asname] = alias.name
            else:
                top = alias.name.split(".")[0]
                self.bindings[top] = top

    def _base(self, node: ast.ImportFrom) -> str | None:
        if not node.level:
            return node.module
        # The package a relative import starts from: the module itself for __init__.
        parts = self.module.name.split(".")
        if not self.module.is_package:
            parts = parts[:-1]
        if node.level - 1 > len(parts) - 1:
            return None  # beyond the top-level package: broken, and not ours to resolve
        parts = parts[:len(parts) - (node.level - 1)]
        return ".".join([*parts, node.module] if node.module else parts)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = self._base(node)
        if base is None or base == "__future__":
            return
        attributes: list[str] = []
        for alias in node.names:
            candidate = f"{base}.{alias.name}"
            if alias.name != "*" and module_exists(self.root, candidate):
                self._add(candidate, node.lineno, "from")  # a submodule: that module is executed
            else:
                attributes.append(alias.name)
            if alias.name != "*":
                self.bindings[alias.asname or alias.name] = candidate
        if attributes:
            self._add(base, node.lineno, "from", tuple(attributes))

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
        first = node.args[0] if node.args else None
        if isinstance(first, ast.Constant) and isinstance(first.value, str):
            if name in ("import_module", "__import__") and first.value and not first.value.startswith("."):
                self._add(first.value, node.lineno, "dynamic")
            elif name == "getattr" and isinstance(func, ast.Name) and len(node.args) >= 2:
                chain = self._chain(node.args[0])
                second = node.args[1]
                if chain and isinstance(second, ast.Constant) and isinstance(second.value, str):
                    self.attribute_uses.append((f"{chain}.{second.value}", node.lineno))
        self.generic_visit(node)

    def _chain(self, node: ast.expr) -> str | None:
        """``native._x`` -> ``falconproc.native._x`` when ``native`` was bound by an import."""
        attrs: list[str] = []
        while isinstance(node, ast.Attribute):
            attrs.append(node.attr)
            node = node.value
        if not isinstance(node, ast.Name) or node.id not in self.bindings:
            return None
        return ".".join([self.bindings[node.id], *reversed(attrs)])

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if _is_private(node.attr):
            chain = self._chain(node)
            if chain:
                self.attribute_uses.append((chain, node.lineno))
        self.generic_visit(node)


def _parse(module: Module) -> ast.Module:
    return ast.parse(module.path.read_bytes(), filename=str(module.path))


def _collect(root: Path, module: Module) -> _Collector:
    collector = _Collector(root, module)
    collector.visit(_parse(module))
    return collector


def build_graph(root: Path = ROOT, package: str = PACKAGE) -> ImportGraph:
    root = root.resolve()
    modules = discover(root, package)
    imports = [imp for module in modules.values() for imp in _collect(root, module).imports]
    return ImportGraph(root, package, modules, imports)


# --------------------------------------------------------------------------- cycles


def strongly_connected(nodes: Iterable[str], edges: Iterable[tuple[str, str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative (no recursion limit); components sorted for stable output."""
    succ: dict[str, list[str]] = defaultdict(list)
    for a, b in edges:
        succ[a].append(b)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    for start in sorted(set(nodes)):
        if start in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(start, iter(sorted(set(succ[start]))))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(set(succ[child])))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component: list[str] = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(sorted(component))
    return sorted(components)


def _shortest_cycle(start: str, succ: dict[str, set[str]]) -> tuple[str, ...]:
    """Breadth-first: the shortest path from start back to start."""
    previous: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for nxt in sorted(succ[node]):
            if nxt == start:
                path = [node]
                while path[-1] != start:
                    path.append(previous[path[-1]])
                return (*reversed(path), start)
            if nxt not in previous:
                previous[nxt] = node
                queue.append(nxt)
    return ()


def module_cycles(graph: ImportGraph) -> list[ModuleCycle]:
    """Strongly connected components of more than one module, plus modules importing themselves."""
    edges = graph.cycle_edges()
    pairs = {(e.source, e.target) for e in edges}
    result: list[ModuleCycle] = []
    for component in strongly_connected(graph.modules, pairs):
        members = set(component)
        if len(component) == 1 and (component[0], component[0]) not in pairs:
            continue
        succ: dict[str, set[str]] = defaultdict(set)
        for a, b in pairs:
            if a in members and b in members:
                succ[a].add(b)
        inside = sorted((e for e in edges if e.source in members and e.target in members),
                        key=lambda e: (e.source, e.target, e.line, e.via))
        result.append(ModuleCycle(tuple(component), _shortest_cycle(component[0], succ), tuple(inside)))
    return result


def unit_of(module: str, package: str = PACKAGE) -> str:
    """Top-level unit under the package: ``falconproc.services.images`` -> ``services``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else package


def _elementary_cycles(units: Sequence[str], succ: dict[str, set[str]], cap: int) -> list[tuple[str, ...]]:
    """Every simple cycle, each listed once from its smallest unit (units are few; capped anyway)."""
    order = {u: i for i, u in enumerate(sorted(units))}
    found: list[tuple[str, ...]] = []
    for start in sorted(units):
        stack: list[tuple[str, list[str]]] = [(start, [start])]
        while stack and len(found) < cap:
            node, path = stack.pop()
            for nxt in sorted(succ[node], reverse=True):
                if nxt == start:
                    found.append((*path, start))
                elif order[nxt] > order[start] and nxt not in path:
                    stack.append((nxt, [*path, nxt]))
    return sorted(found, key=lambda c: (len(c), c))


def package_cycles(graph: ImportGraph, cap: int = 200) -> list[PackageCycle]:
    """Cycles between top-level units; imports inside one unit do not count here."""
    by_pair: dict[tuple[str, str], list[Import]] = defaultdict(list)
    # Implicit package-__init__ edges are skipped: each comes with an explicit import into the
    # same unit on the same line, so it adds nothing here but noise.
    for e in graph.cycle_edges():
        if e.via == "parent":
            continue
        a, b = unit_of(e.source, graph.package), unit_of(e.target, graph.package)
        if a != b:
            by_pair[(a, b)].append(e)
    units = {unit_of(m, graph.package) for m in graph.modules}
    result: list[PackageCycle] = []
    for component in strongly_connected(units, by_pair):
        if len(component) < 2:
            continue
        members = set(component)
        succ: dict[str, set[str]] = defaultdict(set)
        inside: dict[tuple[str, str], tuple[Import, ...]] = {}
        for (a, b), imports in sorted(by_pair.items()):
            if a in members and b in members:
                succ[a].add(b)
                inside[(a, b)] = tuple(sorted(imports, key=lambda e: (e.source, e.target, e.line, e.via)))
        result.append(PackageCycle(tuple(component), tuple(_elementary_cycles(component, succ, cap)), inside))
    return result


# --------------------------------------------------------------------------- reach-ins


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _private_part(dotted: str, native: str) -> str | None:
    """The dotted prefix up to the first private component below ``native``, if any."""
    if not dotted.startswith(native + "."):
        return None
    parts = dotted[len(native) + 1:].split(".")
    for i, part in enumerate(parts):
        if _is_private(part):
            return ".".join([native, *parts[:i + 1]])
    return None


def _twin_or_private(module: str) -> str:
    last = module.rsplit(".", 1)[-1]
    return "private twin" if last.endswith(("_py", "_c")) else "private module"


def reach_ins(root: Path = ROOT, native: str = NATIVE, scanned: Sequence[str] = SCANNED) -> list[ReachIn]:
    """Imports of ``native._*`` modules (or private names under ``native``) from outside ``native``.
    The selector ``native/__init__`` is the only public door to the twins."""
    root = root.resolve()
    found: set[ReachIn] = set()
    for top in scanned:
        for module in discover(root, top).values():
            if _in_package(module.name, native):
                continue
            collector = _collect(root, module)
            for imp in collector.imports:
                if imp.via == "parent":
                    continue
                private = _private_part(imp.target, native)
                if private:
                    found.add(ReachIn(module.name, module.path, imp.line, private,
                                      f"imports {_twin_or_private(private)}"))
                elif _in_package(imp.target, native):
                    for name in imp.names:
                        if _is_private(name):
                            found.add(ReachIn(module.name, module.path, imp.line, f"{imp.target}.{name}",
                                              "imports private name"))
            for chain, line in collector.attribute_uses:
                private = _private_part(chain, native)
                if private:
                    found.add(ReachIn(module.name, module.path, line, private, "uses private attribute"))
    return sorted(found, key=lambda r: (str(r.path), r.line, r.target))


# --------------------------------------------------------------------------- construction sites


def _definers(modules: dict[str, Module], names: Sequence[str]) -> dict[str, set[str]]:
    """Constructor name -> modules that define it at top level."""
    defined: dict[str, set[str]] = defaultdict(set)
    for module in modules.values():
        for node in _parse(module).body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name in names:
                defined[node.name].add(module.name)
    return defined


def construction_sites(root: Path = ROOT, package: str = PACKAGE,
                       names: Sequence[str] = CONSTRUCTORS) -> list[Site]:
    """Calls that construct a store, cache or queue, outside the module defining the callee."""
    root = root.resolve()
    modules = discover(root, package)
    defined = _definers(modules, names)
    sites: list[Site] = []

    def walk(node: ast.AST, module: Module, scope: list[str]) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                walk(child, module, [*scope, child.name])
                continue
            if isinstance(child, ast.Call):
                func = child.func
                callee = (func.attr if isinstance(func, ast.Attribute)
                          else func.id if isinstance(func, ast.Name) else "")
                if callee in names and module.name not in defined.get(callee, set()):
                    sites.append(Site(module.name, module.path, child.lineno, callee,
                                      ".".join(scope) + "()" if scope else "<module>"))
            walk(child, module, scope)

    for module in modules.values():
        walk(_parse(module), module, [])
    return sorted(sites, key=lambda s: (str(s.path), s.line, s.callee))


# --------------------------------------------------------------------------- report


def format_module_cycles(cycles: Sequence[ModuleCycle], root: Path) -> str:
    lines: list[str] = []
    for n, cycle in enumerate(cycles, 1):
        kind = "self-import" if len(cycle.members) == 1 else f"SCC of {len(cycle.members)} modules"
        lines.append(f"  [{n}] {kind}: {', '.join(cycle.members)}")
        lines.append(f"      e.g. {' -> '.join(cycle.example)}")
        lines.extend(f"      {e.describe(root)}" for e in cycle.edges)
    return "\n".join(lines)


def format_package_cycles(cycles: Sequence[PackageCycle], root: Path) -> str:
    lines: list[str] = []
    for n, cycle in enumerate(cycles, 1):
        lines.append(f"  [{n}] units {', '.join(cycle.units)}: {len(cycle.cycles)} elementary cycle(s)")
        lines.extend(f"      cycle: {' -> '.join(c)}" for c in cycle.cycles)
        for (a, b), imports in cycle.edges.items():
            lines.append(f"      {a} -> {b}:")
            lines.extend(f"        {e.describe(root)}" for e in imports)
    return "\n".join(lines)


def report(root: Path = ROOT, package: str = PACKAGE, native: str = NATIVE) -> str:
    root = root.resolve()
    graph = build_graph(root, package)
    internal = graph.internal()
    cycle_edges = graph.cycle_edges()
    pairs = {(e.source, e.target) for e in cycle_edges}
    m_cycles = module_cycles(graph)
    p_cycles = package_cycles(graph)
    reaches = reach_ins(root, native)
    sites = construction_sites(root, package)
    unresolved = graph.unresolved()
    count = {c: sum(e.context == c for e in internal) for c in ("module", "function", "type_checking")}
    out = [
        f"import graph of {package} under {root}",
        f"modules: {len(graph.modules)}",
        f"edges: {len(pairs)} distinct module -> module pairs in the cycle graph "
        f"({len({(e.source, e.target) for e in cycle_edges if e.via != 'parent'})} without implicit package "
        f"__init__ edges), from {len(internal)} internal imports "
        f"({count['module']} at import time, {count['function']} lazy, {count['type_checking']} TYPE_CHECKING-only "
        f"[excluded from cycles]; {sum(e.via == 'parent' for e in internal)} implicit package __init__, "
        f"{sum(e.via == 'dynamic' for e in internal)} dynamic)",
        f"module-level cycles: {len(m_cycles)} (members: {sum(len(c.members) for c in m_cycles)})",
        format_module_cycles(m_cycles, root),
        f"package-level cycles: {len(p_cycles)} strongly connected group(s) of units, "
        f"{sum(len(c.cycles) for c in p_cycles)} elementary cycle(s)",
        format_package_cycles(p_cycles, root),
        f"reach-ins into {native}._*: {len(reaches)}",
        *(f"  {r.describe(root)}" for r in reaches),
        f"construction sites ({', '.join(CONSTRUCTORS)} outside their defining module): "
        f"{len(sites)} call sites in {len({s.module for s in sites})} modules",
        *(f"  {s.describe(root)}" for s in sites),
        f"unresolved {package}.* imports: {len(unresolved)}",
        *(f"  {e.describe(root)}" for e in unresolved),
    ]
    return "\n".join(line for line in out if line)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=ROOT, help="directory holding falconproc/ (default: this repo)")
    parser.add_argument("--package", default=PACKAGE)
    parser.add_argument("--native", default=NATIVE)
    args = parser.parse_args(argv)
    print(report(args.root, args.package, args.native))
    return 0


if __name__ == "__main__":
    sys.exit(main())
