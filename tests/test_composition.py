"""Any per-frame representation under any method that takes one: gism[frontend=seqnet-s1] == gism run on
S_1's outputs computed separately; names, identities and up-front errors of compositions."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from conftest import make_toy_dataset

from vprbench.core.errors import ConfigError
from vprbench.data.views import ranking_view
from vprbench.plugins.api import RunContext
from vprbench.plugins.registry import discover
from vprbench.plugins.specs import expand
from vprbench.running.runner import RunConfig, Runner

REG = discover()
S1 = "seqnet-s1[epochs=2,init=default]"  # a random start: its outputs differ from the raw descriptors


def encoded_dataset(ds, frontend, ctx):
    """The dataset with every traverse's descriptors replaced by the fitted frontend's outputs."""
    ref = ds.reference.with_descriptors(frontend.encode(ds.reference, ctx))
    queries = {k: q.with_descriptors(frontend.encode(q, ctx)) for k, q in ds.queries.items()}
    return replace(ds, reference=ref, queries=queries)


@pytest.mark.parametrize("matcher", ["gism", "gism-dp", "grh", "seqmatch", "seqslam", "smoothing", "delta", "netvlad"])
def test_composition_equals_the_matcher_on_separately_computed_outputs(matcher):
    ds = make_toy_dataset(n=200, noise=0.8)
    ctx = RunContext(seq_len=5, top_k=10)
    composed = REG.create(f"{matcher}[frontend={S1}]")
    assert composed.info.name == f"seqnet-s1+{matcher}" and composed.label == f"{S1}+{matcher}" and composed.info.trains
    composed.fit(ds.split("train"), ds.split("val"), ctx)
    got = composed.rank(ranking_view(ds.split("test")), ctx)

    frontend = REG.create(S1)
    frontend.fit(ds.split("train"), ds.split("val"), ctx)  # same seed, same data: the same model
    plain = REG.create(matcher).rank(ranking_view(encoded_dataset(ds, frontend, ctx).split("test")), ctx)
    np.testing.assert_array_equal(got.indices, plain.indices)
    np.testing.assert_allclose(got.distances, plain.distances, rtol=1e-6)
    raw = REG.create(matcher).rank(ranking_view(ds.split("test")), ctx)
    assert not np.array_equal(raw.indices, got.indices)  # the frontend changed something


def test_hvpr_composes_composed_stages():
    h = REG.create(f"hvpr[shortlister=seqnet[epochs=2],reranker=seqmatch[frontend={S1}]]")
    assert h.stages["reranker"].info.name == "seqnet-s1+seqmatch"
    ds = make_toy_dataset(n=200)
    ctx = RunContext(seq_len=5, top_k=10)
    h.fit(ds.split("train"), ds.split("val"), ctx)
    r = h.rank(ranking_view(ds.split("test")), ctx)
    assert r.indices.shape[0] == len(ds.split("test").query)


@pytest.mark.parametrize("spec,message", [
    ("gism[frontend=seqnet]", "frontend 'seqnet' provides no per-frame representation"),
    ("gism[frontend=seqmatch]", "frontend 'seqmatch' provides no per-frame representation"),
    ("gism[frontend=nosuch]", "unknown method 'nosuch'"),
    ("seqmatchnet[frontend=seqnet-s1]", "unknown parameter 'frontend' of method 'seqmatchnet'"),
])
def test_bad_compositions_are_config_errors(spec, message):
    with pytest.raises(ConfigError, match=message):
        REG.create(spec)


def test_frontend_that_needs_descriptors_on_imported_distances_is_an_error_before_work(tmp_path):
    ds = make_toy_dataset(n=200)
    n_q, n_r = len(ds.queries["qry"]), len(ds.reference)
    dist = np.random.default_rng(0).random((n_q, n_r)).astype(np.float32)
    imported = replace(ds, reference=replace(ds.reference, descriptors=None),
                       queries={"qry": replace(ds.queries["qry"], descriptors=None)}, distances=dist)
    with pytest.raises(ConfigError, match="frontend 'seqnet-s1.*needs per-frame descriptors.*matcher 'gism'"):
        Runner(RunConfig(dataset="toy", out=tmp_path), REG, [imported]).run(expand(f"gism[frontend={S1}]", [], REG))
    assert not (tmp_path / "records").exists()


def test_frontend_that_trains_needs_a_train_split(tmp_path):
    ds = make_toy_dataset(n=200)
    test_only = replace(ds, splits={"test": ds.splits["test"]})
    with pytest.raises(ConfigError, match="has no 'train' split"):
        Runner(RunConfig(dataset="toy", out=tmp_path), REG, [test_only]).run(expand(f"gism[frontend={S1}]", [], REG))


def test_composed_records_name_the_composition(tmp_path):
    summary = Runner(RunConfig(dataset="toy", out=tmp_path), REG, [make_toy_dataset(n=200)]).run(
        expand(f"gism[frontend={S1}],gism", [], REG))
    names = [o.record["job"]["method"] for o in summary.outcomes]
    assert names == ["seqnet-s1+gism", "gism"]
    composed = summary.outcomes[0].record
    assert composed["job"]["label"] == f"{S1}+gism" and composed["job"]["trains"] and composed["job"]["seeded"]
    assert composed["identity"]["ranking"]["method"]["stages"]["frontend"]["name"] == "seqnet-s1"
    assert (tmp_path / "records" / "toy" / "seqnet-s1+gism").is_dir()


def test_a_composed_label_is_a_spec():
    """``frontend+matcher`` as tables name it parses back to the same composition (also inside a stage)."""
    from vprbench.plugins.registry import default_registry
    from vprbench.plugins.specs import expand

    reg = default_registry()
    a = expand("seqnet-s1[epochs=1]+gism[fanOut=3]", [], reg)
    b = expand("gism[fanOut=3,frontend=seqnet-s1[epochs=1]]", [], reg)
    assert a == b and len(a) == 1
    composed = reg.create(a[0])
    assert composed.label == "seqnet-s1[epochs=1]+gism[fanOut=3]"
    assert expand(composed.label, [], reg) == a
    nested = expand("hvpr[shortlister=seqnet[epochs=1],reranker=seqnet-s1[epochs=1]+seqmatch]", [], reg)
    assert nested == expand("hvpr[shortlister=seqnet[epochs=1],reranker=seqmatch[frontend=seqnet-s1[epochs=1]]]", [], reg)
    with pytest.raises(ConfigError, match="the frontend is given twice"):
        expand("seqnet-s1+seqmatch[frontend=seqnet-s1]", [], reg)
    with pytest.raises(ConfigError, match=r"expected FRONTEND\+MATCHER \(one '\+'\)"):
        expand("seqnet-s1+seqmatchnet+seqmatch", [], reg)
