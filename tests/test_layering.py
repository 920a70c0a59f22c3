"""The package's import graph: no circle, and imports point down only
(modeling files < cards/convert/hub/export < training/predict < cli/bench). Function-level imports count too.

    python tests/test_layering.py   # prints the graph
"""

import ast
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "hf_relpos"
LAYERS = {
    "cards": 1,
    "convert": 1,
    "hub": 1,
    "export": 1,
    "training": 2,
    "prediction": 2,
    "cli": 3,
    "bench": 3,
}  # others: 0


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, name: str) -> set[str]:
    """hf_relpos modules imported anywhere in the file (resolved to module names, not packages' names)."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "hf_relpos":
                continue
            names = [f"{target}.{a.name}" for a in node.names]
            found |= {n for n in names if n in MODULES} or {target}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "hf_relpos"}
    return {m for m in found if m != name}


FILES = {module_name(p): p for p in PACKAGE.rglob("*.py")}
MODULES = set(FILES)


def graph() -> dict[str, set[str]]:
    return {name: imports_of(path, name) for name, path in sorted(FILES.items())}


def layer(name: str) -> int:
    parts = name.split(".")
    return LAYERS.get(parts[1], 0) if len(parts) > 1 else 0


def find_cycle(edges):
    state, stack = {}, []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt == "hf_relpos" or nxt not in edges:  # the package itself: its __init__ is the public face
                continue
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_import_cycle():
    edges = {k: v for k, v in graph().items() if k != "hf_relpos"}
    assert find_cycle(edges) is None, " -> ".join(find_cycle(edges))


def test_imports_point_down():
    upward = [
        f"{a} (layer {layer(a)}) -> {b} (layer {layer(b)})"
        for a, targets in graph().items()
        if a != "hf_relpos"
        for b in targets
        if b != "hf_relpos" and layer(b) > layer(a)
    ]
    assert not upward, upward


if __name__ == "__main__":
    edges = graph()
    for name, targets in edges.items():
        print(f"[{layer(name)}] {name:36s} -> {', '.join(sorted(targets)) or '-'}")
    cycle = find_cycle({k: v for k, v in edges.items() if k != "hf_relpos"})
    print("cycle:", " -> ".join(cycle) if cycle else "none")
    sys.exit(1 if cycle else 0)
