"""``deepimagej.imagej.start(show=True)``: ImageJ's window from Python (Jupyter), with the plugin's menus.

A fresh Python process (one JVM per process) under a private Xvfb starts the window, opens the
pancreatic example and starts the Macro Recorder, then goes on working while the test clicks
Plugins › DeepImageJ › DeepImageJ Run and OK with xdotool: the command runs in that Python
process. The result is checked by its pixels, and the line the Recorder wrote is run again as
a macro in the same session.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import x11

pytestmark = pytest.mark.plugin
REPO = Path(__file__).resolve().parents[1]
RESULT = "Count Masks of Output probability"

SCRIPT = """
import json, sys, time
from pathlib import Path

import tifffile

from deepimagej.imagej import start

home, example, out, mode, result = sys.argv[1:6]
out = Path(out)
if mode == "hidden-first":
    start()  # a session without the window first (e.g. a notebook that ran macros before)
t0 = time.monotonic()
ij = start(show=True, folder=home)
seconds = time.monotonic() - t0
from deepimagej.imagej.java_classes import jc

IJ, Menus = jc.IJ, jc.Menus
instance = IJ.getInstance()
bar = instance.getMenuBar()
plugins = next(bar.getMenu(i) for i in range(bar.getMenuCount()) if str(bar.getMenu(i).getLabel()) == "Plugins")
submenus = {}
for i in range(plugins.getItemCount()):
    item = plugins.getItem(i)
    if isinstance(item, jc.Menu):
        submenus[str(item.getLabel())] = [str(item.getItem(j).getLabel()) for j in range(item.getItemCount())]
IJ.run("Record...")  # Plugins > Macros > Record...
IJ.openImage(example).show()
print(json.dumps({
    "seconds": seconds,
    "showing": bool(instance.isShowing()),
    "same_session": start() is ij,
    "plugins_dir": str(Menus.getPlugInsPath()),
    "submenus": submenus,
    "run_command": str(Menus.getCommands().get("DeepImageJ Run")),
    "install_command": str(Menus.getCommands().get("DeepImageJ Install Model")),
}), flush=True)
# start() has returned: this process goes on (a notebook's next cell) while the user clicks
WindowManager = jc.WindowManager
deadline = time.monotonic() + 300
while WindowManager.getImage(result) is None:
    if time.monotonic() > deadline:
        sys.exit("no result window")
    time.sleep(0.1)
time.sleep(0.5)
clicked = ij.from_imageplus(WindowManager.getImage(result))
tifffile.imwrite(out / "clicked.tif", clicked)
text = str(jc.Recorder.getInstance().getText())
(out / "recorder.txt").write_text(text)
line = next(l for l in text.splitlines() if l.startswith('run("DeepImageJ Run"'))
replayed = ij.run_macro(line, example).image
tifffile.imwrite(out / "replayed.tif", replayed)
print(json.dumps({"done": True}), flush=True)
"""


def _need(*programs: str) -> None:
    for program in programs:
        if shutil.which(program) is None:
            pytest.skip(f"{program} not installed (scripts/setup.sh installs it)")


@pytest.fixture(scope="module")
def display(private_display):
    """This module's own X server (see conftest.private_display)."""
    _need("Xvfb", "java", "xdotool")
    return private_display


class Session:
    """The Python process that called ``start(show=True)``; its JSON lines are read as they come."""

    def __init__(self, display: str, home: Path, example: Path, out: Path, mode: str, models: Path) -> None:
        self.env = dict(
            os.environ,
            DISPLAY=display,
            PYTHONPATH=str(REPO / "python"),
            DEEPIMAGEJ_MODELS=str(models),
            DEEPIMAGEJ_CONFIG=str(out / "config"),
        )
        self.stderr = open(out / "python.err", "w")  # noqa: SIM115 - lives as long as the process
        self.proc = subprocess.Popen(
            [sys.executable, "-c", SCRIPT, str(home), str(example), str(out), mode, RESULT],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            text=True,
        )
        self.out = out
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)

    def next(self, timeout: float) -> dict:
        try:
            return json.loads(self.lines.get(timeout=timeout))
        except queue.Empty:
            raise AssertionError(
                f"no report in {timeout:.0f} s: {(self.out / 'python.err').read_text()[-3000:]}"
            ) from None

    def xdotool(self, *args: str) -> str:
        return x11.xdotool(self.env["DISPLAY"], *args)

    def alive(self) -> None:
        if self.proc.poll() is not None:
            raise AssertionError(f"Python exited: {(self.out / 'python.err').read_text()[-3000:]}")

    def wait_window(self, name: str, timeout: float) -> None:
        x11.wait_window(self.env["DISPLAY"], name, timeout, self.alive)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(30)
        self.stderr.close()


