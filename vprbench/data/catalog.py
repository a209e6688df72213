"""Dataset definitions (``datasets/*.toml``) and the loaders that turn them into datasets.

A definition is a TOML file with at least ``name``, ``loader`` and ``summary``; a ``[params]``
table is passed to the loader; the other top-level entries (:data:`TOP_LEVEL_KEYS`: sources, files
and checksums, protocols, ...) are kept in :attr:`DatasetDefinition.raw` for loaders and for
``vprbench datasets info``. Any other top-level key is an error naming close matches, and so is a
``[params]`` key the loader does not read: loaders declare their parameters with
:func:`vprbench.data.loaders.common.loader_params`, and :func:`check_params` checks them in one
place (a misspelt ``nontrivial_raduis`` would otherwise silently fall back to a default). Loaders
are named functions ``load(definition, data_dir) -> BenchmarkDataset``: built-in ones are listed in
:data:`BUILTIN_LOADERS`; third-party packages add more through the ``vprbench.loaders`` entry-point
group (a loader with a ``params`` attribute, a set of names, gets the same check). Extra definition
folders come from ``$VPRBENCH_DATASET_PATH``; a folder listed there that does not exist is warned
about.

A broken definition file (invalid TOML, missing fields, a name defined twice) never blocks the
others: :func:`definitions` skips it and :func:`definition_failures` reports it (``vprbench list``
shows it, like a plugin that failed to load). Only the top-level ``*.toml`` files of the built-in
folder are built-in datasets; ``datasets/examples/`` holds example user definitions, loaded only
when named (``--dataset datasets/examples/x.toml``) or put on ``$VPRBENCH_DATASET_PATH``.
"""

from __future__ import annotations

import importlib
import importlib.resources
import logging
import os
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from vprbench.core.errors import ConfigError, DataError, UnknownNameError, unknown_name
from vprbench.data.dataset import BenchmarkDataset
from vprbench.data.protocol import for_ground_truth, protocols_from_definition

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

    "vpr-methods-evaluation": "vprbench.data.loaders.vpr_methods_evaluation:load",
}

#: Built-in loader name -> "module:function" listing the files it reads (relative to the data
#: directory) for ``datasets verify`` of definitions without ``[[files]]``.
BUILTIN_FILE_LISTS: dict[str, str] = {
    "seqnet": "vprbench.data.loaders.seqnet:needed_files",
    "descriptor-pair": "vprbench.data.loaders.descriptor_pair:needed_files",
    "image-folders": "vprbench.data.loaders.image_folders:needed_files",
    "nordland-64x32": "vprbench.data.loaders.image_folders:needed_files",
    "vpr-tutorial": "vprbench.data.loaders.importers:vpr_tutorial_files",
    "vpr-bench": "vprbench.data.loaders.importers:vpr_bench_files",
    "vpr-methods-evaluation": "vprbench.data.loaders.vpr_methods_evaluation:needed_files",
}

#: Built-in loaders that read no files (they generate their data).
GENERATED_LOADERS = frozenset({"synthetic"})

Loader = Callable[["DatasetDefinition", "Path | None"], BenchmarkDataset]
log = logging.getLogger("vprbench")

