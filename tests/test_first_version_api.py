"""Plugins written against the first version (flat module names, README's public API) keep working."""

from __future__ import annotations

import numpy as np
import pytest

from vprbench.plugins.registry import discover

OLD_STYLE = '''
from vprbench.dataset import SplitData
from vprbench.errors import ConfigError
from vprbench.kernels import block_rows, mask_queries, sequence_topk_from, split_distance_source
from vprbench.method import Method, MethodInfo, Param, Ranking, RunContext, Timings, coerce_param
from vprbench.training import TrainedSeqNetMethod, learned_params
from vprbench.windows import traverse_windows


class OldSeqMatch(Method):
    info = MethodInfo(name="old-seqmatch", family="sequence-matching", summary="x",
                      params={"variant": Param("meanOfPairs", "x", ("meanOfPairs", "centerOnly"))})

    def rank(self, split: SplitData, ctx: RunContext) -> Ranking:
        assert isinstance(ctx.timings, Timings) and block_rows(1000, 1.0) >= 1
        assert coerce_param("old-seqmatch", "variant", self.info.params["variant"], "centerOnly") == "centerOnly"
        q_starts, q_valid = traverse_windows(split.query, ctx.seq_len, ctx.boundary)
        r_starts, r_valid = traverse_windows(split.reference, ctx.seq_len, ctx.boundary)
        idx, dist = sequence_topk_from(split_distance_source(split), q_starts, r_starts, ctx.seq_len, ctx.top_k,
                                       variant=self.params["variant"], r_valid=r_valid)
        return Ranking(*mask_queries(idx, dist, q_valid))


class OldS1(TrainedSeqNetMethod):
    preset_table = "seqnet-s1"
    info = MethodInfo(name="old-s1", family="sequence-matching", summary="x", trains=True,
                      params=learned_params(fixed=("loss", "mining", "filter_width")))
'''


def _forget_moved_modules(monkeypatch) -> None:
    import sys

    from vprbench.core.compat import MOVED

    for old in MOVED:
        if f"vprbench.{old}" in sys.modules:
            monkeypatch.delitem(sys.modules, f"vprbench.{old}")


@pytest.fixture
def old_registry(tmp_path, monkeypatch):
    _forget_moved_modules(monkeypatch)
    (tmp_path / "old_style.py").write_text(OLD_STYLE)
    with pytest.warns(DeprecationWarning, match=r"vprbench\.dataset moved to vprbench\.data\.dataset"):
        reg = discover([tmp_path])
    assert not reg.failures, reg.failures
    return reg


def test_old_module_names_import_with_a_deprecation_warning(monkeypatch):
    import importlib

    _forget_moved_modules(monkeypatch)
    with pytest.warns(DeprecationWarning, match="vprbench.windows moved to vprbench.data.windows"):
        old = importlib.import_module("vprbench.windows")
    from vprbench.data.windows import traverse_windows

    assert old.traverse_windows is traverse_windows
    with pytest.raises(AttributeError, match="moved to vprbench.data.windows.*no attribute 'nothing'"):
        old.nothing  # noqa: B018
    from vprbench.metrics import recall_at_n
    from vprbench.metrics.recall import recall_at_n as new

    assert recall_at_n is new


def test_an_old_style_plugin_ranks_like_the_built_in(old_registry, tmp_path):
    from vprbench.data.catalog import load_dataset
    from vprbench.plugins.api import RunContext

    split = load_dataset("synth-tiny").split("test")
    ctx = RunContext(seed=0, seq_len=5, top_k=5)
    for variant in ("meanOfPairs", "centerOnly"):
        old = old_registry.create("old-seqmatch", variant=variant).rank(split, ctx)
        new = old_registry.create("seqmatch", variant=variant).rank(split, ctx)
        assert np.array_equal(old.indices, new.indices) and np.allclose(old.distances, new.distances)


def test_an_old_style_learned_plugin_trains_with_the_presets_it_names(old_registry, tmp_path):
    from vprbench.data.catalog import load_dataset
    from vprbench.plugins.api import RunContext

    ds = load_dataset("synth-tiny")
    ctx = RunContext(seed=0, seq_len=5, top_k=5, cache_dir=tmp_path / "cache")
    old, new = old_registry.create("old-s1", epochs=1), old_registry.create("seqnet-s1", epochs=1)
    for m in (old, new):
        m.fit(ds.split("train"), ds.split("val"), ctx)
    assert {k: v for k, v in old.resolved_params.items()} == new.resolved_params
    a, b = old.rank(ds.split("test"), ctx), new.rank(ds.split("test"), ctx)
    assert np.array_equal(a.indices, b.indices)


def test_a_learned_plugin_without_presets_is_told_how_to_get_them(tmp_path):
    from vprbench.core.errors import ConfigError

    (tmp_path / "mine.py").write_text(
        "from vprbench.method import MethodInfo, TrainedSeqNetMethod, learned_params\n"
        "class Mine(TrainedSeqNetMethod):\n"
        "    info = MethodInfo(name='mine', family='sequence-matching', summary='x', trains=True, params=learned_params())\n"
    )
    reg = discover([tmp_path])
    with pytest.raises(ConfigError, match=r"method 'mine' has no hyperparameter presets of its own: set the class attribute "
                                          r"preset_table to one of \[.*'seqnet'.*\]"):
        reg.create("mine")
