"""Discovery of method plugins: built-in files in ``methods/``, extra plugin folders, entry points.

A plugin is a module defining one or more :class:`~vprbench.method.Method` subclasses with an
``info`` attribute. Names must be unique: a duplicate is an error naming both sources. A plugin
that fails to import is recorded in :attr:`Registry.failures` (shown by ``vprbench list``) and
does not stop the other methods from loading.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import pkgutil
import sys
import traceback
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType

from .errors import ConfigError, unknown_name
from .method import Method

ENTRY_POINT_GROUP = "vprbench.methods"
#: Extra plugin folders, separated by os.pathsep.
PLUGIN_PATH_ENV = "VPRBENCH_PLUGIN_PATH"
BUILTIN_PACKAGE = "vprbench.builtin_methods"


class DuplicateMethodError(ConfigError):
    """Two plugins registered the same method name."""


@dataclass
class Registry:
    """Registered method classes by name, and the plugins that failed to import."""

    methods: dict[str, type[Method]] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)

    def add(self, cls: type[Method], source: str) -> None:
        """Register ``cls`` found in ``source``; duplicate names raise :class:`DuplicateMethodError`."""
        name = cls.info.name
        if name in self.methods and self.methods[name] is not cls:
            raise DuplicateMethodError(
                f"method name {name!r} is defined twice: in {self.methods[name].source} and in {source}; "
                "rename one of them"
            )
        cls.source = source
        self.methods[name] = cls

    def add_module(self, module: ModuleType, source: str) -> int:
        """Register every Method subclass with ``info`` defined in ``module``; return how many."""
        found = 0
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if issubclass(obj, Method) and obj.__module__ == module.__name__ and "info" in obj.__dict__:
                self.add(obj, source)
                found += 1
        return found

    def get(self, name: str) -> type[Method]:
        if name not in self.methods:
            extra = ""
            if self.failures:
                extra = f" (plugins that failed to import: {', '.join(sorted(self.failures))}; see `vprbench list`)"
            err = unknown_name("method", name, self.methods)
            raise type(err)(str(err) + extra)
        return self.methods[name]

    def create(self, name: str, **params: object) -> Method:
        """Instantiate method ``name`` with parameters."""
        return self.get(name)(**params)

    def names(self) -> list[str]:
        return sorted(self.methods)


def _import_failure(source: str) -> str:
    exc = sys.exc_info()[1]
    last = traceback.extract_tb(exc.__traceback__)[-1] if exc and exc.__traceback__ else None
    where = f" ({Path(last.filename).name}:{last.lineno})" if last else ""
    return f"{type(exc).__name__}: {exc}{where}"


def _load_file(path: Path, registry: Registry) -> None:
    mod_name = f"vprbench_plugin_{path.parent.name}_{path.stem}"
    try:
        spec = importlib.util.spec_from_file_location(mod_name, path)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules[mod_name] = module
        spec.loader.exec_module(module)
    except Exception:
        registry.failures[str(path)] = _import_failure(str(path))
        return
    registry.add_module(module, str(path))


def discover(plugin_dirs: Iterable[str | os.PathLike] = (), entry_point_group: str = ENTRY_POINT_GROUP) -> Registry:
    """Build a registry from the built-in plugins, ``plugin_dirs`` (and $VPRBENCH_PLUGIN_PATH), and entry points."""
    registry = Registry()
    try:
        search_path = importlib.import_module(BUILTIN_PACKAGE).__path__
    except ModuleNotFoundError:  # a source checkout used without installing: methods/ beside vprbench/
        search_path = [str(Path(__file__).resolve().parents[1] / "methods")]
        sys.modules.setdefault(BUILTIN_PACKAGE, ModuleType(BUILTIN_PACKAGE)).__path__ = search_path  # type: ignore[attr-defined]
    for info in sorted(pkgutil.iter_modules(search_path), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        full = f"{BUILTIN_PACKAGE}.{info.name}"
        try:
            module = importlib.import_module(full)
        except Exception:
            registry.failures[f"methods/{info.name}.py"] = _import_failure(full)
            continue
        registry.add_module(module, f"methods/{info.name}.py")

    dirs = [Path(d) for d in plugin_dirs]
    dirs += [Path(d) for d in os.environ.get(PLUGIN_PATH_ENV, "").split(os.pathsep) if d]
    for d in dirs:
        if not d.is_dir():
            raise ConfigError(f"plugin folder {str(d)!r} does not exist or is not a folder")
        for path in sorted(d.glob("*.py")):
            if not path.name.startswith("_"):
                _load_file(path, registry)

    for ep in entry_points(group=entry_point_group):
        source = f"entry point {ep.name!r} ({ep.value})"
        try:
            obj = ep.load()
        except Exception:
            registry.failures[source] = _import_failure(source)
            continue
        if inspect.isclass(obj) and issubclass(obj, Method):
            registry.add(obj, source)
        elif isinstance(obj, ModuleType):
            registry.add_module(obj, source)
        else:
            registry.failures[source] = "entry point is neither a Method subclass nor a module"
    return registry


_DEFAULT: Registry | None = None


def default_registry() -> Registry:
    """The registry of built-in plugins, $VPRBENCH_PLUGIN_PATH and entry points (built once)."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = discover()
    return _DEFAULT
