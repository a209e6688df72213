"""Import single-image results of other VPR tools, so every sequence method can run on top of them.

The imported result becomes a :class:`~vprbench.data.dataset.BenchmarkDataset` whose traverses carry
no descriptors (positions = frame index, unit "frame") but which holds the tool's similarity
matrix S [n_query, n_ref] (higher = more similar) as ``distances`` with its ``distance_kind``, and
an explicit ``ground_truth``. ``similarity_kind`` in [params] says what S is: ``"generic"`` (the
default, safe for any score: kind "similarity") or ``"cosine"`` (the cosine similarity of unit
vectors, S in [-1, 1]: kind "cosine-similarity", so that distance-based methods get the exact
Euclidean distance sqrt(2 - 2 S) and graph matchers S itself). Each method converts S to what it
needs (:mod:`vprbench.matching.distances`).

* VPR_Tutorial (Schubert et al.): ``S``, ``GThard`` and ``GTsoft``, each [n_ref, n_query] (rows are
  references), in ``.npy`` files, one ``.npz`` or MATLAB ``.mat`` files (v5; v7.3 with h5py; the
  variable names are the ``*_key`` params; sparse logical ground truth stays sparse). Loader
  ``vpr-tutorial``.
* VPR-Bench (Zaffar et al.): a dataset folder with ``ref/``, ``query/`` and the pickled
  ``ground_truth_new.npy`` ([n_query, 2] rows ``[query index, positive reference indices]``),
  plus a technique's pickled ``precomputed_data_corrected.npy`` (query indices, best reference,
  best score, score matrix [n_query, n_ref] higher = more similar, encoding time, matching time).
  Loader ``vpr-bench``. Pickled files load only with ``trust = true``.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from vprbench.core.errors import ConfigError, DataError
from vprbench.data.arrays import is_sparse, read_array, sniff, variables
from vprbench.data.dataset import BenchmarkDataset
from vprbench.data.download import data_path, missing_files_error, require_data_dir
from vprbench.data.groundtruth import GroundTruth
from vprbench.data.loaders.common import RADIUS_PARAMS, loader_params, parse_splits
from vprbench.data.loaders.image_folders import IMAGE_SUFFIXES
from vprbench.data.traverse import Traverse

if TYPE_CHECKING:
    from vprbench.data.catalog import DatasetDefinition


def similarity_to_distance(s: np.ndarray, mode: str = "max-minus") -> np.ndarray:
    """Distances (lower = more similar) from similarities: ``S.max() - S`` or ``-S``."""
    s = np.asarray(s, dtype=np.float64)
    if mode == "max-minus":
        return s.max() - s
    if mode == "negate":
        return -s
    raise ConfigError(f"similarity_to_distance must be 'max-minus' or 'negate', got {mode!r}")


def _load_plain(path: Path, key: str | None, what: str, param: str | None = None) -> Any:
    """The array ``key`` of a .npy / .npz / .mat file (a sparse matrix stays sparse), read without pickle."""
    return read_array(path, key, what=what, param=param)


def read_vpr_tutorial(
    similarity: Path,
    ground_truth: Path,
    similarity_key: str = "S",
    hard_key: str = "GThard",
    soft_key: str | None = "GTsoft",
) -> tuple[np.ndarray, Any, Any]:
    """S, GThard, GTsoft ([n_ref, n_query]; GTsoft may be None) from ``.npy``, ``.npz`` or ``.mat`` files.

    ``similarity`` / ``ground_truth`` are files; for a ``.npz`` / ``.mat`` the keys name the
    variables, for a ``.npy`` ``ground_truth`` is GThard and GTsoft is looked for beside it as
    ``<stem>_soft.npy``. S is dense float64; GThard / GTsoft are dense bool arrays, or scipy.sparse
    boolean matrices when stored sparse (MATLAB ``sparse(logical)``).
    """
    s = _load_plain(Path(similarity), similarity_key, "similarity matrix S", "similarity_key")
    if is_sparse(s):
        s = s.toarray()
    s = np.asarray(s)
    gt_path = Path(ground_truth)
    hard = _load_plain(gt_path, hard_key, "ground truth GThard", "hard_key")
    soft = None
    if sniff(gt_path) == "npy":
        if soft_key:
            cand = gt_path.with_name(gt_path.stem + "_soft.npy")
            if cand.is_file():
                soft = _load_plain(cand, None, "ground truth GTsoft")
    elif soft_key and soft_key in variables(gt_path):
        soft = _load_plain(gt_path, soft_key, "ground truth GTsoft", "soft_key")
    if s.ndim != 2 or s.dtype.kind not in "fiub":
        raise DataError(f"{similarity}: S must be a numeric [n_ref, n_query] matrix, got shape {s.shape} ({s.dtype})")
    if not np.isfinite(s).all():
        raise DataError(f"{similarity}: S holds NaN or infinite values")
    out = []
    for name, m in (("GThard", hard), ("GTsoft", soft)):
        if m is None:
            out.append(None)
            continue
        if not is_sparse(m):
            m = np.asarray(m)
        if m.shape != s.shape:
            raise DataError(f"{ground_truth}: {name} has shape {m.shape}, S has {s.shape}; expected the same [n_ref, n_query]")
        values = m.data if is_sparse(m) else m
        if not (values.dtype == bool or np.isin(values, (0, 1)).all()):
            raise DataError(f"{ground_truth}: {name} must be boolean (0/1) values")
        out.append(m.astype(bool))
    return s, out[0], out[1]


def vpr_tutorial_files(definition: DatasetDefinition) -> list[str]:
    """The files the ``vpr-tutorial`` loader reads (relative to the data directory)."""
    p = definition.params
    for k in ("similarity", "ground_truth"):
        if not isinstance(p.get(k), str):
            raise ConfigError(f"dataset definition {definition.source}: [params] needs {k} = \"file\"")
    return [p["similarity"], p["ground_truth"]]


def vpr_bench_files(definition: DatasetDefinition) -> list[str]:
    """The files the ``vpr-bench`` loader reads (relative to the data directory)."""
    p = definition.params
    for k in ("dataset_dir", "matches"):
        if not isinstance(p.get(k), str):
            raise ConfigError(f"dataset definition {definition.source}: [params] needs {k} = \"path\"")
    return [f"{p['dataset_dir']}/ground_truth_new.npy", p["matches"]]


SIMILARITY_KINDS: dict[str, str] = {"generic": "similarity", "cosine": "cosine-similarity"}


#: [params] the importers refuse, with the reason (checked by :func:`vprbench.data.catalog.check_params`).
_EXPLICIT = (
    "this loader reads explicit ground truth (which references are positives is given, not derived from positions), "
    "so a radius or tolerance would not change any number; remove it"
)
IMPORTER_REFUSED = {
    **{k: _EXPLICIT for k in RADIUS_PARAMS},
    "similarity_to_distance": (
        "no longer used (the similarity is kept and each method converts it); set similarity_kind = \"generic\" or "
        "\"cosine\" instead"
    ),
}
#: Params both importers read.
IMPORTER_PARAMS = ("similarity_kind", "splits", "reference", "query")
#: Radius stored for datasets with explicit ground truth: no ground truth is derived from it
#: (their protocols are marked explicit, see :func:`vprbench.data.protocol.for_ground_truth`).
PLACEHOLDER_RADIUS = 0.5


def _similarity_kind(definition: DatasetDefinition, s: np.ndarray) -> str:
    """The ``distance_kind`` of an imported similarity matrix from ``similarity_kind`` in [params]."""
    p = definition.params
    name = p.get("similarity_kind", "generic")
    if name not in SIMILARITY_KINDS:
        raise ConfigError(f"dataset definition {definition.source}: similarity_kind must be one of {list(SIMILARITY_KINDS)}, got {name!r}")
    lo, hi = float(s.min()), float(s.max())
    if name == "cosine" and (lo < -1 - 1e-3 or hi > 1 + 1e-3):
        raise DataError(
            f"dataset definition {definition.source}: similarity_kind = \"cosine\" but S spans [{lo:.4g}, {hi:.4g}]; "
            "a cosine similarity of unit vectors lies in [-1, 1] (use \"generic\")"
        )
    if name == "generic" and "similarity_kind" not in p and -1 - 1e-3 <= lo and hi <= 1 + 1e-3:
        warnings.warn(
            f"dataset {definition.name!r}: S lies in [-1, 1]; if it is the cosine similarity of unit vectors set "
            "similarity_kind = \"cosine\" in [params] (exact distances for seqmatch / seqslam); treated as a generic similarity",
            stacklevel=3,
        )
    return SIMILARITY_KINDS[name]


def _index_traverse(name: str, n: int, images: list[Path] | None = None) -> Traverse:
    return Traverse(name, np.arange(n, dtype=np.float64), "frame", image_paths=None if images is None else tuple(images))


def _result_dataset(
    definition: DatasetDefinition,
    distances: np.ndarray,
    gt: GroundTruth,
    ref_images: list[Path] | None = None,
    q_images: list[Path] | None = None,
    meta: dict[str, Any] | None = None,
    kind: str = "distance",
) -> BenchmarkDataset:
    p = definition.params
    n_q, n_r = distances.shape
    meta = {"loader": definition.loader, "distance_kind": kind, **(meta or {})}
    warnings = list(meta.pop("warnings", []))
    splits = parse_splits(p.get("splits"), n_r, n_q, f"dataset {definition.name!r}", warnings)
    return BenchmarkDataset(
        name=definition.name,
        reference=_index_traverse(p.get("reference", "reference"), n_r, ref_images),
        queries={p.get("query", "query"): _index_traverse(p.get("query", "query"), n_q, q_images)},
        splits=splits,
        radius=PLACEHOLDER_RADIUS,
        description=definition.summary,
        distances=np.ascontiguousarray(distances, dtype=np.float32),
        ground_truth=gt,
        meta={**meta, "warnings": warnings},
        distance_kind=kind,
    )


def soft_warning(hard: Any, soft: Any, where: str) -> str | None:
    """A warning text if GTsoft [n_ref, n_query] does not contain every GThard positive.

    VPR_Tutorial's GTsoft includes GThard (a tolerant superset); a GTsoft that misses hard
    positives is probably another matrix (or transposed / shifted). vprbench uses GTsoft | GThard.
    """
    if soft is None:
        return None
    if is_sparse(hard) or is_sparse(soft):
        from scipy.sparse import csr_matrix

        h, s_ = csr_matrix(hard, dtype=bool), csr_matrix(soft, dtype=bool)
        missing = int((h > s_).nnz)
    else:
        missing = int((np.asarray(hard, dtype=bool) & ~np.asarray(soft, dtype=bool)).sum())
    if not missing:
        return None
    n_hard = int(hard.nnz if is_sparse(hard) else np.count_nonzero(hard))
    return (
        f"{where}: GTsoft is not a superset of GThard: {missing} of {n_hard} hard positives are not soft-positive (VPR_Tutorial's "
        "GTsoft contains GThard; is it another matrix, transposed or shifted?); evaluated with GTsoft | GThard as the soft set"
    )


@loader_params("similarity", "ground_truth", "similarity_key", "hard_key", "soft_key", *IMPORTER_PARAMS, refused=IMPORTER_REFUSED)
def load_vpr_tutorial(definition: DatasetDefinition, data_dir: Path | None) -> BenchmarkDataset:
    """Loader ``vpr-tutorial``: params ``similarity`` (file), ``ground_truth`` (file), optional keys
    ``similarity_key`` / ``hard_key`` / ``soft_key``, ``similarity_kind`` ("generic" | "cosine"), ``splits``,
    ``reference`` / ``query`` (traverse names). The ground truth is explicit: ``radius`` /
    ``tolerance`` are refused (they would change nothing)."""
    data_dir = require_data_dir(definition, data_dir)
    p = definition.params
    files = {k: data_path(definition, data_dir, rel, k) for k, rel in zip(("similarity", "ground_truth"), vpr_tutorial_files(definition))}
    missing = [p[k] for k, path in files.items() if not path.is_file()]
    if missing:
        raise missing_files_error(definition, data_dir, missing)
    s, hard, soft = read_vpr_tutorial(files["similarity"], files["ground_truth"], p.get("similarity_key", "S"), p.get("hard_key", "GThard"), p.get("soft_key", "GTsoft"))
    if is_sparse(hard) or is_sparse(soft):
        gt = GroundTruth.from_sparse(hard.T, None if soft is None else soft.T)
    else:
        gt = GroundTruth.from_dense(hard.T, None if soft is None else soft.T)
    kind = _similarity_kind(definition, s)
    w = soft_warning(hard, soft, str(files["ground_truth"]))
    meta = {"source": "VPR_Tutorial", "has_soft": soft is not None, "warnings": [w] if w else []}
    return _result_dataset(definition, s.T, gt, meta=meta, kind=kind)


# VPR-Bench ------------------------------------------------------------------------------------


def _untrusted(path: Path, what: str) -> DataError:
    return DataError(
        f"{path}: {what} is a pickled NumPy object array (VPR-Bench stores it that way). Unpickling a file can run "
        "arbitrary code, so vprbench does not load it by default. If you trust where the file comes from, "
        "set trust = true in the dataset definition's [params] (or pass the dataset override trust=true); "
        "otherwise convert it to plain arrays in a trusted environment."
    )


def _load_pickled(path: Path, trust: bool, what: str) -> np.ndarray:
    if not path.is_file():
        raise DataError(f"{path}: {what} not found")
    try:
        return np.load(path, allow_pickle=False)
    except ValueError:
        if not trust:
            raise _untrusted(path, what) from None
    try:
        return np.load(path, allow_pickle=True, encoding="latin1")
    except Exception as e:  # corrupt pickles raise many types
        raise DataError(f"{path}: cannot read {what} ({type(e).__name__}: {e})") from None


def read_vpr_bench_ground_truth(path: Path, trust: bool = False, n_ref: int | None = None) -> tuple[np.ndarray, list[list[int]]]:
    """Query indices [n_q] and per-query positive reference lists from ``ground_truth_new.npy``."""
    arr = _load_pickled(Path(path), trust, "ground_truth_new.npy")
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise DataError(f"{path}: ground truth must be [n_queries, 2] rows [query index, positives], got shape {arr.shape}")
    q_idx = np.array([int(r[0]) for r in arr], dtype=np.int64)
    positives = []
    for r in arr:
        v = r[1]
        lst = [int(v)] if np.ndim(v) == 0 else [int(x) for x in np.asarray(v).ravel()]
        if n_ref is not None and any(x < 0 or x >= n_ref for x in lst):
            raise DataError(f"{path}: query {int(r[0])} lists a positive reference outside 0..{n_ref - 1}")
        positives.append(lst)
    return q_idx, positives


def read_vpr_bench_matches(path: Path, trust: bool = False) -> dict[str, Any]:
    """The six items of ``precomputed_data_corrected.npy`` as a dict (score matrix [n_q, n_ref])."""
    arr = _load_pickled(Path(path), trust, "precomputed_data_corrected.npy")
    items = list(arr) if arr.dtype == object else []
    if len(items) != 6:
        raise DataError(f"{path}: expected 6 items (query indices, best reference, best score, score matrix, encoding time, matching time), got {len(items)}")
    scores = np.asarray(items[3], dtype=np.float64)
    q_idx = np.asarray(items[0]).astype(np.int64).ravel()
    if scores.ndim != 2 or scores.shape[0] != q_idx.size:
        raise DataError(f"{path}: score matrix has shape {scores.shape}, expected [{q_idx.size} queries, n_ref]")
    if not np.isfinite(scores).all():
        raise DataError(f"{path}: score matrix holds NaN or infinite values")
    return {
        "query_indices": q_idx,
        "best_reference": np.asarray(items[1]).astype(np.int64).ravel(),
        "best_score": np.asarray(items[2], dtype=np.float64).ravel(),
        "scores": scores,
        "encoding_time_s": float(items[4]),
        "matching_time_s": float(items[5]),
    }


def _images(folder: Path) -> list[Path] | None:
    if not folder.is_dir():
        return None
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


@loader_params("dataset_dir", "matches", "trust", *IMPORTER_PARAMS, refused=IMPORTER_REFUSED)
def load_vpr_bench(definition: DatasetDefinition, data_dir: Path | None) -> BenchmarkDataset:
    """Loader ``vpr-bench``: params ``dataset_dir`` (folder with ref/, query/, ground_truth_new.npy),
    ``matches`` (a technique's precomputed_data_corrected.npy), ``trust`` (bool, default false),
    ``similarity_kind`` ("generic" | "cosine") of its score matrix."""
    data_dir = require_data_dir(definition, data_dir)
    p = definition.params
    gt_rel, matches_rel = vpr_bench_files(definition)
    ddir = data_path(definition, data_dir, p["dataset_dir"], "dataset_dir")
    matches = data_path(definition, data_dir, matches_rel, "matches")
    missing = [r for r, path in ((gt_rel, ddir / "ground_truth_new.npy"), (matches_rel, matches)) if not path.is_file()]
    if missing:
        raise missing_files_error(definition, data_dir, missing)
    trust = p.get("trust", False)
    if not isinstance(trust, bool):
        raise ConfigError(f"dataset definition {definition.source}: trust must be true or false (a TOML boolean), got {trust!r}")
    m = read_vpr_bench_matches(matches, trust)
    n_q, n_r = m["scores"].shape
    gq, positives = read_vpr_bench_ground_truth(ddir / "ground_truth_new.npy", trust, n_r)
    if not np.array_equal(np.sort(gq), np.sort(m["query_indices"])):
        raise DataError(f"{ddir / 'ground_truth_new.npy'}: its {gq.size} query indices differ from the {n_q} of {p['matches']}")
    # order everything by query index
    order_m = np.argsort(m["query_indices"], kind="stable")
    order_g = np.argsort(gq, kind="stable")
    scores = m["scores"][order_m]
    gt = GroundTruth.from_lists([positives[i] for i in order_g], n_r)
    ref_images, q_images = _images(ddir / "ref"), _images(ddir / "query")
    if ref_images is not None and len(ref_images) != n_r:
        raise DataError(f"{ddir / 'ref'}: {len(ref_images)} images but the score matrix has {n_r} references")
    if q_images is not None and len(q_images) != n_q:
        raise DataError(f"{ddir / 'query'}: {len(q_images)} images but the score matrix has {n_q} queries")
    kind = _similarity_kind(definition, scores)
    meta = {"source": "VPR-Bench", "encoding_time_s": m["encoding_time_s"], "matching_time_s": m["matching_time_s"]}
    return _result_dataset(definition, scores, gt, ref_images, q_images, meta, kind=kind)
