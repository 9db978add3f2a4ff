"""The package's import graph has no circles, every import points down the layer order
(:data:`LAYERS`), run-time code never imports the offline builder, and no function imports
the standard library (its imports belong at the top of the module)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def _graph(src: Path = SRC) -> dict[str, set[str]]:
    """Module -> the package modules it imports anywhere (functions included, not
    ``if TYPE_CHECKING:`` blocks)."""
    mods = {}
    for p in (src / "m3dhmr").rglob("*.py"):
        parts = list(p.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = p
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for m, p in mods.items():
        tree = ast.parse(p.read_text())
        skip = {id(y) for x in ast.walk(tree) if isinstance(x, ast.If) and "TYPE_CHECKING" in ast.dump(x.test)
                for y in ast.walk(x)}
        pkg = m if p.name == "__init__.py" else m.rsplit(".", 1)[0]
        for n in ast.walk(tree):
            if id(n) in skip:
                continue
            if isinstance(n, ast.ImportFrom):
                base = pkg.split(".")[: len(pkg.split(".")) - (n.level - 1)] if n.level else []
                target = ".".join(base + [n.module]) if n.module else ".".join(base)
                subs = [f"{target}.{a.name}" for a in n.names if f"{target}.{a.name}" in mods]
                targets = subs if len(subs) == len(n.names) else [target, *subs]
            elif isinstance(n, ast.Import):
                targets = [a.name for a in n.names]
            else:
                continue
            graph[m] |= {t for t in targets if t in mods and t != m}
    return graph


#: The layer order, lowest first: a module may import modules of its own layer or below, never
#: above (imports inside functions count; ``if TYPE_CHECKING:`` blocks do not). A module's layer is
#: that of the longest entry naming it or a package above it ("m3dhmr" alone is the package's
#: own ``__init__``). Modules listed below their package's layer are low-level pieces that lower
#: layers use: ``inference.images`` (reading a photo) and ``inference.quality`` (the landmark
#: model's quality score) serve ``data`` (pseudo-labels).
LAYERS: tuple[tuple[str, ...], ...] = (
    ("m3dhmr", "m3dhmr.errors", "m3dhmr.conventions", "m3dhmr.config_loader", "m3dhmr.fileio", "m3dhmr.hardware"),
    ("m3dhmr.geometry", "m3dhmr.mesh", "m3dhmr.render", "m3dhmr.inference.images"),
    ("m3dhmr.hand", "m3dhmr.detect", "m3dhmr.export", "m3dhmr.viz", "m3dhmr.inference.quality"),
    ("m3dhmr.models",),
    ("m3dhmr.data",),
    ("m3dhmr.losses", "m3dhmr.metrics"),
    ("m3dhmr.experiment",),          # the experiment config: model, loss, train and data sections
    ("m3dhmr.model_io",),            # weights files read, checked, loaded into a model
    ("m3dhmr.pretrained",),          # the packaged models
    ("m3dhmr.train",),
    ("m3dhmr.evaluation", "m3dhmr.inference"),
    ("m3dhmr.commands", "m3dhmr.app", "m3dhmr.cli", "m3dhmr.__main__"),
)


def _layer(module: str, layers=LAYERS) -> int | None:
    """Index in ``layers`` of the longest entry that is ``module`` or a package above it."""
    best, best_len = None, -1
    for i, names in enumerate(layers):
        for name in names:
            hit = module == name if name == "m3dhmr" else module == name or module.startswith(name + ".")
            if hit and len(name) > best_len:
                best, best_len = i, len(name)
    return best


def _upward(graph: dict[str, set[str]], layers=LAYERS) -> list[str]:
    """``"a -> b"`` for each import of a module ``b`` in a higher layer than ``a``'s."""
    return sorted(f"{a} (layer {_layer(a, layers)}) -> {b} (layer {_layer(b, layers)})"
                  for a, targets in graph.items() for b in targets
                  if _layer(b, layers) > _layer(a, layers))


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
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
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_circles():
    assert _cycles(_graph()) == []


def test_every_module_has_a_layer():
    assert [m for m in _graph() if _layer(m) is None] == []


def test_imports_point_down_the_layers():
    assert _upward(_graph()) == []


