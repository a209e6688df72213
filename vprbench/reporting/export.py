"""Export results for other pipelines: ``vprbench export pairs | descriptors``.

* ``pairs``: the predictions of finished runs (``DIR/predictions/**.npz``: top-K indices
  [n_query, K] into the split's reference frames, distances, confidence; described by the JSON
  records ``DIR/records/**.json``) as

  - a plain pairs CSV (``<dataset>/<method>/<record key>.pairs.csv``, mirroring ``records/``; the
    record names the label and seed): header ``query,reference,rank,distance``,
    one row per (query, ranked reference), rank 1 = best, distance as the method reports it
    (lower = more similar); queries without a match (index -1) have no row;
  - a Kapture-style pairs file (``<dataset>/<method>/<record key>.kapture-pairs.txt``), the image-retrieval
    pairs text kapture-localization reads and writes: ``# kapture format: 1.1``, ``# query_image,
    map_image, score``, then ``query, reference, score`` lines, best first per query, with
    score = -distance (kapture ranks by score, higher = more similar).

  ``query`` / ``reference`` name the frames as the dataset does: the image name (relative to the
  traverse folder, e.g. VPR-methods-evaluation's ``@east@north@...@.jpg``) where the dataset has
  one, else the frame's index in its traverse (``frame:<i>``). Split-local indices are mapped back
  through the split's frame selection, so the dataset is loaded again (by the record's dataset
  name, or ``--dataset`` for a definition file) and must have the fingerprint the run had.
* ``descriptors``: a dataset's per-frame descriptors as ``<traverse>.npy`` float32 [frames, D] in
  frame order, with ``<traverse>.images.txt`` (one frame name per line, same order); sparse
  descriptors as scipy ``<traverse>.npz`` (``scipy.sparse.load_npz``). With ``--method`` a
  frontend's per-frame outputs instead (a learned representation such as ``seqnet-s1`` or
  ``seqmatchnet``, trained on the training split first, or taken from the model cache):
  :func:`export_frontend_descriptors`.

Nothing is overwritten silently: a file already there with other content is refused (ConfigError
naming it) unless ``force``; one with the same content is left as it is (listed as unchanged).
Every file is checked before any is written.
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vprbench.core.errors import ConfigError, DataError, OutputError
from vprbench.core.fileio import atomic_path
from vprbench.data.arrays import is_sparse
from vprbench.data.catalog import load_dataset
from vprbench.data.dataset import BenchmarkDataset
from vprbench.data.traverse import Traverse
from vprbench.running.records import read_record

log = logging.getLogger("vprbench")

KAPTURE_HEADER = "# kapture format: 1.1\n# query_image, map_image, score\n"
PAIRS_COLUMNS = ("query", "reference", "rank", "distance")
FORMATS = ("csv", "kapture")


def frame_names(traverse: Traverse) -> list[str]:
    """A name per frame of ``traverse``: its image name, else its image file's name, else ``frame:<i>``."""
    names = traverse.meta.get("image_names")
    if names is not None and len(names) == len(traverse):
        return [str(n) for n in names]
    if traverse.image_paths is not None:
        return [p.name for p in traverse.image_paths]
    return [f"frame:{i}" for i in range(len(traverse))]


@dataclass(frozen=True)
class Pairs:
    """The ranked pairs of one job: names and distances per (query, rank)."""

    query: list[str]  # [n_query]
    reference: list[str]  # [n_ref] of the split
    indices: np.ndarray  # [n_query, K] int, -1 = no match
    distances: np.ndarray  # [n_query, K]


def _split_names(ds: BenchmarkDataset, split: str, query: str) -> tuple[list[str], list[str]]:
    if split not in ds.splits:
        raise DataError(f"dataset {ds.name!r} has no split {split!r} (the record's split); has the definition changed?")
    if query not in ds.queries:
        raise DataError(f"dataset {ds.name!r} has no query traverse {query!r} (the record's query)")
    s = ds.splits[split]
    ref_all, q_all = frame_names(ds.reference), frame_names(ds.queries[query])
    return [q_all[i] for i in s.query], [ref_all[i] for i in s.reference]


