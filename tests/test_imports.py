"""`lib`'s imports run one way: no cycle, no private `_name` taken from another module.

Read from the source (AST), so imports inside functions count as much as those at the top:
a cycle hidden in a function body still ties the modules together.
"""

import ast
from pathlib import Path

LIB = Path(__file__).resolve().parent.parent / "lib"


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(LIB.rglob("*.py")):
        parts = list(path.relative_to(LIB.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _resolve(module: str, path: Path, node: ast.ImportFrom) -> str:
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    if node.level == 0:
        return node.module or ""
    base = package.split(".")
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def import_graph() -> tuple[dict[str, set[str]], list[str]]:
    """Edges between `lib` modules, and the private names one module takes from another."""
    modules = _modules()
    edges: dict[str, set[str]] = {m: set() for m in modules}
    private = []
    for module, path in modules.items():
        tree = ast.parse(path.read_text(), str(path))
        aliases: dict[str, str] = {}  # local name -> lib module it stands for
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name in modules:
                        edges[module].add(alias.name)
                        aliases[(alias.asname or alias.name).split(".")[0]] = alias.name
            elif isinstance(node, ast.ImportFrom):
                source = _resolve(module, path, node)
                if source not in modules:
                    continue
                for alias in node.names:
                    sub = f"{source}.{alias.name}"
                    if sub in modules:  # `from . import io`: the edge is to lib.io
                        edges[module].add(sub)
                        aliases[alias.asname or alias.name] = sub
                    else:
                        edges[module].add(source)
                        if alias.name.startswith("_") and not alias.name.startswith("__"):
                            private.append(f"{module} imports {source}.{alias.name}")
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in aliases
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
            ):
                private.append(f"{module} uses {aliases[node.value.id]}.{node.attr}")
    for module in edges:
        edges[module].discard(module)
        # A package's __init__ runs before any of its modules: importing `lib` (or
        # `lib.teachers`) from inside it is not an edge back up.
        edges[module] = {e for e in edges[module] if not module.startswith(e + ".")}
    return edges, sorted(set(private))


def find_cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def test_find_cycles_sees_a_cycle_through_three_modules():
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_lib_import_graph_has_no_cycle():
    edges, _ = import_graph()
    assert "lib.io" in edges and edges["lib.runner"], "the graph was not read"
    assert find_cycles(edges) == []


def test_no_private_name_crosses_modules():
    _, private = import_graph()
    assert private == []
