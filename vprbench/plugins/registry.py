"""Discovery of method plugins: plugin folders (the built-in ``methods/`` first) and entry points.

A plugin is a module defining one or more :class:`~vprbench.plugins.api.Method` subclasses with
an ``info`` attribute. Every plugin folder — the built-in one, ``--plugins`` folders and
``$VPRBENCH_PLUGIN_PATH`` folders — is loaded the same way: as a package of its own, so that its
files may import private helper modules beside them with relative imports
(``from ._helpers import f``; files starting with ``_`` are not scanned for methods).

The built-in folder is ``methods/`` of the source tree (an editable install, ``pip install -e .``,
sees files dropped there) or, in a wheel install, the copy shipped as ``vprbench/builtin_methods``.

Names must be unique: a duplicate is an error naming both sources. A plugin that fails to import
is recorded in :attr:`Registry.failures` (shown by ``vprbench list``) and does not stop the other
methods from loading. One registry serves a whole run: composite methods resolve their stages in
it (:meth:`Registry.create`), so plugins from ``--plugins`` compose like built-ins.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
import traceback
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType
from typing import Any

from vprbench.core.errors import ConfigError, unknown_name
from vprbench.core.hashing import stable_hash
from vprbench.core.params import Stage
from vprbench.plugins.api import Method
from vprbench.plugins.specs import MethodSpec, parse_spec

ENTRY_POINT_GROUP = "vprbench.methods"
#: Extra plugin folders, separated by os.pathsep.
PLUGIN_PATH_ENV = "VPRBENCH_PLUGIN_PATH"
#: Deepest nesting of composed methods (a guard against a composition that names itself).
MAX_DEPTH = 8


class DuplicateMethodError(ConfigError):
    """Two plugins registered the same method name."""


def builtin_methods_dir() -> Path:
    """The folder of the built-in method plugins (source tree ``methods/`` or the wheel's copy)."""
    package = Path(__file__).resolve().parents[1]
    installed = package / "builtin_methods"
    return installed if installed.is_dir() else package.parent / "methods"


@dataclass
class Registry:
    """Registered method classes by name, and the plugins that failed to import."""

    methods: dict[str, type[Method]] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)

    def add(self, cls: type[Method], source: str, path: Path | None = None) -> None:
        """Register ``cls`` found in ``source`` (its file ``path``, if any); duplicates raise :class:`DuplicateMethodError`."""
        name = cls.info.name
        if name in self.methods and self.methods[name] is not cls:
            raise DuplicateMethodError(
                f"method name {name!r} is defined twice: in {self.methods[name].source} and in {source}; rename one of them"
            )
        cls.source = source
        cls.source_path = path
        self.methods[name] = cls
        for alias in cls.info.aliases:
            if alias in self.methods and self.methods[alias] is not cls:
                raise DuplicateMethodError(f"alias {alias!r} of method {name!r} ({source}) is taken by {self.methods[alias].source}")
            self.aliases[alias] = name

    def add_module(self, module: ModuleType, source: str, path: Path | None = None) -> int:
        """Register every Method subclass with ``info`` defined in ``module``; return how many."""
        found = 0
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if issubclass(obj, Method) and obj.__module__ == module.__name__ and "info" in obj.__dict__:
                self.add(obj, source, path)
                found += 1
        return found

    def get(self, name: str) -> type[Method]:
        if name in self.aliases and name not in self.methods:
            return self.methods[self.aliases[name]]
        if name not in self.methods:
            extra = ""
            if self.failures:
                extra = f" (plugins that failed to import: {', '.join(sorted(self.failures))}; see `vprbench list`)"
            err = unknown_name("method", name, self.methods)
            raise type(err)(str(err) + extra)
        return self.methods[name]

    def create(self, spec: str | MethodSpec, _depth: int = 0, **params: Any) -> Method:
        """Instantiate a method from a name (with ``params``), a spec text or a :class:`MethodSpec`.

        Parameters that name other methods (type :class:`~vprbench.core.params.Stage`) are created
        here too, recursively, so every stage of a composition comes from this registry.
        """
        if _depth > MAX_DEPTH:
            raise ConfigError(f"method composition nested deeper than {MAX_DEPTH} levels (does a method name itself?)")
        if isinstance(spec, str):
            spec = parse_spec(spec, self) if "[" in spec else MethodSpec(spec)
        values = {**dict(spec.params), **params}
        cls = self.get(spec.name)
        method = cls(**values)
        for key, p in cls.info.params.items():
            if p.kind is Stage:
                value = method.params[key]
                if value is None:  # an optional stage not given (e.g. no frontend)
                    continue
                if isinstance(value, Method):
                    stage = value
                else:
                    stage = self.create(method.configure_stage(key, parse_spec(value, self), self), _depth + 1)
                method.stages[key] = stage
                method.params[key] = stage.label
                resolved = getattr(method, "resolved_params", None)
                if isinstance(resolved, dict) and key in resolved:  # resolved before the stage existed
                    resolved[key] = stage.label
        method.bind(self)
        if "frontend" in method.stages:
            from vprbench.plugins.compose import Composed

            return Composed(method.stages.pop("frontend"), method)
        return method

    def names(self) -> list[str]:
        return sorted(self.methods)


