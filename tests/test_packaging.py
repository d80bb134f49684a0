"""The install puts one name into site-packages: `loopylab`. The folders stay at the top of the repository and
map onto `loopylab.<folder>` (pyproject's package-dir); these tests build the real wheel and import from it."""

import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FOLDERS = ("world", "bus", "sim", "firmware_bridge", "actuation", "perception", "rig", "lab", "nanochat", "market")
SETUPTOOLS = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]


def test_every_folder_maps_into_the_namespace():
    assert SETUPTOOLS["package-dir"] == {"loopylab": "loopylab", **{f"loopylab.{f}": f for f in FOLDERS}}


def test_the_package_list_names_every_package_folder_and_nothing_else():
    found = {"loopylab"} | {
        "loopylab." + ".".join(init.parent.relative_to(REPO).parts)
        for top in FOLDERS
        for init in (REPO / top).rglob("__init__.py")
        if "__pycache__" not in init.parts
    }
    assert set(SETUPTOOLS["packages"]) == found


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    # Built from a copy of the tracked files: setuptools writes build/ and an .egg-info into the source tree, and
    # an .egg-info left in the repository would shadow the installed metadata (entry points) of later runs.
    src = tmp_path_factory.mktemp("src")
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, check=True, capture_output=True).stdout
    for name in filter(None, tracked.decode().split("\0")):
        if (REPO / name).is_file():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, src / name)
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out), str(src)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    (whl,) = out.glob("loopylab-*.whl")
    return whl


def test_the_wheel_has_one_top_level_name(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names if ".dist-info/" not in n} == {"loopylab"}
    # shipped data travels with its package: URDFs, the escrow contract, the policy checkpoint, templates
    for suffix in (".urdf", "Escrow.vy", ".pt", "base.html", "alembic.ini"):
        assert any(n.endswith(suffix) for n in names), suffix


def test_installed_it_imports_as_loopylab_and_the_folder_names_stay_free(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    probe = (
        "import importlib, sys\n"
        "import loopylab.bus, loopylab.world.config\n"
        f"assert loopylab.bus.__file__.startswith({str(target)!r}), loopylab.bus.__file__\n"
        f"for name in {FOLDERS!r}:\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except ImportError:\n"
        "        continue\n"
        "    sys.exit(f'{name} is importable as a top-level name')\n"
        "print('ok')\n"
    )
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    r = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=outside,
        env={"PYTHONPATH": str(target), "PATH": ""},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr
