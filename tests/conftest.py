"""Shared fixtures: the real test material in ../shared/assets and bundles built from it."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# A suite started in the background by a non-interactive shell (`cmd &`, CI wrappers) inherits
# SIGINT ignored, and so would every command it starts: the Ctrl-C tests would then test nothing
# but that. Python's own handler here gives the children SIGINT's default action again.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

REPO = Path(__file__).resolve().parents[1]
ASSETS = REPO.parent / "shared" / "assets"


_EXIT_STATUS: list[int] = []


def pytest_sessionfinish(session, exitstatus):
    _EXIT_STATUS[:] = [int(exitstatus)]


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    """A session that started the embedded ImageJ ends here, results reported, without the Java VM's
    teardown, as the ``deepimagej`` command does (deepimagej/__main__.py): that teardown with AWT's
    threads alive once crashed the suite (SIGSEGV in AWT-EventQueue) after every test had passed."""
    if _EXIT_STATUS and "jpype" in sys.modules:
        from deepimagej.imagej.jvm import jvm_started

        if jvm_started():
            from deepimagej.imagej.cli import finish

            finish(_EXIT_STATUS[0])


@pytest.fixture(scope="session")
def assets() -> Path:
    """../shared/assets (read-only, used in place)."""
    if not ASSETS.is_dir():
        pytest.skip(f"{ASSETS} not found")
    return ASSETS


@pytest.fixture(scope="session")
def ij():
    """The embedded ImageJ 1.x (one per test session); skips when Java, ij.jar or Xvfb are missing."""
    pytest.importorskip("jpype")
    from deepimagej.errors import DeepImageJError
    from deepimagej.imagej import start

    try:
        return start(timeout=300)  # U-Net Train runs take minutes; tests of timeouts pass their own
    except DeepImageJError as exc:
        pytest.skip(f"ImageJ unavailable: {exc}")


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def pancreatic_bundle(assets, tmp_path_factory):
    """The pancreatic U-Net built into a bundle from its Keras .h5 in this test session."""
    from deepimagej.bundle import load_bundle
    from deepimagej.examples import build_pancreatic

    out = tmp_path_factory.mktemp("bundles") / "unet-pancreatic"
    build_pancreatic(assets / "unet_pancreatic", out)
    return load_bundle(out)


@pytest.fixture(scope="session")
def pancreatic_zip(pancreatic_bundle, tmp_path_factory) -> Path:
    """That bundle as DeepImageJ distributes one: a .zip holding its folder ``unet-pancreatic/``."""
    import zipfile

    root = pancreatic_bundle.root
    path = tmp_path_factory.mktemp("zips") / "unet-pancreatic.zip"
    with zipfile.ZipFile(path, "w") as zf:
        for f in root.rglob("*"):
            if f.is_file():
                zf.write(f, f"unet-pancreatic/{f.relative_to(root)}")
    return path


@pytest.fixture(scope="session")
def sshd(tmp_path_factory):
    """A real OpenSSH server on 127.0.0.1 (tests/sshd_server.py) and this session as its client, with host
    ``local`` registered; skips when OpenSSH is not installed."""
    from sshd_server import SSHServer

    try:
        server = SSHServer.start(tmp_path_factory.mktemp("sshd"))
    except RuntimeError as exc:
        pytest.skip(str(exc))
    try:
        with server.client("local"):
            yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def private_display():
    """A private X server for one test module's GUI sessions (Xvfb picks a free display number),
    apart from the embedded ImageJ's (``ij``), so that windows and clicks of one never reach the other."""
    if shutil.which("Xvfb") is None:
        pytest.skip("Xvfb not installed (scripts/setup.sh installs it)")
    read, write = os.pipe()
    proc = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write), "-screen", "0", "1280x1024x24", "-nolisten", "tcp"],
        pass_fds=(write,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(write)
    with os.fdopen(read) as fh:
        number = fh.readline().strip()
    if not number:
        proc.kill()
        pytest.skip("Xvfb did not start")
    yield f":{number}"
    proc.terminate()
    proc.wait(10)