def _import_failure(source: str) -> str:
    exc = sys.exc_info()[1]
    last = traceback.extract_tb(exc.__traceback__)[-1] if exc and exc.__traceback__ else None
    where = f" ({Path(last.filename).name}:{last.lineno})" if last else ""
    return f"{type(exc).__name__}: {exc}{where}"


def _folder_package(folder: Path, builtin: bool) -> str:
    """Name of the synthetic package a plugin folder is loaded as (created on first use)."""
    if builtin:
        name = "vprbench_plugins_builtin"
    else:
        name = f"vprbench_plugins_{stable_hash(str(folder), 10)}"
    pkg = sys.modules.get(name)
    if pkg is None or list(getattr(pkg, "__path__", [])) != [str(folder)]:
        pkg = ModuleType(name, f"vprbench plugin folder {folder}")
        pkg.__path__ = [str(folder)]  # type: ignore[attr-defined]
        pkg.__package__ = name
        sys.modules[name] = pkg
    return name


def _load_folder(folder: Path, registry: Registry, builtin: bool = False) -> None:
    """Import every ``*.py`` of ``folder`` not starting with ``_`` and register its methods.

    A file is imported again when it or a helper module it imports relatively changed since the
    last import (size or modification time); the folder's helper modules are then imported afresh.
    """
    from vprbench.core.codehash import module_closure

    package = _folder_package(folder, builtin)
    for path in sorted(folder.glob("*.py")):
        if path.name.startswith("_"):
            continue
        source = f"methods/{path.name}" if builtin else str(path)
        mod_name = f"{package}.{path.stem}"
        stamp = tuple((str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in module_closure(path, package=False))
        module = sys.modules.get(mod_name)
        try:
            if module is None or getattr(module, "__vprbench_stamp__", None) != stamp:
                sys.modules.pop(mod_name, None)
                if module is not None:  # helpers may have changed: drop the folder's other modules
                    for name in [m for m in sys.modules if m.startswith(f"{package}._")]:
                        sys.modules.pop(name, None)
                        if name.count(".") == 1:  # `from . import _helper` reads the package attribute first
                            vars(sys.modules[package]).pop(name.rpartition(".")[2], None)
                importlib.invalidate_caches()
                module = importlib.import_module(mod_name)
                module.__vprbench_stamp__ = stamp  # type: ignore[attr-defined]
        except Exception:
            sys.modules.pop(mod_name, None)
            registry.failures[source] = _import_failure(source)
            continue
        registry.add_module(module, source, path)


def plugin_folders(plugin_dirs: Iterable[str | os.PathLike] = ()) -> list[Path]:
    """``plugin_dirs`` then the folders of ``$VPRBENCH_PLUGIN_PATH``, checked to exist."""
    dirs = [Path(d) for d in plugin_dirs]
    dirs += [Path(d) for d in os.environ.get(PLUGIN_PATH_ENV, "").split(os.pathsep) if d]
    for d in dirs:
        if not d.is_dir():
            raise ConfigError(f"plugin folder {str(d)!r} does not exist or is not a folder")
    return [d.resolve() for d in dirs]


def discover(plugin_dirs: Iterable[str | os.PathLike] = (), entry_point_group: str = ENTRY_POINT_GROUP) -> Registry:
    """A registry of the built-in plugins, ``plugin_dirs`` (and $VPRBENCH_PLUGIN_PATH), and entry points."""
    registry = Registry()
    _load_folder(builtin_methods_dir(), registry, builtin=True)
    for d in plugin_folders(plugin_dirs):
        _load_folder(d, registry)
    for ep in entry_points(group=entry_point_group):
        source = f"entry point {ep.name!r} ({ep.value})"
        try:
            obj = ep.load()
        except Exception:
            registry.failures[source] = _import_failure(source)
            continue
        if inspect.isclass(obj) and issubclass(obj, Method):
            path = inspect.getsourcefile(obj)
            registry.add(obj, source, Path(path) if path else None)
        elif isinstance(obj, ModuleType):
            registry.add_module(obj, source, Path(obj.__file__) if getattr(obj, "__file__", None) else None)
        else:
            registry.failures[source] = "entry point is neither a Method subclass nor a module"
    return registry


_DEFAULT: Registry | None = None


def default_registry() -> Registry:
    """The registry of built-in plugins, $VPRBENCH_PLUGIN_PATH and entry points (built once; library use)."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = discover()
    return _DEFAULT
