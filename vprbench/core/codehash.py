"""Code identity: a content hash of the source files that computed a result.

:func:`module_closure` follows the imports of a Python file (module level and inside functions)
through the vprbench package, a plugin's relative imports (helper modules beside it) and an
entry-point plugin's own package, so an edit of a plugin file, of its helpers or of any vprbench
module it may run changes the hash of the results it computes, and a cached result is never served across such an
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


def _module_file(module: str, roots: dict[str, Path]) -> Path | None:
    parts = module.split(".")
    root = roots.get(parts[0])
    if root is None:
        return None
    return _source_of(root.joinpath(*parts[1:]))


def _source_of(base: Path) -> Path | None:
    """The source file of the module at ``base`` (``base.py`` or ``base/__init__.py``)."""
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


@lru_cache(maxsize=None)
def _imports(path: Path, stamp: tuple[int, int]) -> tuple[tuple[int, str, tuple[str, ...]], ...]:
    """(relative level, module, imported names) of every import anywhere in ``path`` (``stamp``: size
    and mtime, for the cache); ``import m`` gives no names, ``from . import x`` an empty module."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: list[tuple[int, str, tuple[str, ...]]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(0, a.name, ()) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            found.append((node.level, node.module or "", tuple(a.name for a in node.names)))
    return tuple(sorted(found))


def _file_imports(path: Path) -> tuple[tuple[int, str, tuple[str, ...]], ...]:
    st = path.stat()
    return _imports(path, (st.st_size, st.st_mtime_ns))


def _origin(module: str, name: str) -> str:
    """Where a re-export module gets ``name`` from (the module itself if it defines it)."""
    f = _module_file(module, {PACKAGE: PACKAGE_ROOT})
    for level, source, names in _file_imports(f):
        if level == 0 and name in names:
            return source
    return module


def package_root(module: str) -> tuple[str, Path] | None:
    """(top-level package, its folder) of an imported module outside vprbench (entry-point plugins), if any."""
    import sys

    top = module.split(".")[0]
    pkg = sys.modules.get(top)
    paths = list(getattr(pkg, "__path__", []) or [])
    if top == PACKAGE or len(paths) != 1 or not Path(paths[0]).is_dir():
        return None
    return top, Path(paths[0]).resolve()


def module_closure(entry: Path, roots: dict[str, Path] | None = None, package: bool = True) -> list[Path]:
    """``entry`` and every source file reachable from it through imports, sorted.

    Followed: absolute imports of vprbench (and of the packages in ``roots``: name -> folder, e.g.
    an entry-point plugin's own package) and relative imports (a plugin folder's private helper
    modules). Anything else (numpy, torch, ...) is covered by the recorded versions instead.
    ``package=False``: vprbench's own modules are not followed (a plugin's local files only).
    """
    roots = {**({PACKAGE: PACKAGE_ROOT} if package else {}), **(roots or {})}
    seen: dict[Path, None] = {}
    stack = [Path(entry).resolve()]
    while stack:
        path = stack.pop()
        if path in seen or not path.is_file():
            continue
        seen[path] = None
        found: list[Path | None] = []
        for level, module, names in _file_imports(path):
            if level:
                base = path.parent
                for _ in range(level - 1):
                    base = base.parent
                target = base.joinpath(*module.split(".")) if module else base
                found.append(_source_of(target) if module else None)
                found += [_source_of(target / n) for n in names]  # `from . import helper`
                continue
            if module.split(".")[0] not in roots:
                continue
            targets = [module] if module not in REEXPORTS or not names else [_origin(module, n) for n in names]
            targets += [f"{module}.{n}" for n in names]  # `from package import module`
            found += [_module_file(m, roots) for m in targets]
        stack += [f.resolve() for f in found if f is not None and f.resolve() not in seen]
    return sorted(seen)


def files_hash(paths: list[Path], length: int = 16) -> str:
    """sha256 over the files' contents (and their paths relative to the package, for renames)."""
    h = hashlib.sha256()
    for p in sorted(paths):
        rel = str(p.relative_to(PACKAGE_ROOT)) if p.is_relative_to(PACKAGE_ROOT) else p.name
        h.update(rel.encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()[:length]


def code_hash(entry: Path, length: int = 16, roots: dict[str, Path] | None = None) -> str:
    """Hash of ``entry`` and the modules it may run (see :func:`module_closure`)."""
    return files_hash(module_closure(entry, roots), length)


def class_code_hash(cls: type, length: int = 16) -> str:
    """Hash of the file defining ``cls`` (its ``source_path`` for folder plugins) and what it may run;
    "unknown" when the source cannot be found."""
    import inspect

    path = getattr(cls, "source_path", None)
    if path is None or not Path(path).is_file():
        try:
            path = inspect.getsourcefile(cls)
        except TypeError:
            path = None
    if not path:
        return "unknown"
    own = package_root(getattr(cls, "__module__", "") or "")
    return code_hash(Path(path), length, dict([own]) if own else None)


def package_modules_hash(*subpackages: str, length: int = 16) -> str:
    """Hash of every source file of the given vprbench subpackages (e.g. ``"metrics"``)."""
    files = [p for sub in subpackages for p in (PACKAGE_ROOT / sub).rglob("*.py")]
    return files_hash(files, length)
