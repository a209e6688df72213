"""Code identity: a content hash of the source files that computed a result.

:func:`module_closure` follows the imports of a Python file (module level and inside functions)
through the vprbench package, so an edit of a plugin file or of any vprbench module it may run
changes the hash of the results it computes, and a cached result is never served across such an
edit. Files outside the package (numpy, torch, ...) are covered by the recorded versions instead.
"""

from __future__ import annotations

import ast
import hashlib
from functools import lru_cache
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parents[1]
PACKAGE = PACKAGE_ROOT.name
#: Modules that only re-export names: an import from them is followed to where each name comes from.
REEXPORTS = ("vprbench.method", "vprbench.kernels")


def _module_file(module: str) -> Path | None:
    parts = module.split(".")
    if parts[0] != PACKAGE:
        return None
    base = PACKAGE_ROOT.joinpath(*parts[1:])
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


@lru_cache(maxsize=None)
def _imports(path: Path, stamp: tuple[int, int]) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """(module, imported names) of every vprbench import anywhere in ``path`` (``stamp``: size and
    mtime, for the cache); ``import m`` gives no names."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: list[tuple[str, tuple[str, ...]]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(a.name, ()) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, tuple(a.name for a in node.names)))
    return tuple(sorted(m for m in found if m[0].split(".")[0] == PACKAGE))


def _origin(module: str, name: str) -> str:
    """Where a re-export module gets ``name`` from (the module itself if it defines it)."""
    f = _module_file(module)
    st = f.stat()
    for source, names in _imports(f, (st.st_size, st.st_mtime_ns)):
        if name in names:
            return source
    return module


def module_closure(entry: Path) -> list[Path]:
    """``entry`` and every vprbench source file reachable from it through imports, sorted."""
    seen: dict[Path, None] = {}
    stack = [Path(entry).resolve()]
    while stack:
        path = stack.pop()
        if path in seen or not path.is_file():
            continue
        seen[path] = None
        st = path.stat()
        for module, names in _imports(path, (st.st_size, st.st_mtime_ns)):
            targets = [module] if module not in REEXPORTS or not names else [_origin(module, n) for n in names]
            targets += [f"{module}.{n}" for n in names]  # `from package import module`
            for m in targets:
                f = _module_file(m)
                if f is not None and f not in seen:
                    stack.append(f)
    return sorted(seen)


def files_hash(paths: list[Path], length: int = 16) -> str:
    """sha256 over the files' contents (and their paths relative to the package, for renames)."""
    h = hashlib.sha256()
    for p in sorted(paths):
        rel = str(p.relative_to(PACKAGE_ROOT)) if p.is_relative_to(PACKAGE_ROOT) else p.name
        h.update(rel.encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()[:length]


def code_hash(entry: Path, length: int = 16) -> str:
    """Hash of ``entry`` and the vprbench modules it may run (see :func:`module_closure`)."""
    return files_hash(module_closure(entry), length)


def package_modules_hash(*subpackages: str, length: int = 16) -> str:
    """Hash of every source file of the given vprbench subpackages (e.g. ``"metrics"``)."""
    files = [p for sub in subpackages for p in (PACKAGE_ROOT / sub).rglob("*.py")]
    return files_hash(files, length)
