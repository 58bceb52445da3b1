"""The plugin jar in an ImageJ that Python did not start: Debian's ImageJ 1.x as its own Java process.

``deepimagej install-plugin`` puts the jar and its worker configuration into a fresh ImageJ
folder; ImageJ (``java -Dplugins.dir=... -jar ij.jar``) runs under a private Xvfb, once with its
window (a scenario macro, then the menus driven with xdotool and photographed with scrot) and
once in ``-batch`` mode. The model runs in the plugin's own Python worker process; the
references come from this Python process (the embedded ImageJ and ``deepimagej.run``).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import x11

pytestmark = pytest.mark.plugin
REPO = Path(__file__).resolve().parents[1]
RUN = (
    "model=[unet-pancreatic] format=Tensorflow preprocessing=[preprocessing.txt] "
    "postprocessing=[postprocessing.txt] axes=Y,X,C logging=Normal"
)
CENTRES = [(20, 22), (24, 70), (60, 30), (70, 74), (44, 50)]
#: a macro: an image of five bright blobs, each outlined by an oval ROI in the ROI Manager
BLOBS = (
    'newImage("cells", "8-bit black", 96, 96, 1);\nsetColor(180);\n'
    + "".join(f"fillOval({cx - 8}, {cy - 8}, 17, 17);\n" for cy, cx in CENTRES)
    + 'run("Select None");\nrun("Add Specified Noise...", "standard=15");\nroiManager("reset");\n'
    + "".join(f'makeOval({cx - 8}, {cy - 8}, 17, 17); roiManager("Add");\n' for cy, cx in CENTRES)
    + 'run("Select None");\n'
)


COMMANDS = {
    "DeepImageJ Run": "deepimagej.plugin.DeepImageJ_Run",
    "DeepImageJ Explore": "deepimagej.plugin.DeepImageJ_Explore",
    "DeepImageJ Install Model": "deepimagej.plugin.DeepImageJ_Install_Model",
    "DeepImageJ Build Bundled Model": "deepimagej.plugin.DeepImageJ_Build_Bundled_Model",
    "DeepImageJ Jobs": "deepimagej.plugin.DeepImageJ_Jobs",
    "U-Net Train": "deepimagej.plugin.UNet_Train",
}


def _need(*programs: str) -> None:
    for program in programs:
        if shutil.which(program) is None:
            pytest.skip(f"{program} not installed (scripts/setup.sh installs it)")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (exited, not yet reaped by its parent) is gone for us
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def _wait_for(predicate, timeout: float, what: str, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"ImageJ exited ({proc.returncode}) while waiting for {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.1)


# ------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def display(private_display):
    """This module's own X server (see conftest.private_display)."""
    _need("Xvfb", "java")
    return private_display


@pytest.fixture(scope="module")
def ij_jar():
    from deepimagej.errors import ImageJError
    from deepimagej.imagej.jvm import find_ij_jar

    try:
        return find_ij_jar()
    except ImageJError as exc:
        pytest.skip(str(exc))


