"""The import graph of kdgan: no cycle anywhere (imports inside functions count), and the
light modules stay light in a fresh interpreter."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import kdgan

PACKAGE = Path(kdgan.__file__).parent


def _modules(root: Path = PACKAGE) -> dict[str, Path]:
    """Dotted name -> file of every module under `root` (a package by its __init__.py)."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The kdgan modules that `name` imports anywhere in its file: `import a.b`, `from a
    import b` (a.b when b is a module, else a) and relative forms, at any depth."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
    return {m for m in found if m in modules}


def import_graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    modules = _modules(root)
    return {name: _imports(name, path, modules) - {name} for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of `graph` as [a, b, ..., a], or None (depth-first, nodes in sorted order)."""
    done: set[str] = set()
    stack: list[str] = []
    on_stack: set[str] = set()

    def visit(node: str) -> list[str] | None:
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt in on_stack:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in done:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        stack.pop()
        on_stack.discard(node)
        done.add(node)
        return None

    for node in sorted(graph):
        if node not in done:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_find_cycle_names_the_loop_and_passes_a_tree():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_the_graph_holds_imports_inside_functions_and_from_package_forms(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from pkg import b\n")
    (pkg / "b.py").write_text("import pkg.sub.c\nfrom pkg.sub import VALUE\n")
    (pkg / "sub" / "__init__.py").write_text("from . import c\n")
    (pkg / "sub" / "c.py").write_text("from ..a import f\nimport numpy\n")
    graph = import_graph(pkg)
    assert graph == {"pkg": set(), "pkg.a": {"pkg.b"}, "pkg.b": {"pkg.sub.c", "pkg.sub"},
                     "pkg.sub": {"pkg.sub.c"}, "pkg.sub.c": {"pkg.a"}}
    assert find_cycle(graph) == ["pkg.a", "pkg.b", "pkg.sub", "pkg.sub.c", "pkg.a"]
    graph = import_graph()  # kdgan's own imports inside functions are in it
    assert "kdgan.textnet" in graph["kdgan.models"] and "kdgan.run" in graph["kdgan.tune"]


def test_kdgan_has_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def _loaded_after(statement: str) -> set[str]:
    """The modules a fresh interpreter holds after `statement`."""
    code = f"{statement}; import sys; print('\\n'.join(sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, cwd=PACKAGE.parent)
    return set(done.stdout.split())


MODEL_MODULES = {"kdgan.models", "kdgan.textnet", "kdgan.game", "kdgan.losses", "kdgan.methods",
                 "kdgan.run", "kdgan.train", "kdgan.tune"}


@pytest.mark.slow
def test_importing_the_data_loads_no_model_module():
    # torch stays: the loaders hand out tensors (Split, TextInput)
    loaded = _loaded_after("import kdgan.data")
    assert "kdgan.data.tags" in loaded and not MODEL_MODULES & loaded


@pytest.mark.slow
def test_importing_the_results_loads_no_game_and_no_run():
    loaded = _loaded_after("import kdgan.results")
    assert "kdgan.config" in loaded and not MODEL_MODULES & loaded


def test_config_and_io_need_no_torch():
    assert "torch" not in _loaded_after("import kdgan.config, kdgan.io")
