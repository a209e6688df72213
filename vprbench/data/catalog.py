"""Dataset definitions (``datasets/*.toml``) and the loaders that turn them into datasets.

A definition is a TOML file with at least ``name``, ``loader`` and ``summary``; a ``[params]``
table is passed to the loader; everything else (sources, file names, checksums) is kept in
:attr:`DatasetDefinition.raw` for loaders and for ``vprbench datasets info``. Loaders are named
functions ``load(definition, data_dir) -> BenchmarkDataset``: built-in ones are listed in
:data:`BUILTIN_LOADERS`; third-party packages add more through the ``vprbench.loaders`` entry-point
group. Extra definition folders come from ``$VPRBENCH_DATASET_PATH``.
"""

from __future__ import annotations

import importlib
import importlib.resources
import os
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from vprbench.core.errors import ConfigError, DataError, unknown_name
from vprbench.data.dataset import BenchmarkDataset
from vprbench.data.protocol import protocols_from_definition

DATA_DIR_ENV = "VPRBENCH_DATA_DIR"
DATASET_PATH_ENV = "VPRBENCH_DATASET_PATH"
LOADER_ENTRY_POINT_GROUP = "vprbench.loaders"
DEFAULT_DATASET = "synth-seasons"

#: Built-in loader name -> "module:function" (imported only when used).
BUILTIN_LOADERS: dict[str, str] = {
    "synthetic": "vprbench.data.loaders.synthetic:load",
    "seqnet": "vprbench.data.loaders.seqnet:load",
    "descriptor-pair": "vprbench.data.loaders.descriptor_pair:load_descriptor_pair",
    "image-folders": "vprbench.data.loaders.image_folders:load",
    "nordland-64x32": "vprbench.data.loaders.nordland:load_nordland_64x32",
    "vpr-tutorial": "vprbench.data.loaders.importers:load_vpr_tutorial",
    "vpr-bench": "vprbench.data.loaders.importers:load_vpr_bench",
}

Loader = Callable[["DatasetDefinition", "Path | None"], BenchmarkDataset]


@dataclass(frozen=True)
class DatasetDefinition:
    """A parsed dataset definition file."""

    name: str
    loader: str
    summary: str
    params: dict[str, Any] = field(default_factory=dict)
    source: str = ""
    raw: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_toml(cls, text: str, source: str) -> DatasetDefinition:
        try:
            raw = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"dataset definition {source}: invalid TOML ({e})") from None
        for key in ("name", "loader", "summary"):
            if not isinstance(raw.get(key), str) or not raw[key]:
                raise ConfigError(f"dataset definition {source}: field {key!r} must be a non-empty string")
        params = raw.get("params", {})
        if not isinstance(params, dict):
            raise ConfigError(f"dataset definition {source}: [params] must be a table")
        return cls(name=raw["name"], loader=raw["loader"], summary=raw["summary"], params=params, source=source, raw=raw)

    def with_params(self, overrides: dict[str, Any]) -> DatasetDefinition:
        return DatasetDefinition(self.name, self.loader, self.summary, {**self.params, **overrides}, self.source, self.raw)


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path | None:
    """``data_dir`` if given, else $VPRBENCH_DATA_DIR, else None."""
    value = data_dir if data_dir is not None else os.environ.get(DATA_DIR_ENV)
    return Path(value).expanduser() if value else None


def builtin_datasets_dir() -> Path:
    """The folder of the built-in definitions (source tree ``datasets/`` or the wheel's copy)."""
    package = Path(__file__).resolve().parents[1]
    installed = package / "builtin_datasets"
    return installed if installed.is_dir() else package.parent / "datasets"


def _builtin_definitions() -> list[DatasetDefinition]:
    out = []
    for entry in sorted(builtin_datasets_dir().iterdir(), key=lambda p: p.name):
        if entry.name.endswith(".toml"):
            out.append(DatasetDefinition.from_toml(entry.read_text(encoding="utf-8"), f"datasets/{entry.name}"))
    return out


def definitions() -> dict[str, DatasetDefinition]:
    """All dataset definitions by name: built-in, then $VPRBENCH_DATASET_PATH folders."""
    defs: dict[str, DatasetDefinition] = {}
    found = _builtin_definitions()
    for d in os.environ.get(DATASET_PATH_ENV, "").split(os.pathsep):
        if d:
            for p in sorted(Path(d).glob("*.toml")):
                found.append(DatasetDefinition.from_toml(p.read_text(encoding="utf-8"), str(p)))
    for definition in found:
        if definition.name in defs:
            raise ConfigError(
                f"dataset name {definition.name!r} is defined twice: in {defs[definition.name].source} and in {definition.source}"
            )
        defs[definition.name] = definition
    return defs


def get_definition(name: str) -> DatasetDefinition:
    """A definition by name, or from a path to a ``.toml`` file."""
    if name.endswith(".toml"):
        path = Path(name)
        if not path.is_file():
            raise ConfigError(f"dataset definition file {name!r} does not exist")
        return DatasetDefinition.from_toml(path.read_text(encoding="utf-8"), str(path))
    defs = definitions()
    if name not in defs:
        raise unknown_name("dataset", name, defs)
    return defs[name]


def get_loader(name: str) -> Loader:
    """The loader function registered under ``name``."""
    targets = dict(BUILTIN_LOADERS)
    eps = {ep.name: ep for ep in entry_points(group=LOADER_ENTRY_POINT_GROUP)}
    if name in eps:
        return eps[name].load()
    if name not in targets:
        raise unknown_name("dataset loader", name, [*targets, *eps])
    module, func = targets[name].split(":")
    return getattr(importlib.import_module(module), func)


def load_dataset(name: str, data_dir: str | os.PathLike | None = None, overrides: dict[str, Any] | None = None) -> BenchmarkDataset:
    """Load dataset ``name`` (or a definition file path), with optional parameter overrides."""
    definition = get_definition(name)
    if overrides:
        definition = definition.with_params(overrides)
    loader = get_loader(definition.loader)
    dataset = loader(definition, resolve_data_dir(data_dir))
    if not isinstance(dataset, BenchmarkDataset):
        raise DataError(f"dataset loader {definition.loader!r} returned {type(dataset).__name__}, expected BenchmarkDataset")
    protocols = protocols_from_definition(definition.raw, dataset.position_unit, definition.source or definition.name)
    if isinstance(definition.raw.get("descriptors"), str) and "descriptor_kind" not in dataset.meta:
        dataset.meta["descriptor_kind"] = definition.raw["descriptors"]
    object.__setattr__(dataset, "protocols", {**dataset.protocols, **protocols})  # frozen dataclass; nothing derived from it yet
    return dataset
