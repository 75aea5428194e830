"""The package's architecture holds: no import circle, no import that runs back up a floor, the
decision's steps in data-flow order, no module over 600 lines, a thin orchestrator.

Floors, lowest first (a module may import its own floor and the floors below; every import in
a module counts, function-level ones included, as in ``python ../shared/tools/imports.py``):

0. foundation: errors, thread control, special functions, progress messages, exact values;
1. objects: the distributions and the dataset;
2. core: the decision steps (``injectivity/``, in the order of :data:`STEPS`: a step imports
   only earlier steps), the backends, the exact test, the kernels, the mean-field model,
   resource estimates;
3. input: loaders and writers (``io/``), array inputs, the training configuration;
4. results and orchestration: result types, ``analysis``, near-dependency actions, training runs;
5. presentation: renderers, plots, the CLI, the public ``__init__``.
"""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "ntkcheck"

STEPS = ["findings", "written", "keys", "screen", "geometry", "probes", "features", "factor", "stream", "rounding",
         "triangle", "iteration", "spectrum", "dependencies", "verify", "enclosure", "reuse", "sigma", "certify", "estimate", "plan",
         "pairs", "summary", "decide", "combine"]

FLOORS = [
    ["errors", "_threads", "special", "progress", "exact_values", "meanfield._parallel",
     "_compiled"],
    ["distributions", "dataset", "vocabulary"],
    ["injectivity.*", "backends.*", "exact.*", "kernels", "resources", "meanfield.loss",
     "meanfield.schemes", "meanfield.model", "meanfield.fast",
     "meanfield.adjoint",
     "meanfield.ntk", "meanfield.flow", "meanfield.teacher", "meanfield.explain"],
    ["io.*", "arrays", "meanfield.config"],
    ["results", "kernel_spectrum", "neardep", "analysis", "meanfield.run", "meanfield.trained",
     "meanfield"],
    ["report.*", "plot", "plot_training", "cli.*", "__main__", ""],
]


def _modules() -> dict[str, Path]:
    out = {}
    for p in PKG.rglob("*.py"):
        parts = p.relative_to(PKG).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = p
    return out


def _floor(mod: str) -> int:
    for k, names in enumerate(FLOORS):
        for n in names:
            if mod == n or (n.endswith(".*") and (mod == n[:-2] or mod.startswith(n[:-1]))):
                return k
    raise AssertionError(f"module ntkcheck.{mod} has no floor: add it to FLOORS")


def _imports(mods: dict[str, Path]) -> dict[str, set[str]]:
    """Every import of every module (resolved to a module of the package)."""
    edges: dict[str, set[str]] = {m: set() for m in mods}
    for mod, path in mods.items():
        is_pkg = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = mod.split(".") if mod else []
                    base = base if is_pkg else base[:-1]
                    base = base[:len(base) - (node.level - 1)]
                    target = ".".join(base + ([node.module] if node.module else []))
                    targets = [f"ntkcheck.{target}".rstrip(".")]
                else:
                    targets = [node.module or ""]
                subs = [f"{targets[0]}.{a.name}" for a in node.names
                        if f"{targets[0]}.{a.name}"[len("ntkcheck."):] in mods]
                # the package itself only when a name is not a submodule (as imports.py does)
                targets = subs + (targets if len(subs) < len(node.names) else [])
            for t in targets:
                if t != "ntkcheck" and not t.startswith("ntkcheck."):
                    continue
                name = t[len("ntkcheck."):] if t != "ntkcheck" else ""
                while name and name not in mods:
                    name = name.rsplit(".", 1)[0] if "." in name else ""
                if name and name in mods and name != mod:  # the package root: re-exports only
                    edges[mod].add(name)
    return edges


def violations() -> list[str]:
    mods = _modules()
    edges = _imports(mods)
    out = []
    for mod, targets in sorted(edges.items()):
        for t in sorted(targets):
            if _floor(t) > _floor(mod):
                out.append(f"ntkcheck.{mod} (floor {_floor(mod)}) imports ntkcheck.{t} "
                           f"(floor {_floor(t)})")
            a, b = mod.split("."), t.split(".")
            if a[0] == b[0] == "injectivity" and len(a) == len(b) == 2:
                if STEPS.index(b[1]) > STEPS.index(a[1]):
                    out.append(f"step {a[1]} imports the later step {b[1]}")
    return out


def test_every_module_has_a_floor_and_every_step_a_place():
    mods = _modules()
    for mod in mods:
        _floor(mod)
    steps = {m.split(".")[1] for m in mods if m.startswith("injectivity.")}
    assert steps == set(STEPS), steps ^ set(STEPS)


def test_no_import_runs_back_up():
    assert violations() == []


def test_no_circle():
    """Tarjan's strongly connected components of the import graph are all single modules."""
    edges = _imports(_modules())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    circles = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges[v]:
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
                circles.append(sorted(comp))

    for v in edges:
        if v not in index:
            visit(v)
    assert circles == []


def test_module_sizes_and_a_thin_orchestrator():
    sizes = {m: len(p.read_text().splitlines()) for m, p in _modules().items()}
    assert {m: n for m, n in sizes.items() if n > 600} == {}
    assert sizes["analysis"] <= 250


def test_the_check_sees_an_upward_import(tmp_path, monkeypatch):
    """The floor check is not vacuous: a core step importing the orchestrator is reported."""
    fake = tmp_path / "ntkcheck"
    for p in PKG.rglob("*.py"):
        dst = fake / p.relative_to(PKG)
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_text(p.read_text())
    step = fake / "injectivity" / "geometry.py"
    step.write_text(step.read_text() + "\nfrom ..analysis import analyze\nfrom .decide import Decision\n")
    monkeypatch.setattr(__import__(__name__), "PKG", fake)
    found = violations()
    assert any("injectivity.geometry (floor 2) imports ntkcheck.analysis" in v for v in found)
    assert any("step geometry imports the later step decide" in v for v in found)
