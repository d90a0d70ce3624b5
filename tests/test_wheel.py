"""The package as a user gets it: sdist + wheel build, ``twine check``, and the wheel installed into a fresh venv.

The source is copied to a temporary folder and built there (``python -m build --no-isolation``: the sdist, then
the wheel from the unpacked sdist, so a file missing from the sdist fails too), so nothing is written into the
checkout. The fresh venv gets the wheel with ``pip install --no-deps --no-index``; the heavy dependencies (torch,
...) come from this interpreter's site-packages through a ``.pth`` file that points at a folder of symlinks to them,
minus pixelssl's own entries (the editable install's ``__editable__*`` finder and dist-info), so ``pixelssl`` can
only be imported from the wheel. The CLI then runs from a folder outside the repository.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import pytest

import pixelssl

pytest.importorskip("build", reason="`build` is in the dev extra")

REPO = Path(__file__).resolve().parents[1]
PRESETS = sorted(p.name for p in (REPO / "pixelssl" / "configs").glob("*.yaml"))
STATIC = sorted(p.name for p in (REPO / "pixelssl" / "inpaint" / "static").iterdir() if p.is_file())


def _run(cmd, *, cwd, env=None, timeout=300) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{cmd} -> {proc.returncode}\nstdout:\n{proc.stdout[-4000:]}\nstderr:\n{proc.stderr[-4000:]}"
    return proc


def _clean_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV", "PIP_"))}
    env.setdefault("OMP_NUM_THREADS", "2")
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (REPO / name).exists():
            shutil.copy2(REPO / name, src / name)
    shutil.copytree(REPO / "pixelssl", src / "pixelssl", ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
    out = tmp / "dist"
    _run([sys.executable, "-m", "build", "--no-isolation", "--outdir", out, src], cwd=tmp, env=_clean_env())
    return out


def _one(folder: Path, pattern: str) -> Path:
    found = sorted(folder.glob(pattern))
    assert len(found) == 1, found
    return found[0]


def test_version_is_written_once_and_build_does_not_import_torch():
    assert re.fullmatch(r"\d+\.\d+\.\d+([.-]?\w+)?", pixelssl.__version__)
    toml = (REPO / "pyproject.toml").read_text()
    assert 'dynamic = ["version"]' in toml and 'attr = "pixelssl.__version__"' in toml
    assert not re.search(r"(?m)^version\s*=", toml.split("[tool.")[0]), "a second version string in [project]"
    # setuptools reads the attribute statically (a literal assigned at the top of pixelssl/__init__.py, found in its
    # AST; the public API's imports there are never run) and imports the package, torch with it, only if it cannot
    code = ("import sys; sys.modules['torch'] = None; from setuptools.config.expand import read_attr; "
            f"print(read_attr('pixelssl.__version__', {{}}, {str(REPO)!r}))")
    assert _run([sys.executable, "-c", code], cwd=REPO).stdout.strip() == pixelssl.__version__


def test_sdist_and_wheel_hold_presets_static_files_and_pass_twine(dist):
    version = pixelssl.__version__
    wheel = _one(dist, f"pixelssl-{version}-py3-none-any.whl")
    sdist = _one(dist, f"pixelssl-{version}.tar.gz")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {f"pixelssl/configs/{p}" for p in PRESETS} <= names
    assert {f"pixelssl/inpaint/static/{s}" for s in STATIC} <= names
    sources = {str(p.relative_to(REPO)) for p in (REPO / "pixelssl").rglob("*.py") if "__pycache__" not in p.parts}
    assert sources <= names, sorted(sources - names)
    assert not any(n.startswith(("tests/", "benchmarks/", "docs/", "runs/")) for n in names)
    meta = zipfile.ZipFile(wheel).read(f"pixelssl-{version}.dist-info/METADATA").decode()
    assert f"Version: {version}" in meta and "Description-Content-Type: text/markdown" in meta
    for extra in ("timm", "serve", "lightning", "dev"):
        assert f"Provides-Extra: {extra}" in meta
    assert re.search(r"Requires-Dist: lightning>=2\.0; extra == \"lightning\"", meta)
    entry_points = zipfile.ZipFile(wheel).read(f"pixelssl-{version}.dist-info/entry_points.txt").decode()
    assert "pixelssl = pixelssl.cli:main" in entry_points
    members = set(tarfile.open(sdist).getnames())
    root = f"pixelssl-{version}"
    assert {f"{root}/pixelssl/configs/{p}" for p in PRESETS} | {f"{root}/README.md", f"{root}/pyproject.toml"} <= members
    if importlib.util.find_spec("twine") is not None:  # dev extra
        check = _run([sys.executable, "-m", "twine", "check", "--strict", wheel, sdist], cwd=dist)
        assert check.stdout.count("PASSED") == 2, check.stdout


def _shared_site_packages(into: Path) -> Path:
    """Symlinks to this interpreter's site-packages entries except pixelssl's own (editable finder, dist-info)."""
    into.mkdir()
    site = Path(sysconfig.get_paths()["purelib"])
    for entry in site.iterdir():
        low = entry.name.lower()
        if "pixelssl" in low or low.startswith("__editable__") or low == "__pycache__":
            continue
        (into / entry.name).symlink_to(entry)
    return into


def test_wheel_installs_into_a_fresh_venv_and_the_cli_trains(dist, tmp_path):
    wheel = _one(dist, "pixelssl-*.whl")
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=tmp_path, env=_clean_env())
    vpy = venv / "bin" / "python"
    vsite = Path(_run([vpy, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=tmp_path).stdout.strip())
    shared = _shared_site_packages(tmp_path / "shared-site")
    (vsite / "zz_shared_deps.pth").write_text(f"{shared}\n")  # appended after the venv's own site-packages
    _run([sys.executable, "-m", "pip", "--python", vpy, "install", "--no-deps", "--no-index", "--quiet", wheel],
         cwd=tmp_path, env=_clean_env(PIP_DISABLE_PIP_VERSION_CHECK="1"))

    outside = tmp_path / "elsewhere"  # not the repo, so no ./pixelssl on the path either
    outside.mkdir()
    env = _clean_env()
    where = _run([vpy, "-c", "import pixelssl, torch; print(pixelssl.__file__); print(pixelssl.__version__)"],
                 cwd=outside, env=env).stdout.split()
    assert Path(where[0]).resolve().is_relative_to(vsite.resolve()), f"pixelssl imported from {where[0]}, not the wheel"
    assert where[1] == pixelssl.__version__

    exe = venv / "bin" / "pixelssl"
    assert exe.is_file()
    assert _run([exe, "--version"], cwd=outside, env=env).stdout.strip() == f"pixelssl {pixelssl.__version__}"
    help_text = _run([exe, "--help"], cwd=outside, env=env).stdout
    for command in ("pretrain", "config", "probe", "inpaint", "export"):
        assert command in help_text
    listed = _run([exe, "config", "--list"], cwd=outside, env=env).stdout
    assert "pixpro_r18_demo" in listed

    runs = tmp_path / "runs"
    _run([exe, "pretrain", "--config", "pixpro_r18_demo", "train.max_steps=2", "data.synthetic.num_images=64",
          "data.image_size=64", "data.num_workers=0", "train.batch_size=4", "train.progress=false",
          "train.tensorboard=false", f"run.output_dir={runs}", "run.name=wheel"], cwd=outside, env=env)
    run = runs / "wheel"
    assert (run / "config.yaml").is_file() and (run / "backbone.safetensors").is_file()
    assert not (outside / "runs").exists()
