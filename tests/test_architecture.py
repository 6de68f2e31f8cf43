"""The house rules of docs/ARCHITECTURE.md, read from the code itself: the import graph has no cycle (imports
inside functions included), no module imports a higher floor, no module is over 600 lines, and inside
``medbind_lib`` only the registry (and the published numbers) spells out a variant's name."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

import medbind_lib
from medbind_lib import registry

PKG = Path(medbind_lib.__file__).parent
MAX_LINES = 600

# floors, bottom to top (docs/ARCHITECTURE.md); a module may import its own floor and the floors below
FLOORS: tuple[tuple[str, ...], ...] = (
    ("medbind_lib", "errors", "constants", "schema", "io", "quality", "runtime", "distributed", "replicates",
     "registry", "keys", "config", "layout", "pipeline", "plots"),
    ("datasets", "preprocess", "ehr", "synth", "cache", "cache_shards", "linking", "cohort", "check", "loading"),
    ("models", "losses"),
    ("metrics",),
    ("trainer", "finetune", "export"),
    ("medbind", "medcsp", "llm"),
    ("reports",),
    ("prereq", "run", "golden", "kernel_log"),
)
FLOOR = {name: i for i, names in enumerate(FLOORS) for name in names}


def _modules() -> dict[str, Path]:
    out = {}
    for p in PKG.rglob("*.py"):
        parts = list(p.relative_to(PKG.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


MODULES = _modules()


def _imports(mod: str, path: Path) -> set[str]:
    """Suite modules ``mod`` imports anywhere in its body; ``from pkg import sub`` counts as ``pkg.sub``."""
    pkg = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name in MODULES}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            subs = [f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in MODULES]
            rest = [a for a in node.names if f"{target}.{a.name}" not in MODULES]
            out |= set(subs)
            if rest and target in MODULES:
                out.add(target)
    out.discard(mod)
    return out


GRAPH = {m: _imports(m, p) for m, p in MODULES.items()}


def _floor(mod: str) -> int:
    parts = mod.split(".")
    key = parts[1] if len(parts) > 1 else parts[0]
    assert key in FLOOR, f"{mod}: give its top-level name a floor in FLOORS (and docs/ARCHITECTURE.md)"
    return FLOOR[key]


def test_every_module_has_a_floor():
    for m in MODULES:
        _floor(m)


def test_no_module_imports_a_higher_floor():
    climbing = sorted(f"{a} (floor {_floor(a)}) -> {b} (floor {_floor(b)})"
                      for a, bs in GRAPH.items() for b in bs if _floor(b) > _floor(a))
    assert climbing == []


def test_no_import_cycle():
    index, low, stack, on, cycles, counter = {}, {}, [], set(), [], [0]

    def visit(v):                       # Tarjan's strongly connected components
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in GRAPH[v]:
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
                cycles.append(sorted(comp))

    for v in GRAPH:
        if v not in index:
            visit(v)
    assert cycles == []


@pytest.mark.parametrize("path", sorted(MODULES.values()), ids=lambda p: str(p.relative_to(PKG)))
def test_module_size(path):
    n = len(path.read_text().splitlines())
    assert n <= MAX_LINES, f"{path.name}: {n} lines (max {MAX_LINES}): split it along its seams"


def test_variant_names_are_written_once():
    """No string literal equal to a variant name outside the registry and the published numbers (a method's
    name, e.g. ``medcsp``, doubles as its full variant's and is not checked)."""
    names = set(registry.VARIANTS) - set(registry.METHODS)
    allowed = {PKG / "registry.py", PKG / "reports" / "paper.py"}
    found = []
    for p in MODULES.values():
        if p in allowed:
            continue
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in names:
                found.append(f"{p.relative_to(PKG)}:{node.lineno}: {node.value!r}")
    assert found == []
