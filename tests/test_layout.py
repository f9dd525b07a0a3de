"""The package's layout: no import cycles among assistant's modules, no module over 400 lines, and no function
over 60 lines outside the tests.

Imports are read with ``ast`` from every module, function-level (deferred) imports included, since
a deferred import only hides a cycle; imports under ``if TYPE_CHECKING:`` never run and are left out.
"""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "assistant"
MAX_LINES = 400


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST):
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _type_checking(node):
            yield from (n for child in node.orelse for n in _imports_of(child))
            continue
        yield from _imports_of(node)


def _imports_of(node: ast.AST):
    if isinstance(node, ast.Import | ast.ImportFrom):
        yield node
    else:
        yield from _imports(node)


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The assistant modules that ``name`` imports, at module level or inside functions."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in _imports(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        else:
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        for target in targets:
            while target and target not in known:  # ``import assistant.x.y`` where y is a name: its module
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def import_graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: imports_of(name, path, set(mods)) for name, path in mods.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
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
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_graph_sees_imports_of_every_kind():
    graph = import_graph()
    assert "assistant.errors" in graph["assistant.answer.pipeline"]  # module level
    assert "assistant.server.openai_api" in graph["assistant.server.app"]
    assert "assistant.errors" in graph["assistant.answer.followup"]  # inside a function


def test_cycles_are_found():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles():
    assert cycles(import_graph()) == []


def test_no_module_over_the_line_limit():
    long = {
        str(p.relative_to(ROOT.parent)): n for p in ROOT.rglob("*.py") if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert long == {}, f"modules over {MAX_LINES} lines: split them by concern"


MAX_FUNCTION_LINES = 60
CODE_FOLDERS = ("assistant", "benchmarks", "training")  # everything but the tests


def long_functions(source: str, limit: int = MAX_FUNCTION_LINES) -> dict[str, int]:
    """Functions and methods of ``source`` longer than ``limit`` lines (``def`` to last line, decorators left out).

    >>> long_functions("def f():\\n" + "    x = 1\\n" * 3, limit=3)
    {'f': 4}
    >>> long_functions("class A:\\n    def g(self):\\n        pass\\n", limit=3)
    {}
    """
    return {
        node.name: n
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and (n := (node.end_lineno or node.lineno) - node.lineno + 1) > limit
    }


def test_long_functions_are_found():
    assert long_functions("def f():\n" + "    x = 1\n" * 60) == {"f": 61}
    assert long_functions("def f():\n" + "    x = 1\n" * 59) == {}


def test_no_function_over_the_line_limit():
    long = {
        f"{path.relative_to(ROOT.parent)}:{name}": n
        for folder in CODE_FOLDERS
        for path in sorted((ROOT.parent / folder).rglob("*.py"))
        for name, n in long_functions(path.read_text(encoding="utf-8")).items()
    }
    assert long == {}, f"functions over {MAX_FUNCTION_LINES} lines: split them into named steps"
