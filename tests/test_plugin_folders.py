"""Plugin folders given with --plugins: private helper modules imported relatively, --plugins after the
subcommand, and folder plugins used as stages of other methods (an hvpr shortlister, a seqmatch frontend).

Each test writes a plugin folder under tmp_path, runs the command line in-process on synth-tiny and
compares the stored rankings with the same computation done here."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from vprbench.cli.main import main
from vprbench.data.catalog import load_dataset
from vprbench.plugins.api import RunContext
from vprbench.plugins.registry import default_registry

HELPERS = '''
import numpy as np


def unit(x):
    x = np.asarray(x, dtype=np.float64)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def brute_topk(q, r, k):
    """Nearest references by Euclidean distance of unit vectors, ties to the lower index."""
    d = np.sqrt(np.maximum(2.0 - 2.0 * unit(q) @ unit(r).T, 0.0))
    idx = np.argsort(d, axis=1, kind="stable")[:, :k]
    return idx, np.take_along_axis(d, idx, axis=1)
'''

# imports its helper with ``from ._helpers import ...``
NEAREST = '''
from vprbench.method import Method, MethodInfo, Ranking

from ._helpers import brute_topk


class HelperNearest(Method):
    info = MethodInfo(name="helper-nn", family="single-image", summary="nearest neighbour through a private helper module",
                      needs=("descriptors",), uses_sequences=False, accepts_frontend=False)

    def rank(self, split, ctx):
        return Ranking(*brute_topk(split.query.descriptors, split.reference.descriptors, ctx.top_k))
'''

# imports its helper with ``from . import _helpers``; serves as a frontend: its per-frame outputs are the first `dims` dimensions
FRONT = '''
from vprbench.method import Method, MethodInfo, Param, Ranking

from . import _helpers


class Truncate(Method):
    info = MethodInfo(name="trunc-front", family="single-image", summary="the first dims dimensions of each descriptor",
                      needs=("descriptors",), uses_sequences=False, provides_frontend=True, accepts_frontend=False,
                      params={"dims": Param(16, "dimensions kept", lo=1, type=int)})

    def encode(self, traverse, ctx):
        return _helpers.unit(traverse.descriptors[:, : self.params["dims"]]).astype("float32")

    def rank(self, split, ctx):
        q, r = self.encode(split.query, ctx), self.encode(split.reference, ctx)
        return Ranking(*_helpers.brute_topk(q, r, ctx.top_k))
'''


@pytest.fixture
def folder(tmp_path) -> Path:
    d = tmp_path / "my_plugins"
    d.mkdir()
    (d / "_helpers.py").write_text(HELPERS)
    (d / "nearest.py").write_text(NEAREST)
    (d / "front.py").write_text(FRONT)
    return d


@pytest.fixture(scope="module")
def tiny():
    return load_dataset("synth-tiny").split("test")


def stored(out: Path) -> dict[str, dict]:
    """The finished jobs in ``out`` by label: the record and the stored ranking's indices."""
    found = {}
    for path in out.glob("records/synth-tiny/*/*.json"):
        record = json.loads(path.read_text())
        pred = np.load(out / record["predictions"], allow_pickle=False)
        found[record["job"]["label"]] = {"record": record, "indices": pred["indices"]}
    return found


def brute_topk(q: np.ndarray, r: np.ndarray, k: int) -> np.ndarray:
    d = np.linalg.norm((q / np.linalg.norm(q, axis=1, keepdims=True))[:, None] - (r / np.linalg.norm(r, axis=1, keepdims=True))[None], axis=-1)
    return np.argsort(d, axis=1, kind="stable")[:, :k]