#: Top-level entries of a definition (any other is an error): the required three, the loader's
#: ``[params]``, ``descriptors`` (what the per-frame descriptors are, for captions), ``[[files]]``,
#: ``[protocols.*]``, ``allow_absolute_paths`` and the free-text tables ``[sources]`` / ``[expected]``.
REQUIRED_KEYS = ("name", "loader", "summary")
TOP_LEVEL_KEYS = (*REQUIRED_KEYS, "params", "descriptors", "files", "protocols", "allow_absolute_paths", "sources", "expected")


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
        """Parse a definition; one ConfigError listing every problem of its top level (missing or
        non-string required fields, unknown keys, a ``[params]`` that is not a table)."""
        try:
            raw = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"dataset definition {source}: invalid TOML ({e})") from None
        problems = [f"field {key!r} must be a non-empty string (required)" for key in REQUIRED_KEYS
                    if not isinstance(raw.get(key), str) or not raw[key]]
        for key in raw:
            if key not in TOP_LEVEL_KEYS:
                problems.append(f"{unknown_name('top-level key', key, TOP_LEVEL_KEYS)} (loader parameters go in [params])")
        params = raw.get("params", {})
        if not isinstance(params, dict):
            problems.append("[params] must be a table")
        if "descriptors" in raw and (not isinstance(raw["descriptors"], str) or not raw["descriptors"]):
            problems.append(f"descriptors (what the per-frame descriptors are, shown in captions) must be a string, got {raw['descriptors']!r}")
        if problems:
            raise ConfigError(f"dataset definition {source}: " + "; ".join(problems))
        return cls(name=raw["name"], loader=raw["loader"], summary=raw["summary"], params=params, source=source, raw=raw)

    @classmethod
    def from_file(cls, path: Path, source: str | None = None) -> DatasetDefinition:
        """Read and parse the definition file ``path``; ConfigError (never a traceback) for a folder,
        a missing or unreadable file or text that is not UTF-8."""
        source = source or str(path)
        if path.is_dir():
            raise ConfigError(f"dataset definition file {source!r} is a directory; expected a TOML file (or a dataset name)")
        if not path.is_file():
            raise ConfigError(f"dataset definition file {source!r} does not exist")
        from vprbench.core.textfiles import read_user_text

        return cls.from_toml(read_user_text(path, f"dataset definition {source}", "a TOML file"), source)

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


def _read_definitions(paths: list[tuple[Path, str]], failures: dict[str, str]) -> list[DatasetDefinition]:
    out = []
    for path, source in paths:
        try:
            out.append(DatasetDefinition.from_file(path, source))
        except ConfigError as e:
            failures[source] = str(e)
    return out


_warned_folders: set[str] = set()


def _dataset_path_folders() -> list[Path]:
    """The folders of $VPRBENCH_DATASET_PATH (empty entries skipped); a warning, once, for one that is not a folder."""
    out = []
    for d in os.environ.get(DATASET_PATH_ENV, "").split(os.pathsep):
        if not d.strip():
            continue
        folder = Path(d).expanduser()
        if not folder.is_dir():
            if d not in _warned_folders:
                _warned_folders.add(d)
                state = "is not a folder" if folder.exists() else "does not exist"
                log.warning("$%s lists %s, which %s; its definitions are not loaded", DATASET_PATH_ENV, d, state)
            continue
        out.append(folder)
    return out


def _scan() -> tuple[dict[str, DatasetDefinition], dict[str, str]]:
    """(definitions by name, failures by source file): built-in, then $VPRBENCH_DATASET_PATH folders."""
    failures: dict[str, str] = {}
    paths = [(e, f"datasets/{e.name}") for e in sorted(builtin_datasets_dir().iterdir(), key=lambda p: p.name) if e.is_file() and e.name.endswith(".toml")]
    for folder in _dataset_path_folders():
        paths += [(p, str(p)) for p in sorted(folder.glob("*.toml")) if p.is_file()]
    defs: dict[str, DatasetDefinition] = {}
    for definition in _read_definitions(paths, failures):
        if definition.name in defs:
            failures[definition.source] = (
                f"dataset name {definition.name!r} is already defined in {defs[definition.name].source}; this definition is "
                "ignored (rename it)"
            )
            continue
        defs[definition.name] = definition
    return defs, failures


def definitions() -> dict[str, DatasetDefinition]:
    """All readable dataset definitions by name: built-in, then $VPRBENCH_DATASET_PATH folders.

    Broken files are left out (see :func:`definition_failures`); of two definitions with one
    name the first (built-in before user folders) is kept.
    """
    return _scan()[0]


def definition_failures() -> dict[str, str]:
    """Definition files that could not be used, by file, with the reason (empty if none)."""
    return _scan()[1]