def job_pairs(record: dict[str, Any], root: Path, ds: BenchmarkDataset) -> Pairs:
    """The pairs of one record (its predictions file under ``root``), named through dataset ``ds``."""
    job = record["job"]
    if job.get("dataset_fingerprint") != ds.fingerprint:
        raise DataError(
            f"record {record.get('_path', '?')}: the run used dataset {job['dataset']!r} with fingerprint "
            f"{job.get('dataset_fingerprint')}, the dataset loaded now has {ds.fingerprint}: its content changed (other files, "
            "--dataset-param overrides?), so frame names cannot be mapped back safely; pass the same --dataset-param values"
        )
    pred = Path(root) / record["predictions"]
    if not pred.is_file():
        raise DataError(f"record {record.get('_path', '?')}: predictions file {pred} not found")
    with np.load(pred, allow_pickle=False) as z:
        indices, distances = np.asarray(z["indices"], dtype=np.int64), np.asarray(z["distances"], dtype=np.float64)
    q_names, r_names = _split_names(ds, job["split"], job["query"])
    if indices.shape[0] != len(q_names) or indices.shape != distances.shape:
        raise DataError(f"{pred}: predictions for {indices.shape[0]} queries (shape {indices.shape}), the split has {len(q_names)}")
    if indices.size and indices.max() >= len(r_names):
        raise DataError(f"{pred}: reference index {int(indices.max())} outside the split's {len(r_names)} reference frames")
    return Pairs(q_names, r_names, indices, distances)


def _rows(pairs: Pairs):
    """(query name, reference name, rank 1.., distance) of every valid prediction, queries in order, best first."""
    q_idx, ranks = np.nonzero(pairs.indices >= 0)
    for q, k in zip(q_idx.tolist(), ranks.tolist()):
        yield pairs.query[q], pairs.reference[int(pairs.indices[q, k])], k + 1, float(pairs.distances[q, k])


def pairs_csv_text(pairs: Pairs) -> str:
    """``query,reference,rank,distance`` rows (see the module docstring)."""
    buf = io.StringIO(newline="")
    w = csv.writer(buf)
    w.writerow(PAIRS_COLUMNS)
    for q, r, rank, d in _rows(pairs):
        w.writerow([q, r, rank, repr(d)])
    return buf.getvalue()


def kapture_pairs_text(pairs: Pairs, path: Path | str = "kapture pairs") -> str:
    """A Kapture-style pairs file (score = -distance); DataError (naming ``path``) for names with commas."""
    bad = [n for n in (*pairs.query, *pairs.reference) if "," in n or "\n" in n]
    if bad:
        raise DataError(f"{path}: kapture pairs files separate fields by commas; frame name {bad[0]!r} contains one")
    return KAPTURE_HEADER + "".join(f"{q}, {r}, {-d!r}\n" for q, r, _, d in _rows(pairs))


class Exported(list):
    """The files of an export (a list of paths), with ``unchanged``: those that were already there with
    the same content and were left as they are (not rewritten)."""

    def __init__(self, paths=(), unchanged=()):  # noqa: ANN001
        super().__init__(paths)
        self.unchanged: list[Path] = list(unchanged)


@dataclass(frozen=True)
class _File:
    """A file to export: its bytes, and (where bytes are not reproducible, e.g. zip timestamps) a content check."""

    path: Path
    data: bytes
    same: Callable[[Path], bool] | None = None

    def is_unchanged(self) -> bool:
        if self.same is not None:
            return self.same(self.path)
        return self.path.stat().st_size == len(self.data) and self.path.read_bytes() == self.data


