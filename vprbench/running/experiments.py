"""Experiments as data: a TOML file that says which datasets (and protocols, and training data) a
paper's tables are computed on, which method spec computes each row, and which published value
each row is compared with. ``vprbench reproduce NAME`` runs one (resumable and cached like ``run``)
and writes its tables (:mod:`vprbench.reporting.experiment_tables`).

Format (see ``experiments/seqmatchnet.toml``)::

    name, summary, paper
    published = "FILE.csv"          # in the experiment file's folder (table,group,method,loss,mining,dataset,recall_at,value;
                                    # group, loss and mining optional; values are fractions in [0, 1])
    seeds = [0, 1, 2]; seq_len = 5; boundary = "shift"; preset = "cpu"
    [[datasets]]
    name = "nordland-sw"            # a dataset name or definition file
    published = "nordland"          # its name in the published file (optional: no published column)
    tables = ["1"]                  # which tables it is part of
    protocol = "default"            # a named protocol of the dataset
    train_dataset = ["a", "b"]      # training data of learned rows: the first that is available
    note = "..."                    # shown in the captions
    [datasets.method_params]        # parameters of a method wherever it appears (also as a stage)
    seqnet = { epochs = 30 }
    [[sweeps]] axis = "seq_len"; values = [1, 3, 5, 10]   # optional: sweeps of every row
    [[tables]]
    id = "1"; title = "..."; recall_at = [1, 5, 20]
    [[tables.rows]]
    group = "..."; label = "..."; spec = "seqmatchnet[loss=single]"; published = { method = "...", loss = "...", mining = "..." }

Experiments that ship live in ``experiments/`` (a wheel: ``vprbench/builtin_experiments``);
``$VPRBENCH_EXPERIMENT_PATH`` adds folders; a path to a ``.toml`` file works too.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vprbench.core.errors import ConfigError, DataError, unknown_name
from vprbench.metrics.recall import DEFAULT_NS
from vprbench.plugins.registry import Registry
from vprbench.plugins.specs import MethodSpec, expand_item, format_value

EXPERIMENT_PATH_ENV = "VPRBENCH_EXPERIMENT_PATH"


def builtin_experiments_dir() -> Path:
    """The folder of the experiments that ship (source tree ``experiments/`` or the wheel's copy)."""
    package = Path(__file__).resolve().parents[1]
    installed = package / "builtin_experiments"
    return installed if installed.is_dir() else package.parent / "experiments"


@dataclass(frozen=True)
class Row:
    """One row of a table: a method spec and the published row it is compared with."""

    group: str
    label: str
    spec: str
    published: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Table:
    id: str
    title: str
    recall_at: tuple[int, ...]
    rows: tuple[Row, ...]


@dataclass(frozen=True)
class ExperimentDataset:
    """A dataset an experiment is evaluated on."""

    name: str
    tables: tuple[str, ...]
    published: str | None = None
    protocol: str | None = None
    train_dataset: tuple[str, ...] = ()
    note: str = ""
    method_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    dataset_params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Experiment:
    name: str
    summary: str
    source: Path
    datasets: tuple[ExperimentDataset, ...]
    tables: tuple[Table, ...]
    paper: str = ""
    published: Path | None = None
    seeds: tuple[int, ...] = (0,)
    seq_len: int = 5
    boundary: str = "shift"
    preset: str = "cpu"
    sweeps: tuple[tuple[str, tuple[Any, ...]], ...] = ()

    def dataset(self, name: str) -> ExperimentDataset:
        for d in self.datasets:
            if d.name == name:
                return d
        raise unknown_name(f"dataset of experiment {self.name!r}", name, [d.name for d in self.datasets])

    def table(self, table_id: str) -> Table:
        for t in self.tables:
            if t.id == table_id:
                return t
        raise unknown_name(f"table of experiment {self.name!r}", table_id, [t.id for t in self.tables])


def _need(raw: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if key not in raw:
        raise ConfigError(f"{where}: field {key!r} is missing")
    if not isinstance(raw[key], kind) or isinstance(raw[key], bool) and kind is not bool:
        raise ConfigError(f"{where}: field {key!r} must be {getattr(kind, '__name__', kind)}, got {raw[key]!r}")
    return raw[key]


#: The keys each part of an experiment file may hold (anything else is a typo: ConfigError naming it).
KEYS = {
    "top": ("name", "summary", "paper", "published", "seeds", "seq_len", "boundary", "preset", "sweeps", "tables", "datasets"),
    "table": ("id", "title", "recall_at", "rows"),
    "row": ("group", "label", "spec", "published"),
    "dataset": ("name", "tables", "published", "protocol", "train_dataset", "note", "method_params", "params"),
    "sweep": ("axis", "values"),
}


def _known_keys(raw: Any, part: str, where: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a table of {', '.join(KEYS[part])}, got {raw!r}")
    for key in raw:
        if key not in KEYS[part]:
            err = unknown_name("key", key, KEYS[part])
            raise ConfigError(f"{where}: {err}")
    return raw


def _recall_at(t: dict[str, Any], where: str) -> tuple[int, ...]:
    """A table's ``recall_at``: distinct N among those the runner computes (others would be columns of '-')."""
    ns = t.get("recall_at", [1, 5, 10])
    computed = ", ".join(map(str, DEFAULT_NS))
    if not isinstance(ns, list) or not ns:
        raise ConfigError(f"{where}: field 'recall_at' must be a non-empty list of N among {computed}, got {ns!r}")
    for n in ns:
        if not isinstance(n, int) or isinstance(n, bool) or n not in DEFAULT_NS:
            raise ConfigError(f"{where}: field 'recall_at' has {n!r}; each N must be an integer among the Recall@N the runner "
                              f"computes: {computed}")
    if len(set(ns)) != len(ns):
        raise ConfigError(f"{where}: field 'recall_at' repeats an N: {ns}")
    return tuple(ns)


def _published_path(path: Path, raw: dict[str, Any], where: str) -> Path | None:
    """The ``published`` file: a path relative to the experiment file's folder, never outside it."""
    published = raw.get("published")
    if published is None:
        return None
    if not isinstance(published, str) or not published.strip():
        raise ConfigError(f"{where}: field 'published' must be the name of a CSV file beside the experiment file, got {published!r}")
    folder = path.parent.resolve()
    target = (path.parent / published).resolve()
    if not target.is_relative_to(folder):
        raise ConfigError(f"{where}: field 'published' = {published!r} resolves to {str(target)!r}, outside the experiment's "
                          f"folder {str(folder)!r}; put the published file beside the experiment file (or below its folder)")
    return path.parent / published


def load_experiment(path: Path) -> Experiment:
    """Parse and check an experiment file; ConfigError naming the file and field."""
    path = Path(path)
    where = f"experiment {str(path)!r}"
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{where}: cannot read it ({e})") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{where}: invalid TOML ({e})") from None
    _known_keys(raw, "top", where)
    tables = []
    for i, t in enumerate(_need(raw, "tables", list, where)):
        tw = f"{where} [[tables]] #{i + 1}"
        _known_keys(t, "table", tw)
        rows = []
        for j, r in enumerate(_need(t, "rows", list, tw)):
            rw = f"{tw} row #{j + 1}"
            _known_keys(r, "row", rw)
            published = r.get("published", {})
            if not isinstance(published, dict):
                raise ConfigError(f"{rw}: 'published' must be a table like {{method = \"...\"}}")
            rows.append(Row(str(r.get("group", "")), str(_need(r, "label", str, rw)), _need(r, "spec", str, rw),
                            {k: str(v) for k, v in published.items()}))
        table_id = str(_need(t, "id", (str, int), tw))
        tables.append(Table(table_id, str(t.get("title", "")), _recall_at(t, f"{where} table {table_id!r}"), tuple(rows)))
    ids = [t.id for t in tables]
    if len(set(ids)) != len(ids):
        raise ConfigError(f"{where}: table ids must be unique, got {ids}")
    datasets = []
    for i, d in enumerate(_need(raw, "datasets", list, where)):
        dw = f"{where} [[datasets]] #{i + 1}"
        _known_keys(d, "dataset", dw)
        train = d.get("train_dataset", ())
        train = (train,) if isinstance(train, str) else tuple(train)
        in_tables = tuple(str(x) for x in d.get("tables", ids))
        unknown = sorted(set(in_tables) - set(ids))
        if unknown:
            raise ConfigError(f"{dw}: tables {unknown} are not defined (tables: {ids})")
        mp = d.get("method_params", {})
        if not isinstance(mp, dict) or not all(isinstance(v, dict) for v in mp.values()):
            raise ConfigError(f"{dw}: [datasets.method_params] must map method names to tables of parameters")
        datasets.append(ExperimentDataset(_need(d, "name", str, dw), in_tables, d.get("published"), d.get("protocol"), train,
                                          str(d.get("note", "")), mp, dict(d.get("params", {}))))
    published = _published_path(path, raw, where)
    sweeps = []
    for i, sw in enumerate(raw.get("sweeps", [])):
        sww = f"{where} [[sweeps]] #{i + 1}"
        _known_keys(sw, "sweep", sww)
        values = _need(sw, "values", list, sww)
        if not values:
            raise ConfigError(f"{sww}: field 'values' is empty; expected the values to sweep")
        sweeps.append((str(_need(sw, "axis", str, sww)), tuple(values)))
    sweeps = tuple(sweeps)
    exp = Experiment(
        name=_need(raw, "name", str, where), summary=str(raw.get("summary", "")), source=path, datasets=tuple(datasets),
        tables=tuple(tables), paper=str(raw.get("paper", "")), published=published,
        seeds=tuple(int(s) for s in raw.get("seeds", (0,))), seq_len=int(raw.get("seq_len", 5)), boundary=str(raw.get("boundary", "shift")),
        preset=str(raw.get("preset", "cpu")), sweeps=sweeps,
    )
    if exp.published is not None and not exp.published.is_file():
        raise ConfigError(f"{where}: published file {str(exp.published)!r} does not exist")
    return exp


def experiment_files() -> dict[str, Path]:
    """Every experiment that ships (and of $VPRBENCH_EXPERIMENT_PATH folders), by name."""
    folders = [builtin_experiments_dir()] + [Path(p) for p in os.environ.get(EXPERIMENT_PATH_ENV, "").split(os.pathsep) if p]
    out: dict[str, Path] = {}
    for folder in folders:
        for p in sorted(folder.glob("*.toml")) if folder.is_dir() else []:
            out[p.stem] = p
    return out


def get_experiment(name: str) -> Experiment:
    """An experiment by name (or a path to its file)."""
    if name.endswith(".toml"):
        if not Path(name).is_file():
            raise ConfigError(f"experiment file {name!r} does not exist")
        return load_experiment(Path(name))
    files = experiment_files()
    if name not in files:
        raise unknown_name("experiment", name, files)
    return load_experiment(files[name])


def effective_spec(row_spec: str, ds: ExperimentDataset, preset: str, registry: Registry) -> str:
    """The spec a row runs on a dataset: the dataset's method parameters applied wherever the method
    appears (also as a stage), and the preset given to every method that has that preset."""

    def apply(spec: MethodSpec) -> MethodSpec:
        cls = registry.get(spec.name)
        params: dict[str, object] = {}
        for key, value in spec.params.items():
            params[key] = apply(value) if isinstance(value, MethodSpec) else value
        for key, value in ds.method_params.get(spec.name, {}).items():
            params.setdefault(key, format_value(value))
        p = cls.info.params.get("preset")
        if p is not None and "preset" not in params and preset in (p.choices or ()) and preset != p.default:
            params["preset"] = preset
        # stages left at their defaults get the same treatment
        for key, param in cls.info.params.items():
            if key not in params and param.kind.__name__ == "Stage" and param.default is not None:
                (sub,) = expand_item(str(param.default), registry)
                new = apply(sub)
                if new != sub:
                    params[key] = new
        return MethodSpec(spec.name, params)

    specs = expand_item(row_spec, registry)
    if len(specs) != 1:
        raise ConfigError(f"experiment row spec {row_spec!r} expands to {len(specs)} jobs; a row is one job")
    return apply(specs[0]).label


def resolve_train_dataset(ds: ExperimentDataset, available: Any) -> str | None:
    """The first of the row's training datasets that ``available(name)`` accepts (None: the dataset's own)."""
    for name in ds.train_dataset:
        if name == ds.name or available(name):
            return name if name != ds.name else None
    if ds.train_dataset:
        raise DataError(f"none of the training datasets {list(ds.train_dataset)} of {ds.name} is available")
    return None
