"""The code's layout, read with ``ast``: engine/ imports no framework and nothing above it, train/ has
no import cycles, and every file and function stays short."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FRAMEWORKS = ("jax", "jaxlib", "flax", "optax", "orbax", "torch", "jax_models", "numpy_mlp")
ABOVE_ENGINE = ("train.backends", "train.experiments", "train.bench", "train.report", "train.analysis", "train.cli",
                "train.runtime", "train.precision")
SIZED = ("train", "data", "jax_models", "numpy_mlp", "scripts")
MAX_FILE_LINES, MAX_FUNCTION_LINES = 400, 60


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> list[tuple[str, bool]]:
    """(module imported, at module level?) for every import in ``path``; ``from a import b`` gives ``a.b``
    where that is a module of ours, else ``a``."""
    tree = ast.parse(path.read_text())
    top = {id(n) for n in tree.body} | {id(n) for s in tree.body if isinstance(s, (ast.If, ast.Try))
                                        for n in ast.walk(s)}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, id(node) in top) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                out.append((sub if _ours(sub) else node.module, id(node) in top))
    return out


def _ours(name: str) -> bool:
    path = ROOT / Path(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def train_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted((ROOT / "train").rglob("*.py"))}


def test_engine_imports_no_framework_and_nothing_above_it():
    bad = []
    for name, path in train_modules().items():
        if not name.startswith("train.engine"):
            continue
        for imported, _ in imports(path):
            if imported.split(".")[0] in FRAMEWORKS or imported.startswith(ABOVE_ENGINE):
                bad.append(f"{name} imports {imported}")
    assert bad == []


@pytest.mark.parametrize("package, forbidden", [
    ("jax_models", ("numpy_mlp", "torch", "train", "data")),        # the JAX models stand alone
    ("numpy_mlp", ("jax", "jaxlib", "flax", "optax", "torch", "jax_models", "train", "data")),  # so does the baseline
    ("data", ("jax", "flax", "optax", "torch", "jax_models", "numpy_mlp", "train")),
])
def test_model_and_data_packages_import_no_sibling(package, forbidden):
    bad = [f"{module_name(p)} imports {imported}" for p in sorted((ROOT / package).rglob("*.py"))
           for imported, _ in imports(p) if imported.split(".")[0] in forbidden]
    assert bad == []


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component of more than one module (Tarjan)."""
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _graph(function_level: bool) -> dict[str, set[str]]:
    """train.* -> the train.* modules it imports (a package's import of its own modules left out: that
    is how a package's __init__ gathers them, not a dependency of theirs on it)."""
    mods = train_modules()
    graph = {}
    for name, path in mods.items():
        deps = set()
        for imported, top in imports(path):
            if imported in mods and imported != name and (top or function_level):
                deps.add(imported)
            elif imported.rsplit(".", 1)[0] in mods and imported.rsplit(".", 1)[0] != name and (top or function_level):
                deps.add(imported.rsplit(".", 1)[0])
        graph[name] = {d for d in deps if not d.startswith(name + ".")}
    return graph


def test_module_level_imports_of_train_have_no_cycles():
    assert _cycles(_graph(function_level=False)) == []


def test_function_level_imports_break_no_cycle_either():
    """An import moved into a function to dodge a circle is still a circle."""
    assert _cycles(_graph(function_level=True)) == []


def test_the_cycle_finder_finds_cycles():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def _sized_files() -> list[Path]:
    return [p for d in SIZED for p in sorted((ROOT / d).rglob("*.py"))]


@pytest.mark.parametrize("path", _sized_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_files_and_functions_are_short(path):
    text = path.read_text()
    assert len(text.splitlines()) <= MAX_FILE_LINES
    long = [f"{n.name} ({n.end_lineno - n.lineno + 1} lines)" for n in ast.walk(ast.parse(text))
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.end_lineno - n.lineno + 1 > MAX_FUNCTION_LINES]
    assert long == []
