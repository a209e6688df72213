import pytest

from vprbench.core.errors import ConfigError, UnknownNameError
from vprbench.plugins.registry import DuplicateMethodError, discover
from vprbench.plugins.specs import expand, split_top_level

PLUGIN = """
from vprbench.plugins.api import Method, MethodInfo, Param, Ranking

class {cls}(Method):
    info = MethodInfo(name={name!r}, family="single-image", summary="test plugin",
                      params={{"k": Param(3, "an int"), "mode": Param("a", "a choice", ("a", "b"))}})

    def rank(self, split, ctx):
        raise NotImplementedError
"""


def write(tmp_path, fname, name, cls="P"):
    (tmp_path / fname).write_text(PLUGIN.format(cls=cls, name=name))


def test_builtin_plugins_found():
    reg = discover()
    assert {"netvlad", "seqmatch"} <= set(reg.names())
    assert reg.get("seqmatch").source == "methods/seqmatch.py"


def test_plugin_folder_and_env(tmp_path, monkeypatch):
    write(tmp_path, "mine.py", "mine")
    reg = discover([tmp_path])
    assert reg.get("mine").source.endswith("mine.py")
    monkeypatch.setenv("VPRBENCH_PLUGIN_PATH", str(tmp_path))
    assert "mine" in discover().names()


def test_duplicate_names_name_both_sources(tmp_path):
    write(tmp_path, "a.py", "dup", "A")
    write(tmp_path, "b.py", "dup", "B")
    with pytest.raises(DuplicateMethodError, match=r"'dup' is defined twice: in .*a\.py and in .*b\.py"):
        discover([tmp_path])
    (tmp_path / "b.py").unlink()
    write(tmp_path, "c.py", "netvlad", "C")
    with pytest.raises(DuplicateMethodError, match="methods/netvlad.py"):
        discover([tmp_path])


def test_broken_plugin_is_reported_not_fatal(tmp_path):
    write(tmp_path, "good.py", "good")
    (tmp_path / "broken.py").write_text("import does_not_exist_anywhere\n")
    reg = discover([tmp_path])
    assert "good" in reg.names()
    (source, err), = [(s, e) for s, e in reg.failures.items() if "broken" in s]
    assert "does_not_exist_anywhere" in err
    with pytest.raises(UnknownNameError, match="failed to import: .*broken.py"):
        reg.get("broken")


def test_unknown_method_suggests():
    with pytest.raises(UnknownNameError, match="Did you mean 'seqmatch'"):
        discover().get("seqmach")


def test_parameters_are_validated(tmp_path):
    write(tmp_path, "p.py", "p")
    reg = discover([tmp_path])
    assert reg.create("p", k="7").params == {"k": 7, "mode": "a", "frontend": None}  # the framework adds frontend
    with pytest.raises(ConfigError, match="parameter 'k' expects int"):
        reg.create("p", k="seven")
    with pytest.raises(ConfigError, match=r"'mode' must be one of \['a', 'b'\]"):
        reg.create("p", mode="c")
    with pytest.raises(UnknownNameError, match="Did you mean 'mode'"):
        reg.create("p", mod="a")


def test_grid_expansion(tmp_path):
    write(tmp_path, "p.py", "p")
    reg = discover([tmp_path])
    specs = expand("p[k=1|2,mode=a|b],netvlad", [], reg)
    assert [s.label for s in specs] == ["p[k=1,mode=a]", "p[k=1,mode=b]", "p[k=2,mode=a]", "p[k=2,mode=b]", "netvlad"]
    specs = expand("p", ["p.k=4,5"], reg)
    assert [s.label for s in specs] == ["p[k=4]", "p[k=5]"]
    assert len(expand("all", [], reg)) == len(reg.names())
    with pytest.raises(ConfigError, match="METHOD.KEY=VALUE"):
        expand("p", ["k=4"], reg)
    with pytest.raises(ConfigError, match="unbalanced"):
        split_top_level("p[k=1")


def test_entry_point_plugins(tmp_path, monkeypatch):
    from importlib.metadata import EntryPoint

    import vprbench.plugins.registry as registry_module

    write(tmp_path, "thirdparty_vpr.py", "third-party", "ThirdParty")
    monkeypatch.syspath_prepend(str(tmp_path))
    eps = [
        EntryPoint("tp", "thirdparty_vpr:ThirdParty", "vprbench.methods"),
        EntryPoint("broken", "no_such_module_xyz:Thing", "vprbench.methods"),
    ]
    monkeypatch.setattr(registry_module, "entry_points", lambda group: eps if group == "vprbench.methods" else [])
    reg = discover()
    assert reg.get("third-party").source.startswith("entry point 'tp'")
    assert any("no_such_module_xyz" in err for err in reg.failures.values())