def test_inference_and_evaluation_do_not_import_training():
    """They sit above ``train`` in the linear order, but need nothing of it: models load through
    ``model_io`` and ``pretrained``, below training."""
    graph = _graph()
    assert sorted(f"{a} -> {b}" for a, targets in graph.items() for b in targets
                  if a.startswith(("m3dhmr.inference", "m3dhmr.evaluation")) and b.startswith("m3dhmr.train")) == []


def test_layer_check_finds_a_hand_made_upward_import():
    layers = (("m3dhmr",), ("m3dhmr.models",), ("m3dhmr.train", "m3dhmr.inference.images"), ("m3dhmr.inference",))
    assert _layer("m3dhmr.inference.images.x", layers) == 2 and _layer("m3dhmr.inference.video", layers) == 3
    graph = {"m3dhmr.models.weights": {"m3dhmr.train.checkpoint", "m3dhmr"},
             "m3dhmr.train.trainer": {"m3dhmr.models", "m3dhmr.inference.images"},
             "m3dhmr.inference.images": {"m3dhmr.inference.video"}}
    assert _upward(graph, layers) == ["m3dhmr.inference.images (layer 2) -> m3dhmr.inference.video (layer 3)",
                                      "m3dhmr.models.weights (layer 1) -> m3dhmr.train.checkpoint (layer 2)"]


def test_an_upward_import_inside_a_function_is_found(tmp_path):
    pkg = tmp_path / "m3dhmr"
    (pkg / "train").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "train" / "__init__.py").write_text("")
    (pkg / "model_io.py").write_text("def load():\n    from m3dhmr.train import checkpoint\n")
    (pkg / "train" / "checkpoint.py").write_text("from typing import TYPE_CHECKING\n"
                                                 "if TYPE_CHECKING:\n    from m3dhmr import model_io\n")
    graph = _graph(tmp_path)
    assert graph["m3dhmr.model_io"] == {"m3dhmr.train.checkpoint"} and graph["m3dhmr.train.checkpoint"] == set()
    assert _upward(graph) == [f"m3dhmr.model_io (layer {_layer('m3dhmr.model_io')}) -> m3dhmr.train.checkpoint "
                              f"(layer {_layer('m3dhmr.train')})"]


def test_cycle_finder_finds_a_hand_made_circle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_runtime_code_does_not_import_the_offline_builder():
    code = ("import sys, m3dhmr.hand, m3dhmr.data.synth, m3dhmr.inference.predictor, m3dhmr.train.trainer; "
            "print('m3dhmr.hand.build' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_import_m3dhmr_is_light():
    out = subprocess.run([sys.executable, "-c", "import sys, m3dhmr; print('torch' in sys.modules)"],
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def _stdlib_imports_in_functions(src: Path = SRC) -> list[str]:
    """``"path:line module"`` for each import of a standard-library module inside a function body.

    The standard library is cheap to import and always there, so deferring it saves nothing:
    its imports belong at the top of the module. Imports inside functions are for heavy or
    optional packages (torch, cv2, onnxruntime, ...) and for the commands' ``run``."""
    found = []
    for p in sorted((src / "m3dhmr").rglob("*.py")):
        tree = ast.parse(p.read_text())
        seen: set[int] = set()
        for fn in ast.walk(tree):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for n in ast.walk(fn):
                if id(n) in seen or not isinstance(n, (ast.Import, ast.ImportFrom)):
                    continue
                seen.add(id(n))  # a nested function's imports are walked once
                if isinstance(n, ast.Import):
                    names = [a.name for a in n.names]
                else:  # a relative import names a module of the package
                    names = [n.module] if n.level == 0 and n.module else []
                found += [f"{p.relative_to(src).as_posix()}:{n.lineno} {name}" for name in names
                          if name.split(".")[0] in sys.stdlib_module_names]
    return found


def test_no_standard_library_import_inside_a_function():
    assert _stdlib_imports_in_functions() == []


def test_stdlib_check_finds_hand_made_imports_inside_functions(tmp_path):
    pkg = tmp_path / "m3dhmr"
    pkg.mkdir()
    (pkg / "a.py").write_text("import json\n\n\ndef f():\n    import torch\n    from os import path\n\n"
                              "    def g():\n        import collections.abc\n\n\nclass C:\n"
                              "    async def h(self):\n        from . import b\n        import shutil as sh\n")
    assert _stdlib_imports_in_functions(tmp_path) == ["m3dhmr/a.py:6 os", "m3dhmr/a.py:9 collections.abc",
                                                      "m3dhmr/a.py:15 shutil"]