def test_plugin_with_relative_helper_imports_loads_lists_and_runs(folder, tmp_path, tiny, capsys):
    assert main(["--plugins", str(folder), "list", "methods"]) == 0
    out = capsys.readouterr().out
    assert "helper-nn" in out and "trunc-front" in out and "failed to load" not in out
    assert main(["-q", "--plugins", str(folder), "run", "--methods", "helper-nn,trunc-front[dims=8]", "--dataset", "synth-tiny",
                 "--out", str(tmp_path / "out"), "--no-report"]) == 0
    runs = stored(tmp_path / "out")
    assert set(runs) == {"helper-nn", "trunc-front[dims=8]"}
    assert runs["helper-nn"]["record"]["job"]["code"]["source"]  # identified by its own code
    q, r = tiny.query.descriptors, tiny.reference.descriptors
    np.testing.assert_array_equal(runs["helper-nn"]["indices"], brute_topk(q, r, 20))
    np.testing.assert_array_equal(runs["trunc-front[dims=8]"]["indices"], brute_topk(q[:, :8], r[:, :8], 20))


def test_plugins_option_after_the_subcommand(folder, tmp_path, capsys):
    assert main(["list", "methods", "--plugins", str(folder)]) == 0
    assert "helper-nn" in capsys.readouterr().out
    common = ["--methods", "helper-nn", "--dataset", "synth-tiny", "--no-report"]
    assert main(["-q", "--plugins", str(folder), "run", *common, "--out", str(tmp_path / "before")]) == 0
    assert main(["-q", "run", "--plugins", str(folder), *common, "--out", str(tmp_path / "after")]) == 0
    before, after = stored(tmp_path / "before"), stored(tmp_path / "after")
    assert set(before) == set(after) == {"helper-nn"}
    assert before["helper-nn"]["record"]["key"] == after["helper-nn"]["record"]["key"]
    np.testing.assert_array_equal(before["helper-nn"]["indices"], after["helper-nn"]["indices"])
    # without the option the method is unknown: a clear error, exit 2
    assert main(["-q", "run", *common, "--out", str(tmp_path / "none")]) == 2
    assert "helper-nn" in capsys.readouterr().err


def test_folder_plugins_as_hvpr_stage_and_as_frontend(folder, tmp_path, tiny):
    specs = "hvpr[shortlister=helper-nn,reranker=seqmatch,shortlist_k=10],seqmatch[frontend=trunc-front[dims=8]],seqmatch"
    assert main(["-q", "--plugins", str(folder), "run", "--methods", specs, "--dataset", "synth-tiny",
                 "--out", str(tmp_path / "out"), "--no-report"]) == 0
    runs = stored(tmp_path / "out")
    hvpr = next(v for k, v in runs.items() if k.startswith("hvpr"))
    front = next(v for k, v in runs.items() if k.startswith("trunc-front"))
    assert "helper-nn" in hvpr["record"]["job"]["label"] and front["record"]["job"]["label"] == "trunc-front[dims=8]+seqmatch"
    ctx = RunContext(seq_len=5, top_k=len(tiny.reference))
    seqmatch = default_registry().create("seqmatch")
    # hvpr: the plugin's 10 nearest references, re-ordered by the seqmatch distance (ties: lower index first)
    full = seqmatch.rank(tiny, ctx)
    d = np.full((len(tiny.query), len(tiny.reference)), np.inf)
    np.put_along_axis(d, full.indices, full.distances, axis=1)
    short = brute_topk(tiny.query.descriptors, tiny.reference.descriptors, 10)
    order = np.lexsort((short, np.take_along_axis(d, short, axis=1)), axis=1)
    np.testing.assert_array_equal(hvpr["indices"][:, :10], np.take_along_axis(short, order, axis=1))
    # frontend: seqmatch on the plugin's per-frame outputs (the first 8 dimensions), not on the dataset's descriptors
    trunc = replace(tiny, query=tiny.query.with_descriptors(tiny.query.descriptors[:, :8]),
                    reference=tiny.reference.with_descriptors(tiny.reference.descriptors[:, :8]))
    expected = seqmatch.rank(trunc, RunContext(seq_len=5, top_k=20)).indices
    np.testing.assert_array_equal(front["indices"], expected)
    assert not np.array_equal(runs["seqmatch"]["indices"], expected)
