"""Import architecture of falconproc, checked statically (see import_graph.py for the rules).

The first tests check the real tree; the ``test_checker_*`` ones run the checker on tiny
packages written to tmp_path, so a checker that can no longer fail is caught too.
"""
from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from tests.architecture.import_graph import (
    NATIVE,
    ROOT,
    ImportGraph,
    build_graph,
    construction_sites,
    format_module_cycles,
    format_package_cycles,
    module_cycles,
    package_cycles,
    reach_ins,
)


@pytest.fixture(scope="module")
def graph() -> ImportGraph:
    return build_graph(ROOT)


def test_no_module_level_import_cycles(graph: ImportGraph) -> None:
    cycles = module_cycles(graph)
    if cycles:
        pytest.fail(
            f"{len(cycles)} import cycle(s) between falconproc modules (lazy imports count; "
            f"TYPE_CHECKING-only ones do not):\n{format_module_cycles(cycles, graph.root)}", pytrace=False)


def test_no_package_level_import_cycles(graph: ImportGraph) -> None:
    cycles = package_cycles(graph)
    if cycles:
        pytest.fail(
            f"import cycle(s) between top-level units of falconproc (falconproc.<unit>...; lazy imports "
            f"count):\n{format_package_cycles(cycles, graph.root)}", pytrace=False)


def test_no_reach_ins_to_private_native_modules() -> None:
    found = reach_ins(ROOT)
    listing = "\n".join(f"  {r.describe(ROOT)}" for r in found)
    if found:
        pytest.fail(
            f"{len(found)} import(s) of private {NATIVE}._* modules or names from outside {NATIVE}; use the "
            f"selector's public names (from {NATIVE} import ...), e.g. py_plan_resize/c_plan_resize to compare "
            f"twins:\n{listing}", pytrace=False)


def test_internal_imports_resolve(graph: ImportGraph) -> None:
    # A dangling import (a module moved, a lazy import left behind) also hides its edge
    # from the cycle checks above.
    missing = graph.unresolved()
    listing = "\n".join(f"  {e.describe(graph.root)}" for e in missing)
    if missing:
        pytest.fail(f"{len(missing)} import(s) of falconproc modules that do not exist:\n{listing}", pytrace=False)


# --------------------------------------------------------------------------- the checker itself


def _write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


def test_checker_detects_cycle_through_lazy_import(tmp_path: Path) -> None:
    root = _write(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/alpha/__init__.py": "",
        "pkg/alpha/x.py": "from ..beta.y import helper\n",  # relative, resolved to pkg.beta.y
        "pkg/beta/__init__.py": "",
        "pkg/beta/y.py": """\
            def helper():
                import pkg.alpha.x  # lazy: still a cycle
            """,
    })
    graph = build_graph(root, "pkg")
    [cycle] = module_cycles(graph)
    assert cycle.members == ("pkg.alpha.x", "pkg.beta.y")
    assert {(e.source, e.target, e.line, e.context) for e in cycle.edges} == {
        ("pkg.alpha.x", "pkg.beta.y", 1, "module"), ("pkg.beta.y", "pkg.alpha.x", 2, "function")}
    [units] = package_cycles(graph)
    assert units.units == ("alpha", "beta")
    assert units.cycles == (("alpha", "beta", "alpha"),)
    assert "lazy" in format_package_cycles([units], root)


def test_checker_counts_package_init_of_imported_submodule(tmp_path: Path) -> None:
    # As jobs/registry <-> queue/__init__: importing q.base runs q/__init__, which imports back.
    root = _write(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/q/__init__.py": "from pkg.q.base import Job\n\ndef late():\n    from pkg.r import reg\n",
        "pkg/q/base.py": "class Job: ...\n",
        "pkg/r/__init__.py": "",
        "pkg/r/reg.py": "from pkg.q.base import Job\n",
    })
    [cycle] = module_cycles(build_graph(root, "pkg"))
    assert cycle.members == ("pkg.q", "pkg.r.reg")
    assert any(e.via == "parent" and e.target == "pkg.q" for e in cycle.edges)


def test_checker_passes_clean_package(tmp_path: Path) -> None:
    root = _write(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/config.py": "import os\n",
        "pkg/store/__init__.py": "from .base import Store\nfrom . import local\n",
        "pkg/store/base.py": "from pkg.config import os\n",
        "pkg/store/local.py": "from .base import Store\n",
        "pkg/web/__init__.py": "",
        "pkg/web/app.py": """\
            from pkg.store import Store, local
            def make():
                from pkg.web import views  # lazy: counted
            """,
        "pkg/web/views.py": """\
            import typing
            from pkg.native import public_fn
            if typing.TYPE_CHECKING:
                from pkg.web.app import make  # type-only back edge: not a cycle
            """,
        "pkg/native/__init__.py": "from pkg.native._impl_py import public_fn\n",  # the selector may
        "pkg/native/_impl_py.py": "def public_fn(): ...\n",
    })
    graph = build_graph(root, "pkg")
    assert module_cycles(graph) == [] and package_cycles(graph) == []
    assert graph.unresolved() == []
    assert reach_ins(root, "pkg.native", ("pkg",)) == []
    edges = {(e.source, e.target, e.context) for e in graph.internal()}
    assert {("pkg.web.app", "pkg.web.views", "function"), ("pkg.web.views", "pkg.web.app", "type_checking")} <= edges


def test_checker_detects_reach_in(tmp_path: Path) -> None:
    root = _write(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/native/__init__.py": "from pkg.native._impl_py import fn\nfrom pkg.native._types import T\n",
        "pkg/native/_impl_py.py": "def fn(): ...\ndef _helper(): ...\n",
        "pkg/native/_types.py": "T = int\n",
        "pkg/user.py": """\
            from pkg.native import fn  # public: fine
            from pkg.native._impl_py import fn as twin
            def lazy():
                from pkg.native import _types
            """,
        "tests/__init__.py": "",
        "tests/test_x.py": """\
            import pkg.native._impl_c as c_mod
            from pkg import native
            from pkg.native import _selector_helper
            impl = native._impl_c.fn
            """,
    })
    found = {(r.describe(root)) for r in reach_ins(root, "pkg.native", ("pkg", "tests"))}
    assert found == {
        "pkg/user.py:2  pkg.user imports private twin pkg.native._impl_py",
        "pkg/user.py:4  pkg.user imports private module pkg.native._types",
        "tests/test_x.py:1  tests.test_x imports private twin pkg.native._impl_c",
        "tests/test_x.py:3  tests.test_x imports private name pkg.native._selector_helper",
        "tests/test_x.py:4  tests.test_x uses private attribute pkg.native._impl_c",
    }


def test_construction_sites_skip_the_defining_module(tmp_path: Path) -> None:
    root = _write(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/store.py": "class LocalContentStore: ...\ndef create_store():\n    return LocalContentStore()\n",
        "pkg/app.py": "from pkg import store\ndef make():\n    return store.create_store()\n",
    })
    [site] = construction_sites(root, "pkg")
    assert (site.module, site.line, site.callee, site.enclosing) == ("pkg.app", 3, "create_store", "make()")
