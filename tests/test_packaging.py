"""The wheel and sdist: build without setuptools warnings, and carry what a pip user needs (the recipes,
the card templates, the metric scripts, the license, the `hf-relpos` entry point).

Built in-process with setuptools' PEP 517 backend (no isolated environment, no index): the sdist first,
then the wheel from the unpacked sdist, as `python -m build` does. The end-to-end check of the installed
wheel (fresh venv, empty folder, a recipe by name, convert, remote code) is .ci/wheel_check.sh."""

import os
import shutil
import subprocess
import sys
import tarfile
import zipfile

import pytest
from helpers import PROJECT_ROOT

import hf_relpos

BUILD = """
import sys, tarfile, pathlib, os
from setuptools import build_meta
dist = pathlib.Path(sys.argv[1])
sdist = build_meta.build_sdist(str(dist))
with tarfile.open(dist / sdist) as tar:
    tar.extractall(dist / "src", filter="data")
os.chdir(next((dist / "src").iterdir()))
print("BUILT", sdist, build_meta.build_wheel(str(dist)))
"""

SOURCES = ("pyproject.toml", "README.md", "LICENSE", "hf_relpos", "recipes", "model_cards")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    pytest.importorskip("setuptools", minversion="77")
    root = tmp_path_factory.mktemp("pkg")
    src, dist = root / "src", root / "dist"
    src.mkdir()
    for name in SOURCES:  # a copy: the build writes build/ and *.egg-info beside pyproject.toml
        path = PROJECT_ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(path, src / name)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    proc = subprocess.run(
        [sys.executable, "-W", "always", "-c", BUILD, str(dist)],
        cwd=src,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    sdist_name, wheel_name = proc.stdout.strip().splitlines()[-1].split()[1:]
    return {"log": proc.stdout + proc.stderr, "sdist": dist / sdist_name, "wheel": dist / wheel_name}


def test_build_prints_no_warning(built):
    bad = [line for line in built["log"].splitlines() if "warn" in line.lower() or "deprecat" in line.lower()]
    assert bad == [], "\n".join(bad)


def test_wheel_carries_recipes_cards_metrics_license_and_entry_point(built):
    names = set(zipfile.ZipFile(built["wheel"]).namelist())
    for recipe in (PROJECT_ROOT / "recipes").glob("*.yaml"):
        assert f"hf_relpos/recipes/{recipe.name}" in names
    for card in (PROJECT_ROOT / "model_cards").glob("*.md"):
        assert f"hf_relpos/model_cards/{card.name}" in names
    for script in (PROJECT_ROOT / "hf_relpos" / "training" / "metrics").glob("*/*.py"):
        assert f"hf_relpos/training/metrics/{script.parent.name}/{script.name}" in names
    version = hf_relpos.__version__
    assert built["wheel"].name == f"hf_relpos-{version}-py3-none-any.whl"
    dist_info = f"hf_relpos-{version}.dist-info"
    assert f"{dist_info}/licenses/LICENSE" in names
    wheel = zipfile.ZipFile(built["wheel"])
    assert "hf-relpos = hf_relpos.cli:main" in wheel.read(f"{dist_info}/entry_points.txt").decode()
    metadata = wheel.read(f"{dist_info}/METADATA").decode()
    assert "License-Expression: Apache-2.0" in metadata
    assert not any(n.startswith(("tests/", "recipes/", "model_cards/")) for n in names)


def test_sdist_carries_the_sources_the_wheel_is_built_from(built):
    names = {n.split("/", 1)[1] for n in tarfile.open(built["sdist"]).getnames() if "/" in n}
    for recipe in (PROJECT_ROOT / "recipes").glob("*.yaml"):
        assert f"recipes/{recipe.name}" in names
    assert {"LICENSE", "pyproject.toml", "README.md", "model_cards/base.md"} <= names
