"""The import graph of the ``scripts`` package, read from the code with ``ast``: its layers, edges, cycles and any
import from a higher layer.

    python -m tools.import_graph                 # print the mermaid picture of the layers and their edges
    python -m tools.import_graph --check         # exit 1 on an import cycle or an import from a higher layer
    python -m tools.import_graph --write docs/architecture.md   # refresh the picture embedded in that file

Layers, lowest first (:data:`LAYERS`): a module may import only from its own layer or lower ones.
``scripts/__main__.py`` and ``scripts/research/__main__.py`` (the command lines) sit on top. Every ``import`` and
``from ... import`` counts, also those inside functions, and so do the ``"package.module:function"`` strings of the
command lines' verb tables (they are imported when the verb runs). Imports of anything outside ``scripts`` are
ignored.
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "scripts"
LAYERS = ("utils", "io", "transforms", "phantoms", "datasets", "networks", "training", "baselines", "inference",
          "evaluation", "research")
"""The subpackages of ``scripts``, lowest layer first."""
TOP = "cli"
"""The layer of the command lines (``__main__`` modules), above every other."""
BEGIN, END = "<!-- import-graph:begin -->", "<!-- import-graph:end -->"
VERB_TARGET = re.compile(rf"^({PACKAGE}(?:\.\w+)+):\w+$")


@dataclass
class Graph:
    """Modules (dotted names) -> their layer, and module -> the modules of ``scripts`` it imports."""

    layers: dict[str, str] = field(default_factory=dict)
    edges: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))

    def rank(self, module: str) -> int:
        """Position of the module's layer: -1 for the ``scripts`` package itself, ``len(LAYERS)`` for the top."""
        layer = self.layers[module]
        if layer == TOP:
            return len(LAYERS)
        return LAYERS.index(layer) if layer in LAYERS else -1

    def layer_edges(self) -> set[tuple[str, str]]:
        """``(layer, imported layer)`` pairs between different layers."""
        return {(self.layers[a], self.layers[b]) for a, targets in self.edges.items() for b in targets
                if self.layers[a] != self.layers[b]}


def module_name(path: Path, package_dir: Path) -> str:
    """``scripts/io/series.py`` -> ``scripts.io.series``; a package's ``__init__.py`` -> the package."""
    parts = list(path.relative_to(package_dir.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> str:
    """The layer of a module of ``scripts``: its subpackage, :data:`TOP` for a ``__main__``, ``scripts`` for the
    root."""
    parts = module.split(".")
    if parts[-1] == "__main__":
        return TOP
    if len(parts) == 1:
        return PACKAGE
    if parts[1] not in LAYERS:
        raise ValueError(f"{module}: not in a known layer; add its folder to LAYERS in tools/import_graph.py")
    return parts[1]


def _resolve(name: str, modules: set[str]) -> str | None:
    """The longest prefix of ``name`` that is a module of the package (``scripts.io.series.Series4D`` ->
    ``scripts.io.series``)."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in modules:
            return candidate
    return None


def imported_names(tree: ast.AST, module: str, is_package: bool) -> list[str]:
    """Dotted names a module's code imports (``from a import b`` gives ``a.b``), relative imports made absolute,
    plus the ``"scripts.x.y:function"`` strings of verb tables."""
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                anchor = anchor[: len(anchor) - node.level + (1 if is_package else 0)]
                base = ".".join([*anchor, base] if base else anchor)
            names.extend(f"{base}.{alias.name}" for alias in node.names)
            names.append(base)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and (m := VERB_TARGET.match(node.value)):
            names.append(m.group(1))
    return names


def build(package_dir: Path = ROOT / PACKAGE) -> Graph:
    """Parse every module under ``package_dir`` and collect its imports of the package's modules."""
    files = sorted(p for p in package_dir.rglob("*.py") if "__pycache__" not in p.parts)
    modules = {module_name(p, package_dir): p for p in files}
    graph = Graph()
    for module, path in modules.items():
        graph.layers[module] = layer_of(module)
        tree = ast.parse(path.read_text(), filename=str(path))
        for name in imported_names(tree, module, path.name == "__init__.py"):
            target = _resolve(name, set(modules))
            if target is not None and target != module and target != PACKAGE:
                graph.edges[module].add(target)
    return graph


def cycles(graph: Graph) -> list[list[str]]:
    """The import cycles: strongly connected components of more than one module (Tarjan), each sorted."""
    index, low, on_stack, stack, found = {}, {}, set(), [], []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.edges.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
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

    for node in sorted(graph.layers):
        if node not in index:
            visit(node)
    return sorted(found)


def upward_edges(graph: Graph) -> list[tuple[str, str]]:
    """``(module, imported module)`` pairs where the imported module sits in a higher layer."""
    return sorted((a, b) for a, targets in graph.edges.items() for b in targets if graph.rank(b) > graph.rank(a))


def problems(graph: Graph) -> list[str]:
    """One line per cycle and per upward import; empty when the layering holds."""
    lines = [f"import cycle: {' -> '.join(c)}" for c in cycles(graph)]
    lines += [f"upward import: {a} ({graph.layers[a]}) imports {b} ({graph.layers[b]})" for a, b in upward_edges(graph)]
    return lines


def mermaid(graph: Graph) -> str:
    """A mermaid flowchart, lowest layer at the bottom: one node per layer (its modules listed), one arrow per pair of
    layers with at least one import between them (``A --> B``: A imports B)."""
    members = defaultdict(list)
    for module, layer in graph.layers.items():
        if layer != PACKAGE:
            short = module.split(".", 1)[-1] if layer == TOP else module.rsplit(".", 1)[-1]
            members[layer].append(short if module.count(".") > 1 or layer == TOP else "__init__")
    order = [*LAYERS, TOP]
    lines = ["```mermaid", "flowchart BT"]
    for layer in order:
        if layer not in members:
            continue
        names = sorted(n for n in members[layer] if n != "__init__")
        title = "command lines" if layer == TOP else f"{layer}/"
        rows = [" · ".join(names[i:i + 4]) for i in range(0, len(names), 4)]
        lines.append(f'    {layer}["<b>{title}</b><br/>{"<br/>".join(rows)}"]')
    for a, b in sorted(graph.layer_edges(), key=lambda e: (order.index(e[0]), order.index(e[1]))):
        lines.append(f"    {a} --> {b}")
    lines.append("```")
    return "\n".join(lines) + "\n"


def embed(text: str, picture: str) -> str:
    """``text`` with the part between the :data:`BEGIN` and :data:`END` markers replaced by ``picture``."""
    start, stop = text.find(BEGIN), text.find(END)
    if start < 0 or stop < start:
        raise ValueError(f"no {BEGIN} ... {END} block to replace")
    return text[: start + len(BEGIN)] + "\n" + picture + text[stop:]


def embedded(text: str) -> str:
    """The picture between the markers of ``text`` (empty when there are none)."""
    start, stop = text.find(BEGIN), text.find(END)
    return text[start + len(BEGIN): stop].lstrip("\n") if 0 <= start < stop else ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 on an import cycle or an upward import")
    parser.add_argument("--write", metavar="MARKDOWN", help="replace the picture between the markers of this file")
    args = parser.parse_args(argv)
    graph = build()
    if args.check:
        found = problems(graph)
        print("\n".join(found) if found else f"{len(graph.layers)} modules: no cycle, no upward import")
        return 1 if found else 0
    picture = mermaid(graph)
    if args.write:
        target = Path(args.write)
        target.write_text(embed(target.read_text(), picture))
    else:
        sys.stdout.write(picture)
    return 0


if __name__ == "__main__":
    sys.exit(main())