@pytest.fixture
def session(display, pancreatic_bundle, assets, tmp_path, request):
    out = tmp_path / "out"
    out.mkdir()
    s = Session(
        display,
        tmp_path / "ImageJ",
        assets / "unet_pancreatic" / "exampleImage.tif",
        out,
        request.param,
        pancreatic_bundle.root.parent,
    )
    yield s
    s.close()


@pytest.fixture(scope="module")
def reference(ij, pancreatic_bundle, assets):
    """The bundle with its own macros in this test session's (hidden) ImageJ."""
    return ij.run_bundle(pancreatic_bundle.root, assets / "unet_pancreatic" / "exampleImage.tif").image


@pytest.mark.parametrize("session", ["fresh", "hidden-first"], indirect=True)
def test_start_show_opens_the_window_with_the_menus_and_runs_the_clicked_command(session, reference):
    import tifffile

    report = session.next(180)  # start(show=True) returned: the Python prompt is free
    assert report["showing"] and report["same_session"]
    assert report["plugins_dir"].rstrip("/") == str(session.out.parent / "ImageJ" / "plugins"), report
    assert report["submenus"]["DeepImageJ"] == [
        "DeepImageJ Run",
        "DeepImageJ Explore",
        "DeepImageJ Install Model",
        "DeepImageJ Build Bundled Model",
        "DeepImageJ Jobs",
    ]
    assert report["submenus"]["U-Net"] == ["U-Net Train"]
    assert report["run_command"] == 'deepimagej.ij.Command("run")'  # the commands run in that Python
    assert report["install_command"] == 'deepimagej.ij.Command("install")'
    assert (session.out.parent / "ImageJ" / "plugins" / "DeepImageJ_Python.jar").is_file()
    # the user clicks Plugins > DeepImageJ > DeepImageJ Run, then OK (the X server sees the window)
    session.wait_window("ImageJ", 30)
    session.wait_window("exampleImage.tif", 30)
    window = session.xdotool("search", "--name", "^ImageJ$").split()[0]
    session.xdotool("mousemove", "--window", window, "320", "12", "click", "1")  # Plugins
    time.sleep(0.5)
    session.xdotool("key", "Up")  # from the first item up to the last two: U-Net, then DeepImageJ
    time.sleep(0.2)
    session.xdotool("key", "Up")
    time.sleep(0.2)
    session.xdotool("key", "Right")  # the DeepImageJ submenu
    time.sleep(0.7)
    session.xdotool("key", "Return")  # DeepImageJ Run: its dialog
    session.wait_window("DeepImageJ Run", 60)
    x11.press_ok(
        session.env["DISPLAY"], "DeepImageJ Run"
    )  # OK with the defaults: the first model, its own macros
    session.wait_window(RESULT, 180)
    assert session.next(180) == {"done": True}
    clicked = tifffile.imread(session.out / "clicked.tif")
    assert clicked.dtype == reference.dtype and np.array_equal(clicked, reference)
    recorded = [
        line
        for line in (session.out / "recorder.txt").read_text().splitlines()
        if line.startswith('run("DeepImageJ Run"')
    ]
    assert len(recorded) == 1 and "model=unet-pancreatic" in recorded[0], recorded
    assert np.array_equal(tifffile.imread(session.out / "replayed.tif"), clicked)  # the recorded line
    print(f"\nstart(show=True) {report['seconds']:.1f} s; recorded: {recorded[0]}")


def test_start_show_without_a_display_is_refused(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO / "python"))
    env.pop("DISPLAY", None)
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys\nfrom deepimagej.imagej import start\n"
            "try:\n    start(show=True, folder=sys.argv[1])\n"
            "except Exception as e:\n    print(type(e).__name__, e)\n",
            str(tmp_path / "ImageJ"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.stdout.startswith("ImageJError no display (DISPLAY is not set)"), proc.stdout + proc.stderr
    assert not (tmp_path / "ImageJ").exists()  # refused before anything was written


def test_install_model_command_in_the_embedded_imagej(ij, pancreatic_bundle, pancreatic_zip, tmp_path):
    """The menu's Install Model runs in the embedded ImageJ too (no worker): a zip into a models folder."""
    bundle_zip = pancreatic_zip
    models = tmp_path / "models"
    res = ij.run_macro(f'run("DeepImageJ Install Model", "source=[{bundle_zip}] models=[{models}]");')
    assert (models / "unet-pancreatic" / "rdf.yaml").is_file()
    assert f"[DeepImageJ] installed '{pancreatic_bundle.name}' in {models}/unet-pancreatic" in res.log
    assert "example image: exampleImage" in res.log
    from deepimagej.errors import MacroError

    with pytest.raises(MacroError, match="needs source="):
        ij.run_macro('run("DeepImageJ Install Model", "models=[/tmp]");')
