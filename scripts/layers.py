"""The package's import graph, read from the source (ast): which kdx module imports which, where the loops
are, and which imports hide inside functions. `python scripts/layers.py [--dot FILE]`.

Used for docs/design.md's layer map; it reads files and runs none of them."""

from __future__ import annotations

import argparse
import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The layers, lowest first: a module may import its own layer and those below it. The package root `kdx`
# (its version and lazily imported public API) and the command line sit outside the order.
LAYERS = ("utilities", "store", "config", "data", "models", "distill", "measure", "deploy", "analysis", "run", "entry")
UTILITIES = {"kdx.errors", "kdx.environment", "kdx.progress", "kdx.timing"}


def layer(module: str) -> str | None:
    if module in UTILITIES:
        return "utilities"
    if module in ("kdx.cli", "kdx.__main__") or module.startswith("kdx.tracking"):
        return "entry"
    if module == "kdx.config":
        return "config"
    part = module.split(".")[1] if module.count(".") else None
    return part if part in LAYERS else None


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, known: set[str]) -> tuple[set[str], set[str]]:
    """(imported at module level, imported inside functions) kdx modules of one file."""
    tree = ast.parse(path.read_text())
    top, inner = set(), set()
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rsplit(".", 1)[0]

    def resolve(node) -> list[str]:
        if isinstance(node, ast.Import):
            return [a.name for a in node.names]
        base = node.module or ""
        if node.level:
            base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
        return [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]

    def visit(node, depth: int) -> None:
        for child in ast.iter_child_nodes(node):
            inside = depth + isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                for name in resolve(child):
                    if name.split(".")[0] == "kdx":
                        while name not in known and "." in name:
                            name = name.rsplit(".", 1)[0]
                        (inner if depth else top).add(name)
            visit(child, inside)

    visit(tree, 0)
    me = module_name(path)
    return top - {me}, inner - {me}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def strong(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            strong(v)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dot", type=Path, help="also write the graph (module level) as Graphviz dot")
    parser.add_argument("--map", action="store_true", help="print each layer's modules and the layers it imports")
    args = parser.parse_args()
    files = sorted((ROOT / "kdx").rglob("*.py"))
    known = {module_name(f) for f in files}
    top, inner = defaultdict(set), defaultdict(set)
    for f in files:
        top[module_name(f)], inner[module_name(f)] = imports(f, known)
    every = {m: (top[m] | inner[m]) - {"kdx"} for m in known if m != "kdx"}
    print(f"{len(known)} modules, {sum(map(len, top.values()))} module-level and "
          f"{sum(map(len, inner.values()))} function-level imports of kdx modules")
    for component in cycles(every):
        print("loop (counting imports inside functions):", " ↔ ".join(component))
    for component in cycles(top):
        print("loop at module level:", " ↔ ".join(component))
    unplaced = sorted(m for m in known if m != "kdx" and layer(m) is None)
    if unplaced:
        print("in no layer:", ", ".join(unplaced))
    for m in sorted(known):
        for target in sorted((top[m] | inner[m]) - {"kdx", m}):
            if layer(m) and layer(target) and LAYERS.index(layer(target)) > LAYERS.index(layer(m)):
                print(f"upward: {m} ({layer(m)}) imports {target} ({layer(target)})")
    for m in sorted(inner):
        if inner[m]:
            print(f"inside functions of {m}: {', '.join(sorted(inner[m]))}")
    if args.map:
        for name in LAYERS:
            members = sorted(m for m in known if layer(m) == name)
            uses = sorted({layer(t) for m in members for t in every[m] if layer(t) and layer(t) != name},
                          key=LAYERS.index)
            short = ", ".join(m.removeprefix("kdx.") for m in members)
            print(f"{name:<9} imports {', '.join(uses) or 'nothing of kdx'}\n          {short}")
    if args.dot:
        lines = ["digraph kdx {", "  rankdir=LR;"]
        lines += [f'  "{a}" -> "{b}";' for a in sorted(top) for b in sorted(top[a])]
        args.dot.write_text("\n".join(lines + ["}"]) + "\n")


if __name__ == "__main__":
    main()
