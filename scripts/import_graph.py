"""Print the import graph between amberwatch's subpackages (every import, in functions too), by layer.

    python scripts/import_graph.py

Each line is one subpackage and the lower ones it imports; an arrow that runs up or across the layers of
ARCHITECTURE.md is marked. tests/test_architecture.py fails on such an arrow.
"""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "amberwatch"
sys.path.insert(0, str(PACKAGE.parents[1]))

from tests.test_architecture import LAYERS  # noqa: E402  (the one list of layers)


def subpackage_imports() -> dict[str, dict[str, int]]:
    """Subpackage -> imported subpackage -> number of import statements."""
    edges: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for path in PACKAGE.rglob("*.py"):
        me = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                modules = [node.module]
            elif isinstance(node, ast.Import):
                modules = [a.name for a in node.names]
            else:
                continue
            for module in modules:
                parts = module.split(".")
                if parts[0] == "amberwatch" and len(parts) > 1 and parts[1] != me and me != "__init__":
                    edges[me][parts[1]] += 1
    return edges


def main() -> None:
    """Print the graph from the top layer down."""
    layer = {name: i for i, names in enumerate(LAYERS) for name in names}
    edges = subpackage_imports()
    bad = 0
    for i in reversed(range(len(LAYERS))):
        for name in sorted(LAYERS[i]):
            targets = edges.get(name, {})
            parts = []
            for target in sorted(targets, key=lambda t: (-layer.get(t, 99), t)):
                wrong = layer.get(target, 99) >= i
                bad += wrong
                parts.append(f"{target} ({targets[target]}){' <- UP/ACROSS' if wrong else ''}")
            print(f"L{i} {name:<8} -> {', '.join(parts) or '-'}")
    print(f"{sum(len(t) for t in edges.values())} edges between subpackages, {bad} running up or across")


if __name__ == "__main__":
    main()
