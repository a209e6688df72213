"""The package layout: dependencies point one way, from the data model up to the command line.

core <- features <- data <- {metrics, matching} <- learning <- plugins <- running <- reporting <- cli

A module may import (at any depth, including imports inside functions) from its own layer and
from layers below it, never from a layer above. ``vprbench.method`` and ``vprbench.kernels`` are
the public plugin API (re-exports) and belong to the plugins layer; library code below the
plugins layer never imports them.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "vprbench"

#: Layer rank; a module may import layers of lower or equal rank (equal rank: the same layer only).
LAYERS: dict[str, int] = {
    "core": 0,
    "features": 1,
    "data": 2,
    "metrics": 3,
    "matching": 3,
    "learning": 4,
    "plugins": 5,
    "method": 5,
    "kernels": 5,
    "running": 6,
    "reporting": 7,
    "cli": 8,
}
TOP = {"__init__", "__main__"}  # the package root: may import anything lazily


def layer_of(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "vprbench" or len(parts) == 1:
        return None
    return parts[1]


def imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            if node.module == "vprbench":
                found += [(node.lineno, f"vprbench.{a.name}") for a in node.names if a.name != "__version__"]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level > 0:
            found.append((node.lineno, "." * node.level + (node.module or "")))
    return found


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_every_module_is_in_a_known_layer():
    for path in modules():
        rel = path.relative_to(PACKAGE).with_suffix("")
        first = rel.parts[0]
        assert first in LAYERS or first in TOP, f"{rel}: not in a known layer ({sorted(LAYERS)})"


def test_no_relative_imports():
    bad = [f"{p.relative_to(ROOT)}:{line} {m}" for p in modules() for line, m in imports(p) if m.startswith(".")]
    assert not bad, "use absolute imports (vprbench.layer.module) so the layering is visible:\n" + "\n".join(bad)


def violations(path: Path, own: str) -> list[str]:
    """Imports of ``path`` (a module of layer ``own``) that point to a layer above or beside it."""
    wrong = []
    for line, module in imports(path):
        other = layer_of(module)
        if other is None or other == own:
            continue
        if other not in LAYERS:
            wrong.append(f"line {line}: {module} (unknown layer)")
        elif LAYERS[other] >= LAYERS[own] and not (own in ("method", "kernels") and LAYERS[other] == LAYERS[own]):
            wrong.append(f"line {line}: {module} ({other}, rank {LAYERS[other]}) from {own} (rank {LAYERS[own]})")
    return wrong


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_down(path):
    own = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
    if own in TOP:
        return
    wrong = violations(path, own)
    assert not wrong, f"{path.relative_to(ROOT)} imports a layer above or beside its own:\n" + "\n".join(wrong)


def test_layer_checker_catches_wrong_imports(tmp_path):
    """The checker itself: upward, sideways and public-API imports below the plugins layer are reported."""
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import numpy\n"
        "from vprbench.core.errors import DataError\n"
        "def f():\n    from vprbench.running.runner import Runner\n"
        "import vprbench.matching.sequence\n"
        "from vprbench.kernels import nearest_neighbours\n"
    )
    found = violations(bad, "data")
    assert sorted(w.split(":")[0] for w in found) == ["line 4", "line 5", "line 6"]
    assert sorted(w.split(":")[0] for w in violations(bad, "plugins")) == ["line 4", "line 6"]  # no shims inside the library
    assert len(violations(bad, "matching")) == 2 and "matching.sequence" not in " ".join(violations(bad, "matching"))


def test_plugin_api_imports_stay_light():
    """Discovering plugins and printing help must not import torch, faiss, matplotlib or pandas."""
    code = (
        "import sys\n"
        "from vprbench.cli.main import build_parser\n"
        "from vprbench.plugins.registry import discover\n"
        "from vprbench.data.catalog import definitions\n"
        "build_parser(); discover(); definitions()\n"
        "heavy = [m for m in ('torch', 'faiss', 'matplotlib', 'pandas') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "", f"heavy modules imported at start-up: {out.stdout.strip()}"


def test_training_free_builtin_plugins_use_only_the_public_api():
    """What README promises: a training-free plugin needs nothing beyond vprbench.method and vprbench.kernels."""
    from vprbench.plugins.registry import default_registry

    reg = default_registry()
    for name in reg.names():
        cls = reg.methods[name]
        if cls.info.trains or cls.source_path is None:
            continue
        tree = ast.parse(Path(cls.source_path).read_text())
        used = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module and n.module.startswith("vprbench")}
        used |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names if a.name.startswith("vprbench")}
        assert used <= {"vprbench.method", "vprbench.kernels"}, (name, used)
