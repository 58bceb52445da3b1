"""A wheel install works without the repository: the package, its data files and the CLI.

The wheel is built from this checkout and installed (no dependencies) into a fresh virtual
environment whose other packages come from the test's own environment (a ``.pth`` line: nothing
is downloaded). ``deepimagej list`` and ``deepimagej demo`` then run from that environment, with
the example bundles found through ``DEEPIMAGEJ_MODELS`` as a user of the wheel would.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BUNDLES = REPO / "bundles"

pytestmark = pytest.mark.slow


def _site_packages(venv: Path) -> Path:
    found = list((venv / "lib").glob("python3*/site-packages"))
    assert len(found) == 1, found
    return found[0]


def test_wheel_installs_and_runs_without_the_checkout(tmp_path):
    if not (BUNDLES / "unet-pancreatic").is_dir():
        pytest.skip("bundles/unet-pancreatic not built")
    wheels = tmp_path / "wheels"
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(wheels),
            str(REPO),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = wheels.glob("deepimagej-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    site = _site_packages(venv)
    (site / "dependencies.pth").write_text(
        sysconfig.get_paths()["purelib"] + "\n"
    )  # numpy, TF, ... from here
    installed = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--no-compile",
            "-q",
            "--target",
            str(site),
            str(wheel),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert installed.returncode == 0, installed.stderr
    python = venv / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["DEEPIMAGEJ_MODELS"] = str(BUNDLES)

    def in_venv(*args: str) -> subprocess.CompletedProcess:
        """``python ARGS`` with the wheel's venv, outside the checkout."""
        return subprocess.run(
            [str(python), *args],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            timeout=600,
            check=False,
        )

    where = in_venv("-c", "import deepimagej, pathlib; print(pathlib.Path(deepimagej.__file__))")
    assert where.returncode == 0, where.stderr
    package = Path(where.stdout.strip()).parent
    assert package.is_relative_to(site), where.stdout  # the wheel's copy, not the checkout
    assert list((package / "imagej" / "java").rglob("*.java")), "the Java shim's sources are package data"
    assert sorted(p.name for p in (package / "unet" / "macros").glob("*.ijm")) == [
        "postprocessing_classes.ijm",
        "postprocessing_detection.ijm",
        "postprocessing_instances.ijm",
    ], "the U-Net post-processing macros are package data"
    macro = in_venv(
        "-c", "from deepimagej.unet.postprocess import detection_macro; print(detection_macro(0.7, 1.0, 4))"
    )
    assert macro.returncode == 0, macro.stderr
    assert "threshold = 0.7;" in macro.stdout and 'run("Gaussian Blur...", ' in macro.stdout
    listed = in_venv("-m", "deepimagej", "list")
    assert listed.returncode == 0 and "unet-pancreatic" in listed.stdout, listed.stdout + listed.stderr
    demo = in_venv("-m", "deepimagej", "demo", "--out", str(tmp_path / "out"))
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert (tmp_path / "out" / "unet-pancreatic_result.tif").is_file()
