"""The module names of vprbench's first, flat layout, kept importable for plugins written against it.

``import vprbench.dataset`` (or ``from vprbench.training import TrainedSeqNetMethod``) still works:
:class:`MovedModules` answers the old name with a module whose attributes are looked up, on first
use, in the modules that now hold them, and emits a DeprecationWarning naming the new place.
New code imports from the public API (:mod:`vprbench.method`, :mod:`vprbench.kernels`) or from
the stage packages.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import warnings
from types import ModuleType
from typing import Any

#: Old module (under vprbench) -> the modules that now hold its names, searched in order.
MOVED: dict[str, tuple[str, ...]] = {
    "catalog": ("vprbench.data.catalog",),
    "checkpoints": ("vprbench.learning.checkpoints",),
    "conformance": ("vprbench.plugins.conformance",),
    "dataset": ("vprbench.data.dataset",),
    "download": ("vprbench.data.download",),
    "errors": ("vprbench.core.errors",),
    "groundtruth": ("vprbench.data.groundtruth",),
    "jobspec": ("vprbench.plugins.specs",),
    "presets": ("vprbench.learning.presets",),
    "progress": ("vprbench.core.progress",),
    "records": ("vprbench.running.records",),
    "registry": ("vprbench.plugins.registry",),
    "report": ("vprbench.reporting.report", "vprbench.reporting.tables", "vprbench.reporting.plots"),
    "runner": ("vprbench.running.runner",),
    "seqnet_format": ("vprbench.data.loaders.seqnet_files", "vprbench.data.loaders.seqnet",
                      "vprbench.data.loaders.descriptor_pair", "vprbench.data.loaders.common"),
    "seqslam_kernels": ("vprbench.matching.seqslam",),
    "synthetic": ("vprbench.data.loaders.synthetic",),
    "training": ("vprbench.plugins.learned", "vprbench.learning.models", "vprbench.learning.mining",
                 "vprbench.learning.trainer"),
    "traverse": ("vprbench.data.traverse",),
    "windows": ("vprbench.data.windows",),
}


class _Moved(ModuleType):
    """An old module name: attributes come from the modules listed in :data:`MOVED`."""

    def __init__(self, name: str, targets: tuple[str, ...]) -> None:
        super().__init__(name, f"moved: see {', '.join(targets)}")
        self.__targets = targets

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__"):
            raise AttributeError(attr)
        for target in self.__targets:
            module = importlib.import_module(target)
            if hasattr(module, attr):
                value = getattr(module, attr)
                setattr(self, attr, value)
                return value
        raise AttributeError(f"module {self.__name__!r} (moved to {', '.join(self.__targets)}) has no attribute {attr!r}")


class MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds ``vprbench.<old name>`` for the names in :data:`MOVED`."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        package, _, old = fullname.rpartition(".")
        if package != "vprbench" or old not in MOVED:
            return None
        return importlib.machinery.ModuleSpec(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        targets = MOVED[spec.name.rpartition(".")[2]]
        warnings.warn(f"{spec.name} moved to {' / '.join(targets)}; import from there (or from the public API, "
                      "vprbench.method and vprbench.kernels)", DeprecationWarning, stacklevel=2)
        return _Moved(spec.name, targets)

    def exec_module(self, module: ModuleType) -> None:
        """Nothing to run: names are looked up on first use."""


def install() -> None:
    """Put the finder on ``sys.meta_path`` (once)."""
    if not any(isinstance(f, MovedModules) for f in sys.meta_path):
        sys.meta_path.append(MovedModules())