def check_out_folder(out: Path, option: str = "--out") -> Path:
    """``out`` if it is a folder or can become one; ConfigError naming ``option`` otherwise (an existing file)."""
    out = Path(out)
    for p in (out, *out.parents):
        if p.exists() and not p.is_dir():
            what = "is an existing file" if p == out else f"is inside {str(p)!r}, an existing file"
            raise ConfigError(f"{option} {str(out)!r} {what}; expected a folder (existing or new) to write the export into")
    return out


def _write_files(out: Path, files: list[_File], force: bool) -> Exported:
    """Write ``files`` (under ``out``) atomically after checking them all: an existing file with other content
    is refused unless ``force``; one with the same content is left as it is. (``out`` was checked by the caller.)"""
    unchanged = []
    for f in files:
        for p in f.path.parents:
            if p == out or out not in p.parents:
                break
            if p.exists() and not p.is_dir():
                raise ConfigError(f"cannot write {str(f.path)!r}: {str(p)!r} is an existing file, expected a folder; move it away")
        if not f.path.exists():
            continue
        if not f.path.is_file():
            raise ConfigError(f"cannot write {str(f.path)!r}: it exists and is not a file (expected a file, or nothing, there)")
        try:
            same = f.is_unchanged()
        except (OSError, ValueError):
            same = False
        if same:
            unchanged.append(f.path)
        elif not force:
            raise ConfigError(f"{str(f.path)!r} already exists with other content; not overwriting it (--force overwrites "
                              "existing export files; or choose another --out)")
    try:
        for f in files:
            if f.path not in unchanged:
                with atomic_path(f.path) as tmp:
                    tmp.write_bytes(f.data)
    except OSError as e:
        raise OutputError(f"cannot write the export under {str(out)!r} ({e.strerror or e})") from None
    return Exported([f.path for f in files], unchanged)


def _records(root: Path) -> list[dict[str, Any]]:
    rec_dir = Path(root) / "records"
    if not rec_dir.is_dir():
        raise ConfigError(f"no results under {str(root)!r} (expected a 'records' folder); run `vprbench run --out {root}` first")
    out = []
    for path in sorted(rec_dir.rglob("*.json")):
        try:
            rec = read_record(path)
        except DataError as e:
            log.warning("skipping %s", e)
            continue
        rec["_path"] = str(path)
        out.append(rec)
    if not out:
        raise ConfigError(f"no result records under {rec_dir}")
    return out


def export_pairs(
    root: Path,
    out: Path | None = None,
    formats: tuple[str, ...] = FORMATS,
    dataset: str | None = None,
    data_dir: str | None = None,
    dataset_params: dict[str, Any] | None = None,
    force: bool = False,
) -> Exported:
    """Export every record's predictions under ``root`` as pairs files; return the files (written or unchanged).

    Files go to ``out`` (default ``root/exports``) mirroring ``records/<dataset>/<method>/``.
    ``dataset`` (a name or a definition file) is loaded instead of the records' dataset names;
    then only records of that dataset (by name) are exported. An existing file with other content is
    refused (ConfigError) unless ``force``.
    """
    root = Path(root)
    out = check_out_folder(Path(out) if out is not None else root / "exports")
    for fmt in formats:
        if fmt not in FORMATS:
            raise ConfigError(f"export format must be one of {FORMATS}, got {fmt!r}")
    records = _records(root)
    loaded: dict[str, BenchmarkDataset] = {}
    if dataset is not None:
        ds = load_dataset(dataset, data_dir, dataset_params)
        loaded[ds.name] = ds
        records = [r for r in records if r["job"]["dataset"] == ds.name]
        if not records:
            raise ConfigError(f"no records of dataset {ds.name!r} under {root / 'records'}")
    written = []
    for rec in records:
        name = rec["job"]["dataset"]
        if name not in loaded:
            try:
                loaded[name] = load_dataset(name, data_dir, dataset_params)
            except ConfigError as e:
                raise ConfigError(f"{e} The records under {str(root)!r} are of dataset {name!r}: if the run used a definition "
                                  "file, give it with --dataset FILE.toml") from None
        pairs = job_pairs(rec, root, loaded[name])
        rel = Path(rec["_path"]).relative_to(root / "records").with_suffix("")
        if "csv" in formats:
            written.append(_File(out / rel.with_name(rel.name + ".pairs.csv"), pairs_csv_text(pairs).encode("utf-8")))
        if "kapture" in formats:
            path = out / rel.with_name(rel.name + ".kapture-pairs.txt")
            written.append(_File(path, kapture_pairs_text(pairs, path).encode("utf-8")))
    return _write_files(out, written, force)


