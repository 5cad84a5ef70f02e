"""The package's layering, read from the source with ``ast`` (no GPU, no build needed):

- every module of ``hrnet_fast/`` imports;
- no library module imports the command line (``hrnet_fast.cli``): only the ``cli`` package and
  ``__main__`` do;
- the imports that run when a module is imported (module level, ``TYPE_CHECKING`` blocks excluded) form no
  cycle among the package's modules, and neither do all imports, those inside functions included;
- no library module takes a name from the package face (``hrnet_fast/__init__.py``, e.g. ``from . import
  __version__``): that runs from a lower layer back up;
- no module is over 560 lines.
"""
import ast
import importlib
import os
from typing import Dict, List, Set, Tuple

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PKG = "hrnet_fast"
MAX_LINES = 560


def _modules() -> Dict[str, str]:
    """dotted name -> path of every .py file of the package (kernels/ is installed as hrnet_fast.kernels)."""
    out = {}
    for base, prefix in ((os.path.join(ROOT, PKG), PKG), (os.path.join(ROOT, "kernels"), PKG + ".kernels")):
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
            rel = os.path.relpath(dirpath, base)
            pkg = prefix if rel == "." else prefix + "." + rel.replace(os.sep, ".")
            for f in sorted(filenames):
                if f.endswith(".py"):
                    out[pkg if f == "__init__.py" else f"{pkg}.{f[:-3]}"] = os.path.join(dirpath, f)
    return out


MODULES = _modules()


def _is_type_checking(node: ast.AST) -> bool:
    test = node.test if isinstance(node, ast.If) else None
    return isinstance(test, ast.Name) and test.id == "TYPE_CHECKING" or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(name: str, path: str) -> List[Tuple[str, List[str], bool]]:
    """``(absolute module, names taken from it, at module level)`` of every import statement of a module."""
    tree = ast.parse(open(path).read(), path)
    is_pkg = os.path.basename(path) == "__init__.py"
    here = name.split(".") if is_pkg else name.split(".")[:-1]
    found = []

    def visit(node: ast.AST, top: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                continue  # what static tools see, never run
            inner = top and not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                found.extend((a.name, [], top) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = here[:len(here) - child.level + 1] if child.level else []
                mod = ".".join(base + ([child.module] if child.module else []))
                found.append((mod, [a.name for a in child.names], top))
            visit(child, inner)

    visit(tree, True)
    return found


def _edges(name: str, path: str, module_level_only: bool) -> Set[str]:
    """The package's modules that ``name`` imports: ``from X import y`` counts as importing ``X.y`` when that is
    a module, else ``X``."""
    out = set()
    for mod, names, top in _imports(name, path):
        if module_level_only and not top:
            continue
        targets = [f"{mod}.{n}" if f"{mod}.{n}" in MODULES else mod for n in names] or [mod]
        out.update(t for t in targets if t in MODULES and t != name)
    return out


def _is_cli(name: str) -> bool:
    return name == f"{PKG}.cli" or name.startswith(f"{PKG}.cli.") or name == f"{PKG}.__main__"


@pytest.mark.parametrize("name", sorted(n for n in MODULES if n.startswith(PKG + ".") and ".kernels" not in n
                                        and n != f"{PKG}.__main__"))
def test_every_module_imports(name):
    importlib.import_module(name)


def test_no_library_module_imports_the_command_line():
    bad = sorted(f"{name} imports {mod}" for name, path in MODULES.items() if not _is_cli(name)
                 for mod, names, _ in _imports(name, path)
                 if _is_cli(mod) or (mod == PKG and "cli" in names))
    assert not bad, bad


def _find_cycle(graph: Dict[str, Set[str]]):
    state: Dict[str, int] = {}  # 1: on the current path, 2: done
    stack: List[str] = []

    def dfs(n):
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state:
                cycle = dfs(m)
                if cycle:
                    return cycle
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state:
            cycle = dfs(n)
            if cycle:
                return cycle
    return None


def test_no_import_cycle_at_module_level():
    graph = {name: _edges(name, path, module_level_only=True) for name, path in MODULES.items()}
    assert _find_cycle(graph) is None, " -> ".join(_find_cycle(graph))


def test_no_import_cycle_even_inside_functions():
    """Imports deferred into functions (to keep torch out of ``--help``) make no loop either: the old
    ``cli.py`` <-> ``predict.py`` pair imported each other that way."""
    graph = {name: _edges(name, path, module_level_only=False) for name, path in MODULES.items()}
    assert _find_cycle(graph) is None, " -> ".join(_find_cycle(graph))


def test_find_cycle_sees_a_cycle():
    """The detector itself: the old hrnet_fast/cli.py <-> hrnet_fast/predict.py loop, as a graph."""
    assert _find_cycle({"cli": {"predict"}, "predict": {"cli", "estimator"}, "estimator": set()}) == ["cli", "predict", "cli"]
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_library_modules_take_no_name_from_the_package_face():
    """``from . import __version__`` in a submodule runs from a lower layer back up to ``hrnet_fast/__init__.py``
    (the face exists for users; the package's own modules import the module that defines a name)."""
    bad = sorted(f"{name}: from {mod} import {', '.join(names)}" for name, path in MODULES.items() if not _is_cli(name)
                 for mod, names, _ in _imports(name, path)
                 if mod == PKG and any(f"{PKG}.{n}" not in MODULES for n in names))
    assert not bad, bad


def test_no_module_over_560_lines():
    sizes = {name: sum(1 for _ in open(path)) for name, path in MODULES.items()}
    assert not {n: s for n, s in sizes.items() if s > MAX_LINES}, sorted(sizes.items(), key=lambda t: -t[1])[:5]


def test_the_scan_sees_the_package():
    """The checks above are only as good as the scan: it must see the command line and the edges it has."""
    for name in (PKG, f"{PKG}.cli", f"{PKG}.cli.predict", f"{PKG}.coco", f"{PKG}.estimator", f"{PKG}.kernels.fused_exchange"):
        assert name in MODULES, name
    assert f"{PKG}.coco" in _edges(f"{PKG}.estimator", MODULES[f"{PKG}.estimator"], module_level_only=True)
    assert f"{PKG}.cli.predict" in _edges(f"{PKG}.cli.eval", MODULES[f"{PKG}.cli.eval"], module_level_only=True)
    assert f"{PKG}.video" in _edges(f"{PKG}.cli.predict", MODULES[f"{PKG}.cli.predict"], module_level_only=False)
    assert f"{PKG}.video" not in _edges(f"{PKG}.cli.predict", MODULES[f"{PKG}.cli.predict"], module_level_only=True)
    assert f"{PKG}.kernels._utils" in _edges(f"{PKG}.kernels.fused_exchange", MODULES[f"{PKG}.kernels.fused_exchange"], True)
