"""The layering of ARCHITECTURE.md, checked on the source: who may import whom, no private names
imported across modules, no import cycle (at module level, nor with the imports inside functions)."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).parents[1] / "src" / "m2l"

LAYERS = {
    0: ("m2l.config", "m2l.errors", "m2l.files", "m2l.lazy", "m2l.runtime"),
    1: ("m2l.audio", "m2l.checksummed", "m2l.formats", "m2l.sniff"),
    2: ("m2l.consistency",),
    3: ("m2l.models",),
    4: ("m2l.passes", "m2l.framing", "m2l.packing", "m2l.codec", "m2l.codec_v1", "m2l.codec_v2"),
    5: ("m2l.loading", "m2l.authors_api"),
    6: (
        "m2l",
        "m2l.__main__",
        "m2l.cli",
        "m2l.train",
        "m2l.evaluate",
        "m2l.probe",
        "m2l.datasets",
        "m2l.latents",
        "m2l.generate",
    ),
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _layer(module: str) -> int | None:
    """The layer of `module`: its longest listed prefix (`m2l` alone is the package facade, which
    re-exports names of every layer lazily)."""
    best, layer = -1, None
    for number, names in LAYERS.items():
        for name in names:
            matches = module == name or (name != "m2l" and module.startswith(name + "."))
            if matches and len(name) > best:
                best, layer = len(name), number
    return layer


def _imports(tree: ast.Module, module: str, top_level_only: bool) -> list[tuple[str, list[str], int]]:
    """(imported m2l module, imported names, line) of every import (or only the module-level ones
    outside `if TYPE_CHECKING:`)."""
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found = []
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "m2l" or node.module.startswith("m2l."):
                found.append((node.module, [a.name for a in node.names], node.lineno))
        elif isinstance(node, ast.Import):
            found += [(a.name, [], node.lineno) for a in node.names if a.name.startswith("m2l")]
    return found


def _sources() -> dict[str, ast.Module]:
    return {_module_name(p): ast.parse(p.read_text(), str(p)) for p in sorted(SRC.rglob("*.py"))}


def test_every_module_has_a_layer():
    assert [m for m in _sources() if _layer(m) is None] == []


def test_modules_import_only_their_own_layer_or_below():
    wrong = []
    for module, tree in _sources().items():
        for target, _, line in _imports(tree, module, top_level_only=False):
            if _layer(target) is not None and _layer(target) > _layer(module):
                wrong.append(f"{module}:{line} imports {target} (layer {_layer(target)} > {_layer(module)})")
    assert wrong == []


def test_no_private_name_is_imported_from_another_module():
    wrong = []
    for module, tree in _sources().items():
        for target, names, line in _imports(tree, module, top_level_only=False):
            wrong += [
                f"{module}:{line} imports {target}.{n}"
                for n in names
                if n.startswith("_") and not n.endswith("__")
            ]
    assert wrong == []


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """An import cycle of `graph` (module -> the modules it imports), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module: str, path: list[str]) -> list[str] | None:
        state[module] = 1
        for target in sorted(graph.get(module, ())):
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target in graph and target not in state and (found := visit(target, [*path, target])):
                return found
        state[module] = 2
        return None

    for module in sorted(graph):
        if module not in state and (found := visit(module, [module])):
            return found
    return None


def test_module_level_imports_form_no_cycle():
    graph = {
        module: {target for target, _, _ in _imports(tree, module, top_level_only=True)}
        for module, tree in _sources().items()
    }
    found = _cycle(graph)
    assert found is None, "import cycle: " + " -> ".join(found or [])


def test_no_import_cycle_even_inside_functions_or_for_type_checking():
    """No two modules need each other, whenever they import (`from m2l.cli import codec` imports
    the module m2l.cli.codec, not the package)."""
    sources = _sources()
    graph = {
        module: {
            f"{target}.{name}" if f"{target}.{name}" in sources else target
            for target, names, _ in _imports(tree, module, top_level_only=False)
            for name in names or [""]
        }
        for module, tree in sources.items()
    }
    found = _cycle(graph)
    assert found is None, "import cycle: " + " -> ".join(found or [])
