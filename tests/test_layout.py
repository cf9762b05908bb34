"""The package's layout holds: no import cycles between its modules, and the signal path with
ONNX Runtime never imports torch (a package boundary, checked statically and by running it)."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "vocalsep"
#: modules on the way from a song to its stems with an ONNX model: none may import torch,
#: at the top or inside a function
TORCH_FREE = ("vocalsep.pipeline", "vocalsep.backends.onnx", "vocalsep.backends.precision",
              "vocalsep.config", "vocalsep.masks", "vocalsep.audio", "vocalsep.timing")


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """Every module ``name`` imports (at the top or inside functions; not those for type
    checkers only), as named in ``known`` where it is one of the package's, else its top-level
    package (e.g. ``torch``)."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    tree = ast.parse(path.read_text())
    typing_only = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If)
                   and getattr(block.test, "id", None) == "TYPE_CHECKING" for n in ast.walk(block)}
    out = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(package[: len(package) - node.level + 1] + [node.module or ""]).strip(".") \
                if node.level else node.module
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        for target in targets:
            while target not in known and "." in target and target.startswith("vocalsep"):
                target = target.rpartition(".")[0]
            out.add(target if target.startswith("vocalsep") else target.split(".")[0])
    out.discard(name)
    return out


def test_no_import_cycles():
    known = modules()
    graph = {m: {d for d in imports(m, p, known) if d in known} for m, p in known.items()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for dep in sorted(graph[module]):
            assert state.get(dep) != 1, "import cycle: " + " -> ".join(path[path.index(dep):] + [dep]) \
                if dep in path else f"import cycle through {dep}"
            if dep not in state:
                visit(dep, path + [dep])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])


def test_the_onnx_signal_path_imports_no_torch():
    known = modules()
    for name, path in known.items():
        if name.startswith(TORCH_FREE):
            assert "torch" not in imports(name, path, known), f"{name} imports torch"


def test_separating_with_onnx_runs_without_torch():
    """The API end to end: a separator of the default model (ONNX Runtime) on a signal."""
    code = ("import sys, numpy as np; from vocalsep.separate import Separator; "
            "x = np.random.default_rng(0).standard_normal((2, 100_000)).astype(np.float32) * 0.1; "
            "stems = Separator('default').separate(x, 44100); "
            "assert stems['vocals'].shape == x.shape; "
            "sys.exit(3 if 'torch' in sys.modules else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr or "torch was imported"