def get_definition(name: str) -> DatasetDefinition:
    """A definition by name, or from a path to a ``.toml`` file."""
    if name.endswith(".toml") or Path(name).is_dir():
        return DatasetDefinition.from_file(Path(name))
    defs, failures = _scan()
    if name not in defs:
        err = unknown_name("dataset", name, defs)
        if failures:
            broken = "; ".join(f"{src}: {why}" for src, why in sorted(failures.items()))
            raise type(err)(f"{err} Definition files that failed to load: {broken}")
        raise err
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


def definition_loader(definition: DatasetDefinition) -> Loader:
    """The loader a definition names; an unknown name is an error naming the definition file."""
    try:
        return get_loader(definition.loader)
    except UnknownNameError as e:
        raise UnknownNameError(f"dataset definition {definition.source or definition.name}: {e}") from None


def check_params(definition: DatasetDefinition, loader: Loader | None = None) -> None:
    """ConfigError for every ``[params]`` key (overrides included) that the loader does not read.

    The loader's ``params`` attribute (set by :func:`vprbench.data.loaders.common.loader_params`)
    names what it reads; ``refused_params`` maps keys it refuses on purpose to the reason;
    ``params_doc`` names the page documenting them. A loader without ``params`` (a third-party one
    that declares nothing) is not checked. Called by :func:`load_dataset` and ``datasets verify``.
    """
    loader = loader or definition_loader(definition)
    known = getattr(loader, "params", None)
    if known is None:
        return
    where = f"dataset definition {definition.source or definition.name}"
    refused = getattr(loader, "refused_params", {})
    for key in definition.params:
        if key in refused:
            raise ConfigError(f"{where}: [params] {key}: {refused[key]}")
    unknown = [key for key in definition.params if key not in known]
    if unknown:
        err = unknown_name(f"parameter of loader {definition.loader!r}", unknown[0], known)
        more = f" Also unknown: {', '.join(map(repr, unknown[1:]))}." if len(unknown) > 1 else ""
        doc = getattr(loader, "params_doc", "")
        raise UnknownNameError(f"{where}: [params]: {err}{more}{' See ' + doc + '.' if doc else ''}")


def load_dataset(name: str, data_dir: str | os.PathLike | None = None, overrides: dict[str, Any] | None = None) -> BenchmarkDataset:
    """Load dataset ``name`` (or a definition file path), with optional parameter overrides."""
    definition = get_definition(name)
    if overrides:
        definition = definition.with_params(overrides)
    loader = definition_loader(definition)
    check_params(definition, loader)
    dataset = loader(definition, resolve_data_dir(data_dir))
    if not isinstance(dataset, BenchmarkDataset):
        raise DataError(f"dataset loader {definition.loader!r} returned {type(dataset).__name__}, expected BenchmarkDataset")
    where = definition.source or definition.name
    protocols = protocols_from_definition(definition.raw, dataset.position_unit, where)
    if isinstance(definition.raw.get("descriptors"), str) and "descriptor_kind" not in dataset.meta:
        dataset.meta["descriptor_kind"] = definition.raw["descriptors"]
    protocols = for_ground_truth({**dataset.protocols, **protocols}, dataset.ground_truth is not None, where)
    object.__setattr__(dataset, "protocols", protocols)  # frozen dataclass; nothing derived from it yet
    for text in dataset.meta.get("warnings", []):
        log.warning("dataset %s: %s", dataset.name, text)
    return dataset


def loader_files(definition: DatasetDefinition) -> list[str] | None:
    """The files the definition's loader will read (relative to the data directory), or None if unknown.

    For built-in loaders; third-party loaders (entry points) are not asked.
    """
    if definition.loader in GENERATED_LOADERS:
        return []
    target = BUILTIN_FILE_LISTS.get(definition.loader)
    if target is None:
        return None
    module, func = target.split(":")
    return list(getattr(importlib.import_module(module), func)(definition))
