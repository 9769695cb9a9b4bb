"""The package's shape, checked from the source: one-way imports, no cycles, no private names across packages,
no module over 500 lines, and the third-party libraries each layer may use.

The rules are the ones in the developers' guide: `cli -> scale -> api -> {weights, model, engine, io} -> errors`;
only `weights/` talks to the network; only `cli` imports typer or rich; `model/` imports nothing of the package
but the errors module every layer shares.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE_ROOT = Path(__file__).resolve().parents[2] / "esc_cli"
MAX_LINES = 500

# A layer may import its own package and any layer of a lower rank.
LAYER_RANK = {"errors": 0, "defaults": 0, "weights": 1, "model": 1, "engine": 1, "io": 1, "api": 2,
              "spandrel": 2, "scale": 3, "cli": 4, "__main__": 4}
# Public entry points that re-export lazily from every layer below the CLI.
FACADES = {"esc_cli", "esc_cli.api"}
# Sideways edges between layers of the same rank, each for a stated reason.
ALLOWED_SIDEWAYS = {
    # The download table checks each checkpoint against its row's expected network config (a frozen dataclass
    # of the model), and conversion reads a checkpoint's config back from its tensor shapes.
    ("weights", "model"),
}
NETWORK_LIBRARIES = {"huggingface_hub", "requests", "httpx", "urllib3", "urllib.request", "http.client"}
TERMINAL_LIBRARIES = {"typer", "rich", "click"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE_ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "esc_cli"


def _is_type_checking_block(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _imports(tree: ast.Module, module: str, *, top_level_only: bool) -> list[tuple[str, list[str]]]:
    """(imported module, imported names) for each import; relative imports resolved against `module`."""
    found: list[tuple[str, list[str]]] = []
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    if top_level_only:
        # Module-level code only: imports under `if TYPE_CHECKING:` never run, and imports inside functions
        # run late, so neither can form an import-time cycle.
        nodes = [n for n in nodes if not _is_type_checking_block(n)]
        nodes = [n for node in nodes for n in ast.walk(node) if not isinstance(node, (ast.FunctionDef, ast.ClassDef))]
    for node in nodes:
        if isinstance(node, ast.Import):
            found.extend((alias.name, []) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module.split(".")
                anchor = package[: len(package) - node.level + (1 if _is_package(module) else 0)]
                base = ".".join(anchor + ([base] if base else []))
            found.append((base, [alias.name for alias in node.names]))
    return found


def _is_package(module: str) -> bool:
    return (PACKAGE_ROOT.parent / module.replace(".", "/") / "__init__.py").exists()


SOURCES = {_module_name(p): p for p in sorted(PACKAGE_ROOT.rglob("*.py"))}
TREES = {name: ast.parse(path.read_text(encoding="utf-8")) for name, path in SOURCES.items()}


@pytest.mark.parametrize("module", sorted(SOURCES))
def test_no_module_is_over_500_lines(module: str) -> None:
    lines = SOURCES[module].read_text(encoding="utf-8").count("\n")
    assert lines <= MAX_LINES, f"{module} has {lines} lines: split it by concern"


def test_imports_flow_one_way() -> None:
    wrong = []
    for module, tree in TREES.items():
        if module in FACADES:
            continue
        layer = _layer(module)
        for target, _names in _imports(tree, module, top_level_only=False):
            if not target.startswith("esc_cli.") or module == "esc_cli.__main__":
                continue
            other = _layer(target)
            if other == layer:
                continue
            if (layer, other) in ALLOWED_SIDEWAYS:
                continue
            # `model/` may use the one errors module and nothing else of the package.
            if (layer == "model" and other != "errors") or LAYER_RANK.get(other, 99) >= LAYER_RANK.get(layer, -1):
                wrong.append(f"{module} imports {target}")
    assert not wrong, "imports against the layering:\n" + "\n".join(wrong)


def test_no_private_name_is_imported_across_packages() -> None:
    wrong = []
    for module, tree in TREES.items():
        for target, names in _imports(tree, module, top_level_only=False):
            if not target.startswith("esc_cli") or _layer(target) == _layer(module):
                continue
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            private += [part for part in target.split(".") if part.startswith("_") and not part.startswith("__")]
            if private:
                wrong.append(f"{module} imports {', '.join(private)} from {target}")
    assert not wrong, "\n".join(wrong)


def test_no_import_cycles_at_import_time() -> None:
    graph: dict[str, set[str]] = {}
    for module, tree in TREES.items():
        edges = set()
        for target, names in _imports(tree, module, top_level_only=True):
            for candidate in [target] + [f"{target}.{n}" for n in names]:
                if candidate in SOURCES and candidate != module:
                    edges.add(candidate)
        graph[module] = edges

    def package_parents(name: str) -> set[str]:
        parts = name.split(".")
        return {".".join(parts[:i]) for i in range(1, len(parts))}

    cycles = []
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt):] + [nxt]
                # A package's __init__ importing its own submodules is not a cycle in practice.
                if not all(a in package_parents(b) or b in package_parents(a) for a, b in zip(cycle, cycle[1:])):
                    cycles.append(" -> ".join(cycle))
            elif nxt not in state:
                visit(nxt, stack)
        stack.pop()
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


@pytest.mark.parametrize(("libraries", "allowed_layer"), [(NETWORK_LIBRARIES, "weights"), (TERMINAL_LIBRARIES, "cli")])
def test_third_party_libraries_stay_in_their_layer(libraries: set[str], allowed_layer: str) -> None:
    wrong = []
    for module, tree in TREES.items():
        if _layer(module) == allowed_layer:
            continue
        for target, _names in _imports(tree, module, top_level_only=False):
            if any(target == lib or target.startswith(lib + ".") for lib in libraries):
                wrong.append(f"{module} imports {target}")
    assert not wrong, f"only {allowed_layer}/ may import {sorted(libraries)}:\n" + "\n".join(wrong)


def test_the_checks_see_a_violation() -> None:
    """The import reader resolves relative imports and skips TYPE_CHECKING blocks, or the checks above prove nothing."""
    tree = ast.parse("from typing import TYPE_CHECKING\nfrom ..io import images\nif TYPE_CHECKING:\n    import torch\n")
    found = _imports(tree, "esc_cli.model.layers", top_level_only=True)
    assert ("esc_cli.io", ["images"]) in found
    assert all(target != "torch" for target, _ in found)
