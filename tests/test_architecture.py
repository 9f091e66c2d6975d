"""The house rules of ARCHITECTURE.md, checked: imports run downward, no import cycles, no module over 400 lines."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "graftcv"
# Top-level parts of graftcv by layer, as ARCHITECTURE.md draws them (higher numbers sit above).
LAYERS = {
    0: {
        "data",
        "backbones",
        "catalog",
        "meta",
        "evaluation",
        "config",
        "registry",
        "atomic",
        "errors",
        "progress",
        "distributed",
    },
    1: {
        "strategies",
        "choices",
        "features",
        "feature_onnx",
        "onnx_forward",
        "training",
        "heads",
        "explain",
        "artifact",
        "export",
        "runtime",
        "rundir",
        "pages",
        "scenes",
        "ensembles",
        "tta",
        "model_card",
        "timm_export",
        "notebook",
    },
    2: {
        "api",
        "fitting",
        "outcomes",
        "planning",
        "model",
        "lite",
        "bulk",
        "adaptation",
        "self_training",
        "new_classes",
        "lr_search",
        "ensembling",
        "snapshotting",
        "bagging",
        "tracking",
        "",
    },  # "" is the package itself: `import graftcv`
    3: {"cli", "serve", "report", "compare", "fewshot", "tuning", "sklearn"},
}
LAYER_OF = {part: layer for layer, parts in LAYERS.items() for part in parts}
MAX_LINES = 400


def _modules() -> dict[str, Path]:
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts).removesuffix(".__init__")
        modules[name] = path
    return modules


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """graftcv modules `name` imports, at any depth of its code (lazy imports count too)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        targets = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            targets = [base, *(f"{base}.{alias.name}" for alias in node.names)]
        for target in targets:
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name and not name.startswith(target + "."):
                found.add(target)
    return found


def _part(module: str) -> str:
    return module.split(".")[1] if "." in module else ""


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def test_every_module_has_a_layer():
    assert {_part(m) for m in _graph()} <= set(LAYER_OF), "add the new module to LAYERS and ARCHITECTURE.md"


def test_imports_run_downward():
    upward = [
        f"{module} -> {target}"
        for module, targets in _graph().items()
        for target in targets
        if _part(target) != _part(module) and LAYER_OF[_part(target)] > LAYER_OF[_part(module)]
    ]
    assert not upward


def test_no_import_cycles():
    graph = _graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                cycles.append(" -> ".join([*path[path.index(target) :], target]))
            elif target not in state:
                visit(target, [*path, target])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not cycles


def test_no_module_over_400_lines():
    long = {
        str(p.relative_to(PACKAGE)): n
        for p in PACKAGE.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert not long


def test_the_cli_and_the_registries_import_nothing_heavy():
    """`graftcv --help`, its options' choices and usage errors need no torch, timm, Lightning or scikit-learn."""
    import subprocess
    import sys

    code = (
        "import sys, graftcv.cli, graftcv.choices, graftcv.explain.methods\n"
        "print(sorted(m for m in ('torch', 'timm', 'lightning', 'sklearn', 'pytorch_grad_cam') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