def export_descriptors(ds: BenchmarkDataset, out: Path, force: bool = False) -> Exported:
    """Write every traverse's per-frame descriptors (and frame names) of ``ds`` to ``out``; return the files.

    An existing file with other content is refused (ConfigError) unless ``force``.
    """
    out = check_out_folder(out)
    written = []
    for t in (ds.reference, *ds.queries.values()):
        if t.descriptors is None:
            raise DataError(f"dataset {ds.name!r}: traverse {t.name!r} has no per-frame descriptors to export (imported distances only)")
        written += _traverse_files(out, t, t.descriptors)
    return _write_files(out, written, force)


def export_frontend_descriptors(ds: BenchmarkDataset, method: Any, out: Path, ctx: Any, train_ds: BenchmarkDataset | None = None,
                                force: bool = False) -> Exported:
    """Write a frontend's per-frame outputs [frames, D'] (``Method.encode``) for every traverse of ``ds``.

    ``method``: a created method with ``info.provides_frontend`` (e.g. ``seqnet-s1``); a learned one
    is first fitted on ``train_ds``'s (default ``ds``'s) train split, validated on its val split,
    with ``ctx`` (seed, L, ``cache_dir``: a cached model is reused). An existing file with other
    content is refused (ConfigError) unless ``force``.
    """
    out = check_out_folder(out)
    if not method.info.provides_frontend:
        raise ConfigError(f"method {method.label!r} provides no per-frame representation to export; frontends: the methods "
                          "with provides_frontend (seqnet-s1, seqmatchnet, netvlad-trained, ...)")
    if method.info.trains:
        source = train_ds or ds
        if "train" not in source.splits:
            raise ConfigError(f"method {method.label!r} trains, but dataset {source.name!r} has no 'train' split; give --train-dataset")
        method.fit(source.split("train"), source.split("val") if "val" in source.splits else None, ctx)
    written = []
    for t in (ds.reference, *ds.queries.values()):
        written += _traverse_files(out, t, method.encode(t, ctx))
    return _write_files(out, written, force)


def _same_sparse(x: Any) -> Callable[[Path], bool]:
    def same(path: Path) -> bool:
        from scipy.sparse import load_npz

        y = load_npz(path)
        return y.shape == x.shape and y.dtype == x.dtype and (y != x).nnz == 0

    return same


def _traverse_files(out: Path, t: Any, x: Any) -> list[_File]:
    """``<traverse>.npy`` (or ``.npz`` for sparse ``x``) and ``<traverse>.images.txt`` under ``out``."""
    stem = out / t.name.replace("/", "_")
    buf = io.BytesIO()
    if is_sparse(x):
        from scipy.sparse import save_npz

        save_npz(buf, x)
        data = _File(stem.with_name(stem.name + ".npz"), buf.getvalue(), _same_sparse(x))
    else:
        np.save(buf, np.ascontiguousarray(x, dtype=np.float32))
        data = _File(stem.with_name(stem.name + ".npy"), buf.getvalue())
    names = "".join(n + "\n" for n in frame_names(t)).encode("utf-8")
    return [data, _File(stem.with_name(stem.name + ".images.txt"), names)]