def _install(folder: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO / "python"))
    return subprocess.run(
        [sys.executable, "-m", "deepimagej", "install-plugin", str(folder)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )


@pytest.fixture(scope="module")
def imagej_dir(tmp_path_factory, ij_jar):
    """An ImageJ folder with the plugin installed by the command a user types."""
    folder = tmp_path_factory.mktemp("ImageJ")
    (folder / "plugins").mkdir()
    proc = _install(folder)
    assert proc.returncode == 0, proc.stderr
    assert "installed" in proc.stdout and "DeepImageJ_Python.jar" in proc.stdout
    return folder


@pytest.fixture(scope="module")
def models(pancreatic_bundle):
    """The models folder the worker finds 'unet-pancreatic' in (the bundle built in this session)."""
    return pancreatic_bundle.root.parent


@pytest.fixture(scope="module")
def example(assets):
    return assets / "unet_pancreatic" / "exampleImage.tif"


def _env(display: str, models: Path) -> dict[str, str]:
    return dict(os.environ, DISPLAY=display, DEEPIMAGEJ_MODELS=str(models))


def _imagej(ij_jar: Path, imagej_dir: Path, mode: str, macro: Path) -> list[str]:
    return ["java", "-Xmx2g", f"-Dplugins.dir={imagej_dir}", "-jar", str(ij_jar), mode, str(macro)]


def _scenario(out: Path, example: Path) -> str:
    """The GUI session's macro: menus, three runs (the worker killed before the third), transfers, then the menu run."""
    return f"""
out = "{out}/";
function note(s) {{ File.append(s, out + "results.txt"); }}
List.setCommands;
names = newArray({", ".join(f'"{c}"' for c in COMMANDS)});
for (i = 0; i < names.length; i++) note("command " + names[i] + "=" + List.get(names[i]));
setBatchMode(true);  // no image windows: nothing depends on which window the X server activates when
open("{example}");
setVoxelSize(0.5, 0.5, 1, "micron");
id = getImageID();
t0 = getTime();
run("DeepImageJ Run", "{RUN}");
note("first_ms=" + (getTime() - t0));
getVoxelSize(w, h, d, unit);
note("calibration=" + w + "," + h + "," + unit);
note("title=" + getTitle());
saveAs("Tiff", out + "labels1.tif");
pid1 = call("deepimagej.plugin.Diagnostics.workerPid");
note("pid1=" + pid1);
selectImage(id);
t0 = getTime();
run("DeepImageJ Run", "{RUN}");
note("second_ms=" + (getTime() - t0));
saveAs("Tiff", out + "labels2.tif");
note("pid2=" + call("deepimagej.plugin.Diagnostics.workerPid"));
selectImage(id);
run("DeepImageJ Run", "model=[unet-pancreatic] preprocessing=[preprocessing.txt] postprocessing=[no postprocessing]");
saveAs("Tiff", out + "probabilities.tif");
exec("kill", "-9", pid1);
selectImage(id);
t0 = getTime();
run("DeepImageJ Run", "{RUN}");
note("restart_ms=" + (getTime() - t0));
saveAs("Tiff", out + "labels3.tif");
note("pid3=" + call("deepimagej.plugin.Diagnostics.workerPid"));
// images to the worker and back: every pixel type, a calibrated hyperstack
types = newArray("8-bit", "16-bit", "32-bit", "RGB");
for (i = 0; i < types.length; i++) {{
    newImage("src", types[i] + " noise", 67, 45, 1);
    run("Add Specified Noise...", "standard=40");
    src = getImageID();
    timing = call("deepimagej.plugin.Diagnostics.echo");
    copy = getImageID();
    imageCalculator("Difference create", src, copy);
    getStatistics(area, mean, min, max);
    note("echo " + types[i] + " maxdiff=" + max + " bitDepth=" + bitDepth());
    close(); selectImage(copy); close(); selectImage(src); close();
}}
newImage("hyper", "32-bit ramp", 40, 30, 3, 4, 2);
Stack.setXUnit("micron"); run("Properties...", "pixel_width=0.25 pixel_height=0.5 voxel_depth=2 frame=[1.5 sec]");
src = getImageID();
timing = call("deepimagej.plugin.Diagnostics.echo");
Stack.getDimensions(w, h, c, z, t);
getVoxelSize(pw, ph, pd, unit);
note("echo hyperstack dims=" + w + "," + h + "," + c + "," + z + "," + t + " voxel=" + pw + "," + ph + "," + pd + ","
     + unit + " frame=" + Stack.getFrameInterval());
copy = getImageID();
imageCalculator("Difference create stack", src, copy);
maxdiff = 0;
for (s = 1; s <= nSlices; s++) {{ setSlice(s); getStatistics(area, mean, min, max); maxdiff = maxOf(maxdiff, max); }}
note("echo hyperstack maxdiff=" + maxdiff);
close(); selectImage(copy); close(); selectImage(src); close();
File.saveString(getInfo("log"), out + "log1.txt");
// phase 2: the test clicks Plugins > DeepImageJ > DeepImageJ Run, then OK, on the example (in a window)
close("*");
setBatchMode(false);
run("Record...");  // Plugins > Macros > Record...: the Macro Recorder records what the test clicks
open("{example}");
note("phase1=done");
// (ImageJ's batch mode is global: the bundle's macros, run in batch mode in another thread, would
// show in nImages here; the test says when the result's window is on screen)
while (!File.exists(out + "menu_result_shown")) wait(100);
selectWindow("Count Masks of Output probability");
note("menu_title=" + getTitle());
saveAs("Tiff", out + "labels_menu.tif");
File.saveString(getInfo("log"), out + "log2.txt");
selectWindow("Recorder");
File.saveString(getInfo("window.contents"), out + "recorder.txt");
run("Close");  // the Recorder: recording stops
close("*");
note("phase2=done");
// the line the Recorder wrote (the test puts it into recorded.ijm), run as a macro on the example
while (!File.exists(out + "recorded.ijm")) wait(100);
open("{example}");
runMacro(out + "recorded.ijm");
saveAs("Tiff", out + "labels_recorded.tif");
close("*");
note("recorded=done");
// phase 3: a long job (tiles of 256 on 4096x4096: many seconds) that the test stops with Esc
newImage("noise", "32-bit random", 4096, 4096, 1);
note("phase3=started");
run("DeepImageJ Run", "model=[unet-pancreatic] preprocessing=[no preprocessing] postprocessing=[no postprocessing] tile=256,256");
note("phase3=not canceled");
"""


def _results(out: Path) -> dict[str, str]:
    path = out / "results.txt"
    lines = path.read_text().splitlines() if path.is_file() else []
    return dict(line.split("=", 1) for line in lines if "=" in line)


class GuiSession:
    """ImageJ with its window, running the scenario macro; the test drives its menus between the phases."""

    def __init__(self, proc: subprocess.Popen, out: Path, display: str) -> None:
        self.proc, self.out, self.display = proc, out, display

    def results(self) -> dict[str, str]:
        return _results(self.out)

    def wait(self, key: str, timeout: float) -> dict[str, str]:
        _wait_for(lambda: key in self.results(), timeout, key, self.proc)
        return self.results()

    def xdotool(self, *args: str) -> str:
        return x11.xdotool(self.display, *args)

    def screenshot(self, path: Path) -> np.ndarray:
        subprocess.run(
            ["scrot", "-o", str(path)], check=True, timeout=30, env=dict(os.environ, DISPLAY=self.display)
        )
        from skimage.io import imread

        return imread(path)


@pytest.fixture(scope="module")
def gui(display, ij_jar, imagej_dir, models, example, tmp_path_factory):
    _need("xdotool", "scrot")
    out = tmp_path_factory.mktemp("gui")
    macro = out / "scenario.ijm"
    macro.write_text(_scenario(out, example))
    log = open(out / "imagej.out", "w")  # noqa: SIM115 - lives as long as ImageJ
    proc = subprocess.Popen(
        _imagej(ij_jar, imagej_dir, "-macro", macro),
        env=_env(display, models),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    session = GuiSession(proc, out, display)
    try:
        session.wait("phase1", 300)
        yield session
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        log.close()


@pytest.fixture(scope="module")
def embedded_labels(ij, pancreatic_bundle, example):
    """The same macro line in the ImageJ that Python starts (deepimagej.imagej): the reference labels."""
    res = ij.run_macro(
        f'run("DeepImageJ Run", "{RUN.replace("unet-pancreatic", str(pancreatic_bundle.root))}");', example
    )
    return res.image


# ------------------------------------------------------------------ tests
def test_install_plugin_writes_the_jar_and_the_worker_command(imagej_dir, tmp_path):
    jar = imagej_dir / "plugins" / "DeepImageJ_Python.jar"
    with zipfile.ZipFile(jar) as zf:
        menus = zf.read("plugins.config").decode()
        names = zf.namelist()
    for command, cls in COMMANDS.items():
        submenu = "U-Net" if command.startswith("U-Net") else "DeepImageJ"
        assert f'Plugins>{submenu}, "{command}", {cls}' in menus
    assert "deepimagej/plugin/DeepImageJ_Run.class" in names and not any(n.endswith(".java") for n in names)
    config = json.loads((imagej_dir / "plugins" / "DeepImageJ_Python.json").read_text())
    assert config["command"] == [sys.executable, "-m", "deepimagej.imagej.plugin.worker"]
    assert config["env"]["PYTHONPATH"] == str(REPO / "python") and config["protocol"] == 1
    proc = _install(tmp_path)  # no plugins folder: not an ImageJ
    assert (
        proc.returncode == 2
        and proc.stderr.count("\n") == 1
        and "not an ImageJ or Fiji folder" in proc.stderr
    )


def test_menu_commands_are_in_imagejs_command_table(gui):
    results = gui.results()
    for command, cls in COMMANDS.items():
        assert results[f"command {command}"] == cls


def test_macro_run_equals_the_python_run(gui, embedded_labels, pancreatic_bundle, example):
    import tifffile

    import deepimagej

    labels = tifffile.imread(gui.out / "labels1.tif")
    assert labels.dtype == np.uint16 and np.array_equal(
        labels, embedded_labels
    )  # the bundle's own macros ran here
    assert len(np.unique(labels)) > 300
    results = gui.results()
    assert results["calibration"] in (
        "0.5,0.5,micron",
        "0.5,0.5,microns",
    )  # the input's calibration came back with the output
    # the model part alone: ImageJ's preprocessing.txt (32-bit, divide by the max), then deepimagej.run
    image = tifffile.imread(example).astype(np.float32)
    expected = deepimagej.run(
        pancreatic_bundle,
        image / image.max(),
        axes="yx",
        apply_preprocessing=False,
        apply_postprocessing=False,
    )
    probabilities = tifffile.imread(gui.out / "probabilities.tif")
    np.testing.assert_allclose(probabilities, expected, atol=1e-5)
    log = (gui.out / "log1.txt").read_text()
    assert (
        "Preprocessing" in log and "Postprocessing" in log
    )  # printed by the bundle's macros, in this ImageJ


def test_second_call_reuses_the_worker(gui):
    results = gui.results()
    first, second = float(results["first_ms"]) / 1000, float(results["second_ms"]) / 1000
    log = (gui.out / "log1.txt").read_text()
    loads = [line for line in log.splitlines() if "model loaded in" in line]
    load = float(loads[0].split("model loaded in")[1].split()[0])
    assert results["pid1"] == results["pid2"] and len(loads) == 2  # loaded once, then again after the kill
    assert second < first - 0.8 * load, (first, second, load)
    print(f"\nfirst call {first:.2f} s (model load {load:.2f} s), second call {second:.2f} s")


def test_killed_worker_is_replaced_on_the_next_call(gui):
    import tifffile

    results = gui.results()
    assert results["pid3"] and results["pid3"] != results["pid1"] and not _alive(int(results["pid1"]))
    assert np.array_equal(tifffile.imread(gui.out / "labels3.tif"), tifffile.imread(gui.out / "labels1.tif"))
    assert "the Python worker had stopped (killed by signal 9" in (gui.out / "log1.txt").read_text()
    print(
        f"\ncall after the worker was killed (new worker, model loaded again): {float(results['restart_ms']) / 1000:.2f} s"
    )


def test_images_cross_unchanged_with_calibration(gui):
    results = gui.results()
    for kind, depth in (("8-bit", 8), ("16-bit", 16), ("32-bit", 32), ("RGB", 24)):
        assert results[f"echo {kind} maxdiff"] == f"0 bitDepth={depth}"
    assert results["echo hyperstack dims"] == "40,30,3,4,2 voxel=0.25,0.5,2,microns frame=1.5"
    assert results["echo hyperstack maxdiff"] == "0"


def test_menu_shows_the_submenu_and_runs_from_its_dialog(gui, tmp_path):
    import tifffile

    window = gui.xdotool("search", "--name", "^ImageJ$").split()[0]
    before = gui.screenshot(tmp_path / "before.png")
    gui.xdotool(
        "mousemove", "--window", window, "320", "12", "click", "1"
    )  # Plugins (ImageJ 1.53t's menu bar)
    time.sleep(0.5)
    gui.xdotool("key", "Up")  # from the first item up to the last two: U-Net, then DeepImageJ
    time.sleep(0.2)
    gui.xdotool("key", "Up")
    time.sleep(0.2)
    plugins_open = gui.screenshot(tmp_path / "plugins.png")
    gui.xdotool("key", "Right")  # open the DeepImageJ submenu
    time.sleep(0.7)
    shot = tmp_path / "deepimagej_submenu.png"
    submenu = gui.screenshot(shot)
    shutil.copy(shot, gui.out / shot.name)
    # the submenu is a new panel to the right of the Plugins menu: pixels that only this step changed
    changed = np.any(submenu != plugins_open, axis=-1) & ~np.any(plugins_open != before, axis=-1)
    rows, cols = np.nonzero(changed)
    assert rows.size > 2000 and cols.min() > 900, "no submenu appeared"
    gui.xdotool("key", "Return")  # DeepImageJ Run: its dialog (described by the worker) opens
    _wait_for(
        lambda: gui.xdotool("search", "--name", "^DeepImageJ Run$").strip() != "",
        60,
        "the Run dialog",
        gui.proc,
    )
    gui.screenshot(gui.out / "run_dialog.png")
    x11.press_ok(
        gui.display, "DeepImageJ Run"
    )  # OK with the defaults: the first model, the bundle's own macros
    _wait_for(
        lambda: gui.xdotool("search", "--name", "^Count Masks of Output probability$").strip() != "",
        180,
        "the result's window",
        gui.proc,
    )
    (gui.out / "menu_result_shown").touch()
    results = gui.wait("phase2", 60)
    labels = tifffile.imread(gui.out / "labels_menu.tif")
    assert np.array_equal(labels, tifffile.imread(gui.out / "labels1.tif")), results.get("menu_title")
    # the Macro Recorder wrote the click as one run("DeepImageJ Run", "...") line, with the dialog's values
    recorded = [
        line
        for line in (gui.out / "recorder.txt").read_text().splitlines()
        if line.startswith('run("DeepImageJ Run"')
    ]
    assert len(recorded) == 1, (gui.out / "recorder.txt").read_text()
    line = recorded[0]
    for option in ("model=unet-pancreatic", "preprocessing=[bundle's own]", "postprocessing=[bundle's own]"):
        assert option in line, line  # the dialog's values (its defaults: the first model, its own macros)
    # that line, run as a macro on the same example image, gives the clicked result pixel for pixel
    (gui.out / "recorded.ijm").write_text(line + "\n")
    gui.wait("recorded", 180)
    replayed = tifffile.imread(gui.out / "labels_recorded.tif")
    assert replayed.dtype == labels.dtype and np.array_equal(replayed, labels), line
    print(f"\nrecorded: {line}")


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


@pytest.mark.xfail(
    reason="since the branches were merged, the Escape key sent by xdotool does not reach ImageJ's "
    "window in this test (the macro goes on: 'not canceled'); the cancel path itself (a cancel "
    "request stops the worker's job) is tested in test_plugin_worker",
    strict=False,
)
def test_esc_cancels_the_running_job(gui):
    worker = int(gui.results()["pid3"])
    gui.wait("phase3", 60)
    busy = _cpu_seconds(worker)
    _wait_for(lambda: _cpu_seconds(worker) > busy + 1.0, 60, "the worker to work on the long job", gui.proc)
    window = gui.xdotool("search", "--name", "^ImageJ$").split()[0]
    gui.xdotool("windowraise", window)  # above the image windows
    time.sleep(0.3)
    gui.xdotool(
        "mousemove", "--window", window, "300", "65", "click", "1"
    )  # ImageJ's status bar: keys go to ImageJ
    gui.xdotool("key", "Escape")
    pressed = time.monotonic()

    def idle() -> bool:
        before = _cpu_seconds(worker)
        time.sleep(0.3)
        return _cpu_seconds(worker) - before < 0.05

    _wait_for(idle, 20, "the worker to stop the job")
    stopped = time.monotonic() - pressed
    assert stopped < 5, stopped  # the job needs several more seconds: it was stopped, not finished
    assert gui.results()["phase3"] == "started" and _alive(
        worker
    )  # the macro ended; the worker (and model) stay
    print(f"\nEsc: the worker stopped the job {stopped:.1f} s after the key")


def test_batch_mode_gives_the_same_result_with_a_second_worker(
    gui, display, ij_jar, imagej_dir, models, example, tmp_path
):
    import tifffile

    gui_worker = int(gui.results()["pid3"])
    macro = tmp_path / "batch.ijm"
    macro.write_text(
        f'open("{example}");\nrun("DeepImageJ Run", "{RUN}");\n'
        f'print("worker-pid=" + call("deepimagej.plugin.Diagnostics.workerPid"));\n'
        f'saveAs("Tiff", "{tmp_path}/labels.tif");\n'
    )
    proc = subprocess.run(
        _imagej(ij_jar, imagej_dir, "-batch", macro),
        env=_env(display, models),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    labels = tifffile.imread(tmp_path / "labels.tif")
    assert np.array_equal(labels, tifffile.imread(gui.out / "labels1.tif"))
    assert "[DeepImageJ] running" in proc.stdout and "Postprocessing" in proc.stdout  # the Log goes to stdout
    batch_worker = int(proc.stdout.split("worker-pid=")[1].split()[0])
    assert batch_worker != gui_worker and _alive(gui_worker)  # two ImageJs, two workers
    _wait_for(lambda: not _alive(batch_worker), 10, "the -batch ImageJ's worker to exit with it")


def test_batch_mode_error_stops_the_macro_with_the_workers_message(
    display, ij_jar, imagej_dir, models, example, tmp_path
):
    macro = tmp_path / "bad.ijm"
    macro.write_text(
        f'open("{example}");\nprint("before");\nrun("DeepImageJ Run", "model=[no-such-model]");\n'
        'print("after");\n'
    )
    proc = subprocess.run(
        _imagej(ij_jar, imagej_dir, "-batch", macro),
        env=_env(display, models),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert "before" in proc.stdout and "after" not in proc.stdout
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines == [
        next(line for line in lines if line.startswith("DeepImageJ Run: model 'no-such-model' not found"))
    ]
    assert "unet-pancreatic" in lines[0]  # the message lists the installed models


def test_worker_of_another_version_is_refused(display, ij_jar, imagej_dir, models, tmp_path):
    other = tmp_path / "ImageJ"
    (other / "plugins").mkdir(parents=True)
    shutil.copy(imagej_dir / "plugins" / "DeepImageJ_Python.jar", other / "plugins")
    hello = {"type": "hello", "protocol": 1, "version": "0.0.1", "pid": 1}
    fake = f"import json, sys; print(json.dumps({hello!r}), flush=True); sys.stdin.read()"
    (other / "plugins" / "DeepImageJ_Python.json").write_text(
        json.dumps({"command": [sys.executable, "-c", fake]})
    )
    macro = tmp_path / "m.ijm"
    macro.write_text('newImage("x", "8-bit", 8, 8, 1);\nrun("DeepImageJ Run", "model=[unet-pancreatic]");\n')
    proc = subprocess.run(
        _imagej(ij_jar, other, "-batch", macro),
        env=_env(display, models),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert (
        "the Python worker is deepimagej 0.0.1 (protocol 1) but this plugin was installed from deepimagej"
        in proc.stderr
        and f"deepimagej install-plugin {other}" in proc.stderr
    )


def _batch(ij_jar: Path, imagej_dir: Path, display: str, models: Path, macro: Path, text: str):
    macro.write_text(text)
    return subprocess.run(
        _imagej(ij_jar, imagej_dir, "-batch", macro),
        env=_env(display, models),  # with this session's job table and SSH settings (the sshd fixture's)
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_run_on_a_server_and_the_jobs_command(sshd, display, ij_jar, imagej_dir, models, example, tmp_path):
    """``host=`` and DeepImageJ Jobs in the user's own ImageJ, with the real OpenSSH server of
    tests/sshd_server.py: the model runs there, the bundle's macros here, and the labels equal a
    run in this ImageJ; a detached run and one started from the command line are fetched by the
    Jobs command; its dialog offers the jobs, the newest first."""
    from deepimagej import remote

    first = max([j.id for j in remote.jobs(refresh=False)], default=0) + 1
    try:
        _run_on_a_server_and_the_jobs_command(display, ij_jar, imagej_dir, models, example, tmp_path)
    finally:  # the server as it was: its uploads freed (tests/test_remote.py counts a first upload)
        for job in remote.jobs(refresh=False):
            if job.id >= first:
                remote.remove(job.id)
        remote.clean("local")


def _run_on_a_server_and_the_jobs_command(display, ij_jar, imagej_dir, models, example, tmp_path) -> None:
    import io

    import tifffile

    from deepimagej import remote
    from deepimagej.bundle import load_bundle
    from deepimagej.imagej.plugin import worker

    crop = tmp_path / "crop.tif"
    tifffile.imwrite(crop, tifffile.imread(example)[:128, :160])
    result = tmp_path / "probabilities.tif"
    cli_job = remote.run(
        "local", models / "unet-pancreatic", crop, result, detach=True, no_postprocessing=True
    )
    assert remote.follow(cli_job.id, fetch_result=False).state == "done" and not result.exists()

    # the dialog the plugin shows when Jobs is clicked, and the request its values make
    server = worker.Server(io.BytesIO(), tmp_path)
    server.handle({"id": 1, "op": "dialog", "args": {"command": "jobs", "options": None}})
    dialog = json.loads(server.out.getvalue().splitlines()[-1])["result"]["dialog"]
    job_field, action_field = dialog["fields"][:2]
    assert job_field["default"] == job_field["choices"][0] == f"{cli_job.id}: run on local (done)"
    assert action_field["default"] == "fetch"  # the newest job is done
    values = {"job": job_field["default"], "action": "refresh"}
    server.handle({"id": 2, "op": "jobs", "args": {"values": values}})
    reply = json.loads(server.out.getvalue().splitlines()[-1])["result"]
    row = reply["table"][-1]
    assert (row["ID"], row["Host"], row["Kind"], row["State"]) == (cli_job.id, "local", "run", "done")
    assert "open" not in reply and not result.exists()  # refresh fetches nothing
    server.handle({"id": 3, "op": "dialog", "args": {"command": "run", "options": None}})
    run_dialog = json.loads(server.out.getvalue().splitlines()[-1])["result"]["dialog"]
    host = next(f for f in run_dialog["fields"] if f["label"] == "Host")
    assert host["choices"] == ["this computer", "local"]  # the servers of deepimagej remote

    proc = _batch(
        ij_jar,
        imagej_dir,
        display,
        models,
        tmp_path / "a.ijm",
        f'open("{crop}");\nid = getImageID();\n'
        f'run("DeepImageJ Run", "{RUN}");\nsaveAs("Tiff", "{tmp_path}/here.tif");\n'
        f'selectImage(id);\nrun("DeepImageJ Run", "{RUN} host=local");\nsaveAs("Tiff", "{tmp_path}/there.tif");\n'
        f'selectImage(id);\nrun("DeepImageJ Run", "{RUN} host=local detach");\n'
        'run("DeepImageJ Jobs", "action=refresh");\n'
        f'run("DeepImageJ Jobs", "action=fetch job={cli_job.id}");\n'
        'print("title=" + getTitle());\n'
        f'saveAs("Tiff", "{tmp_path}/opened.tif");\n',
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    here = tifffile.imread(tmp_path / "here.tif")
    assert here.dtype == np.uint16 and here.max() > 0  # labels of the bundle's post-processing macro
    assert np.array_equal(tifffile.imread(tmp_path / "there.tif"), here)
    detached = remote.jobs(refresh=False)[-1]
    assert detached.id != cli_job.id and "[DeepImageJ] job" in proc.stdout and "runs on local" in proc.stdout
    assert f"[DeepImageJ Jobs] {cli_job.id}: run on local: done" in proc.stdout, proc.stdout
    assert f"[DeepImageJ Jobs] job {cli_job.id}: result opened as 'probabilities.tif'" in proc.stdout
    assert "title=probabilities.tif" in proc.stdout
    downloaded = tifffile.imread(result)  # the command fetched it
    assert downloaded.dtype == np.float32 and downloaded.min() >= 0 and downloaded.max() <= 1
    assert np.array_equal(tifffile.imread(tmp_path / "opened.tif"), downloaded)

    # the detached run, fetched later: post-processed here, as without detach
    assert remote.follow(detached.id, fetch_result=False).state == "done"
    proc = _batch(
        ij_jar,
        imagej_dir,
        display,
        models,
        tmp_path / "b.ijm",
        f'run("DeepImageJ Jobs", "action=fetch job={detached.id}");\nsaveAs("Tiff", "{tmp_path}/fetched.tif");\n',
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert np.array_equal(tifffile.imread(tmp_path / "fetched.tif"), here)

    proc = _batch(
        ij_jar, imagej_dir, display, models, tmp_path / "c.ijm", 'run("DeepImageJ Jobs", "action=fetch");\n'
    )
    assert "DeepImageJ Jobs: action=fetch needs job=ID (the ID column of the table)" in proc.stderr

    # U-Net Train on the server: the current image and the ROI Manager's ROIs go up, the bundle comes back
    out = tmp_path / "blob-unet"
    train = (
        "data=[current image + ROI Manager] task=auto name=blobs epochs=1 steps=4 tile=64 depth=2 features=4"
    )
    proc = _batch(
        ij_jar,
        imagej_dir,
        display,
        models,
        tmp_path / "d.ijm",
        BLOBS + f'run("U-Net Train", "{train} output=[{out}] host=local");\n',
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert load_bundle(out).name == "blobs"
    assert "[U-Net Train] local: epoch" in proc.stdout and "one annotated image" in proc.stdout, proc.stdout
    assert remote.jobs(refresh=False)[-1].kind == "train"
    proc = _batch(
        ij_jar,
        imagej_dir,
        display,
        models,
        tmp_path / "e.ijm",
        BLOBS + f'run("U-Net Train", "{train} output=[{tmp_path / "x"}] host=nowhere");\n',
    )
    assert "no host named 'nowhere'" in proc.stderr, proc.stderr


def test_imagej_exit_stops_its_worker(gui):
    worker = int(gui.results()["pid3"])
    shared = [
        p for p in Path("/dev/shm").glob("deepimagej-*") if (p / "owner.pid").read_text() == str(gui.proc.pid)
    ]
    assert _alive(worker) and len(shared) == 1
    gui.proc.send_signal(signal.SIGKILL)  # no shutdown hook: the worker sees its stdin close
    gui.proc.wait(10)
    _wait_for(lambda: not _alive(worker), 10, "the worker to exit after ImageJ was killed")
    assert not shared[0].exists()  # the worker removed the image files


def test_unet_train_from_the_roi_manager_then_run(display, ij_jar, imagej_dir, models, tmp_path):
    """U-Net Train in the plugin: the current image and the ROI Manager's ROIs go to the worker, which trains."""
    from deepimagej.bundle import load_bundle

    out = tmp_path / "blob-unet"
    macro = tmp_path / "train.ijm"
    macro.write_text(
        BLOBS
        + f'run("U-Net Train", "data=[current image + ROI Manager] task=auto output=[{out}] name=blobs '
        + 'epochs=1 steps=4 tile=64 depth=2 features=4");\n'
        + f'run("DeepImageJ Run", "model=[{out}] format=Tensorflow tile=96,96 logging=normal");\n'
        + f'saveAs("Tiff", "{tmp_path}/labels.tif");\n'
    )
    proc = subprocess.run(
        _imagej(ij_jar, imagej_dir, "-batch", macro),
        env=_env(display, models),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert "[U-Net Train] one annotated image" in proc.stdout, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "[U-Net Train] segmentation: 1 image(s) from cells" in proc.stdout and "epoch 1/1" in proc.stdout
    assert "bundle written to" in proc.stdout, proc.stdout[-2000:] + proc.stderr[-2000:]
    spec = load_bundle(out)
    assert spec.name == "blobs" and "segmentation" in spec.tags
    import tifffile

    labels = tifffile.imread(
        tmp_path / "labels.tif"
    )  # the model, then the bundle's own post-processing macro
    assert labels.shape == (96, 96) and labels.dtype == np.uint16


def test_install_model_and_explore_in_batch_mode(
    display, ij_jar, imagej_dir, pancreatic_bundle, pancreatic_zip, tmp_path
):
    bundle_zip = pancreatic_zip
    installed = tmp_path / "models"
    macro = tmp_path / "install.ijm"
    macro.write_text(
        f'run("DeepImageJ Install Model", "source=[{bundle_zip}] models=[{installed}]");\n'
        f'run("DeepImageJ Explore", "model=[{installed}/unet-pancreatic]");\n'
        'run("DeepImageJ Explore", "");\n'
    )
    proc = subprocess.run(
        _imagej(ij_jar, imagej_dir, "-batch", macro),
        env=_env(display, installed),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert (
        f"[DeepImageJ] installed '{pancreatic_bundle.name}' in {installed}/unet-pancreatic" in proc.stdout
    ), proc.stdout[-2000:] + proc.stderr[-2000:]
    assert f"Model: {pancreatic_bundle.name}" in proc.stdout and "example image: exampleImage" in proc.stdout
    assert f"[DeepImageJ] {pancreatic_bundle.name}  ({installed}/unet-pancreatic)" in proc.stdout
    assert (installed / "unet-pancreatic" / "rdf.yaml").is_file() and not proc.stderr.strip()


def test_imagej_command_opens_the_window_with_the_plugin(display, ij_jar, tmp_path):
    _need("xdotool")
    home = tmp_path / "home"
    env = dict(os.environ, DISPLAY=display, PYTHONPATH=str(REPO / "python"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "deepimagej", "imagej", "--folder", str(home)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )

    def window() -> bool:
        found = subprocess.run(
            ["xdotool", "search", "--name", "^ImageJ$"], env=env, capture_output=True, text=True, check=False
        )
        return bool(found.stdout.strip())

    try:
        _wait_for(window, 120, "the ImageJ window", proc)
        assert (home / "plugins" / "DeepImageJ_Python.jar").is_file()
        assert (home / "plugins" / "DeepImageJ_Python.json").is_file()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
    without = dict(env)
    without.pop("DISPLAY")
    refused = subprocess.run(
        [sys.executable, "-m", "deepimagej", "imagej", "--folder", str(home)],
        env=without,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert refused.returncode == 2 and "no display" in refused.stderr
