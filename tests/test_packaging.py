"""A normal (non-editable) wheel install finds every built-in method and dataset, through the same
discovery as plugin folders; every package directory is listed in pyproject.toml."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_every_package_is_listed():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "vprbench").rglob("__init__.py")}
    assert found <= listed, f"packages missing from pyproject.toml: {sorted(found - listed)}"


@pytest.fixture(scope="module")
def wheel_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out), str(ROOT)],
                           capture_output=True, text=True)
    if build.returncode != 0:
        pytest.fail(f"building the wheel failed:\n{build.stderr[-2000:]}")
    (whl,) = out.glob("vprbench-*.whl")
    target = out / "site"
    with zipfile.ZipFile(whl) as z:
        z.extractall(target)
    return target


def test_wheel_finds_every_builtin_method_and_dataset(wheel_dir):
    code = (
        "import json, vprbench\n"
        "from vprbench.plugins.registry import discover, builtin_methods_dir\n"
        "from vprbench.data.catalog import definitions, builtin_datasets_dir\n"
        "reg = discover()\n"
        "print(json.dumps({'file': vprbench.__file__, 'methods': reg.names(), 'failures': reg.failures,\n"
        "                  'datasets': sorted(definitions()), 'mdir': str(builtin_methods_dir()), 'ddir': str(builtin_datasets_dir())}))\n"
    )
    env = {"PYTHONPATH": str(wheel_dir), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=wheel_dir)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert got["file"].startswith(str(wheel_dir)), "the test imported the source tree, not the wheel"
    assert got["mdir"].startswith(str(wheel_dir)) and got["ddir"].startswith(str(wheel_dir))
    expected_methods = sorted(p.stem.replace("_", "-") for p in (ROOT / "methods").glob("*.py") if not p.name.startswith("_"))
    assert got["failures"] == {}
    assert set(expected_methods) <= set(got["methods"]), set(expected_methods) - set(got["methods"])
    expected_datasets = {tomllib.loads(p.read_text())["name"] for p in (ROOT / "datasets").glob("*.toml")}
    assert set(got["datasets"]) == expected_datasets
