"""Figures about the shape of operator/gantry: largest modules and functions, import cycles.

Run: python -m bench.architecture. Printed, not asserted: the layer contract (import-linter in
.ci/run) is what enforces the shape; these numbers are for the before/after of a refactor.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parent.parent / "operator"


def functions(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text())
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            out.append((node.end_lineno - node.lineno + 1, node.name))  # type: ignore[operator]
    return out


def cycles(graph: grimp.ImportGraph) -> list[tuple[str, ...]]:
    """Strongly connected groups of modules (Tarjan), each group a cycle of imports."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[tuple[str, ...]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for other in sorted(graph.find_modules_directly_imported_by(module)):
            if other not in index:
                visit(other)
                low[module] = min(low[module], low[other])
            elif other in stack:
                low[module] = min(low[module], index[other])
        if low[module] == index[module]:
            group = []
            while True:
                top = stack.pop()
                group.append(top)
                if top == module:
                    break
            if len(group) > 1:
                found.append(tuple(sorted(group)))

    sys.setrecursionlimit(10_000)
    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return found


def main() -> int:
    sys.path.insert(0, str(ROOT))
    files = sorted((ROOT / "gantry").rglob("*.py"))
    sizes = sorted(((len(p.read_text().splitlines()), p.relative_to(ROOT)) for p in files), reverse=True)
    print("largest modules (lines):")
    for lines, path in sizes[:6]:
        print(f"  {lines:5d}  {path}")
    funcs = sorted(
        ((n, f"{p.relative_to(ROOT)}:{name}") for p in files for n, name in functions(p)), reverse=True
    )
    print("largest functions (lines):")
    for lines, where in funcs[:6]:
        print(f"  {lines:5d}  {where}")
    print(f"functions over 50 lines: {sum(1 for n, _ in funcs if n > 50)}")
    graph = grimp.build_graph("gantry")
    groups = cycles(graph)
    print(f"import cycles (strongly connected groups): {len(groups)}")
    for group in groups:
        print("  " + " <-> ".join(m.removeprefix("gantry.") for m in group))
    return 0


if __name__ == "__main__":
    sys.exit(main())
