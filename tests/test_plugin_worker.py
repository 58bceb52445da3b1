"""The plugin's Python side without Java: ImageJ's plane layout, images in mapped files, the dialogs'
descriptions, the worker's requests (in this process and as its own process), installing bundles.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from deepimagej.errors import BundleError, MacroError
from deepimagej.imagej.commands import dialogs
from deepimagej.imagej.commands.options import RunOptions
from deepimagej.imagej.hyperstack import from_planes, to_planes
from deepimagej.imagej.plugin import protocol, worker

REPO = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------ layout and mapped files
@pytest.mark.parametrize("dtype", ["uint8", "uint16", "int16", "float32"])
@pytest.mark.parametrize("axes", ["yx", "zyx", "cyx", "tczyx", "yxc", "zcyx"])
def test_planes_round_trip(dtype, axes):
    rng = np.random.default_rng(0)
    shape = {"t": 2, "c": 3, "z": 4, "y": 5, "x": 6}
    a = rng.integers(-100 if dtype == "int16" else 0, 200, [shape[ax] for ax in axes]).astype(dtype)
    planes, layout = to_planes(a, axes)
    assert planes.shape == (layout.n_planes, 5, 6)
    back, back_axes = from_planes(planes, layout)
    expected = np.transpose(a, [axes.index(ax) for ax in back_axes])  # ImageJ's own axis order: t c z y x
    assert back.dtype == a.dtype and np.array_equal(back, expected)


def test_planes_rgb_and_bool():
    rgb = np.random.default_rng(1).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    planes, layout = to_planes(rgb, "yxc", rgb=True)
    assert layout.rgb and planes.dtype == np.int32 and layout.channels == 1
    back, axes = from_planes(planes, layout)
    assert axes == "yxc" and np.array_equal(back, rgb)
    mask = np.eye(4, dtype=bool)
    planes, layout = to_planes(mask)
    assert np.array_equal(planes[0], mask.astype(np.uint8) * 255)


def test_shared_files_round_trip_without_copy(tmp_path):
    image = np.random.default_rng(2).random((3, 2, 20, 30), dtype=np.float32)  # c z y x
    cal = {"x": 0.25, "y": 0.5, "z": 2.0, "unit": "micron"}
    desc = protocol.write_image(image, "czyx", tmp_path / "a.raw", title="cells", calibration=cal)
    assert (desc["channels"], desc["slices"], desc["frames"], desc["dtype"]) == (3, 2, 1, "float32")
    assert (tmp_path / "a.raw").stat().st_size == image.nbytes  # the pixels only, nothing else
    shared = protocol.read_image(json.loads(json.dumps(desc)))
    assert shared.axes == "czyx" and np.array_equal(shared.array, image)
    assert shared.calibration == cal and shared.title == "cells"
    assert not shared.array.flags.owndata  # a view of the mapped file, not a copy
    with pytest.raises(ValueError):
        shared.array[0, 0, 0, 0] = 1  # read-only: the worker never writes into ImageJ's image
    desc["height"] = 40
    with pytest.raises(Exception, match="shorter than"):
        protocol.read_image(desc)


# ------------------------------------------------------------------ dialogs
def test_run_dialog_values_give_options_that_run_reads():
    dialog = dialogs.run_dialog(["unet-pancreatic", "other"])
    values = {
        "Model": "other",
        "Format": "ONNX",
        "Preprocessing": "no preprocessing",
        "Postprocessing": "post.ijm",
        "Tile": "256,256",
        "Logging": "verbose",
    }
    opts = RunOptions.parse(dialog.options(values))
    assert (opts.model, opts.weights_format, opts.preprocessing, opts.postprocessing) == (
        "other",
        "onnx",
        [],
        ["post.ijm"],
    )
    assert opts.tile == {"y": 256, "x": 256} and opts.logging == "verbose"
    spec = dialog.to_json()
    assert [f["label"] for f in spec["fields"] if f["kind"] != "message"] == list(values)
    with pytest.raises(MacroError, match="not a valid choice for Model"):
        dialog.options({**values, "Model": "missing"})


def test_train_dialog_reads_macro_options_as_imagej_does():
    settings = dialogs.train_dialog().values_from_options(
        "data=folders images=[/a b] epochs=3 learning_rate=0.01"
    )
    assert settings["data"] == "folders" and settings["images"] == "/a b"
    assert (
        settings["epochs"] == 3 and isinstance(settings["epochs"], int) and settings["learning_rate"] == 0.01
    )
    assert settings["steps"] == 50 and settings["task"] == "auto"  # defaults for the keys not given
    with pytest.raises(MacroError, match="epochs=many is not a number"):
        dialogs.train_dialog().values_from_options("epochs=many")


# ------------------------------------------------------------------ the worker's requests, in this process
def _serve(server: worker.Server, op: str, args: dict, job_id: int = 1) -> list[dict]:
    server.out.seek(0)
    server.out.truncate()
    server.handle({"id": job_id, "op": op, "args": args})
    return [json.loads(line) for line in server.out.getvalue().splitlines()]


@pytest.fixture
def server(tmp_path, pancreatic_bundle, monkeypatch):
    monkeypatch.setenv("DEEPIMAGEJ_MODELS", str(pancreatic_bundle.root.parent))
    return worker.Server(io.BytesIO(), tmp_path)


def test_worker_describes_dialogs_and_prepares_runs(server, pancreatic_bundle):
    reply = _serve(server, "dialog", {"command": "run", "options": None})[-1]
    model = next(f for f in reply["result"]["dialog"]["fields"] if f["label"] == "Model")
    assert reply["type"] == "result" and model["default"] == "unet-pancreatic"
    assert _serve(server, "dialog", {"command": "run", "options": "model=x"})[-1]["result"] == {
        "dialog": None
    }
    assert _serve(server, "dialog", {"command": "train", "options": "epochs=2"})[-1]["result"]["dialog"]
    job = _serve(
        server, "run.prepare", {"options": "model=[unet-pancreatic] preprocessing=[preprocessing.txt]"}
    )
    job = job[-1]["result"]
    assert job["model"] == str(pancreatic_bundle.root) and [m["name"] for m in job["preprocessing"]] == [
        "preprocessing.txt"
    ]
    assert not job["apply_preprocessing"] and job["apply_postprocessing"] is False  # the bundle's own macro
    values = {
        "model": "unet-pancreatic",
        "format": "default",
        "preprocessing": "no preprocessing",
        "postprocessing": "no postprocessing",
        "tile": "",
        "logging": "none",
    }
    job = _serve(server, "run.prepare", {"values": values})[-1]["result"]
    assert job["preprocessing"] == [] and not job["apply_preprocessing"] and job["logging"] == "none"


def test_worker_errors_are_one_line(server):
    reply = _serve(server, "run.prepare", {"options": "model=[nope]"}, job_id=7)[-1]
    assert reply["type"] == "error" and reply["id"] == 7 and reply["kind"] == "BundleError"
    assert "model 'nope' not found" in reply["message"] and "\n" not in reply["message"]
    reply = _serve(server, "no.such.op", {})[-1]
    assert reply["type"] == "error" and "install-plugin" in reply["message"]


def test_worker_run_and_cancel(server, pancreatic_bundle, tmp_path):
    import deepimagej

    image = np.random.default_rng(3).random((256, 256), dtype=np.float32)
    desc = protocol.write_image(image, "yx", tmp_path / "input-0.raw", title="noise", calibration={"x": 2.0})
    job = _serve(
        server,
        "run.prepare",
        {
            "options": "model=[unet-pancreatic] preprocessing=[no preprocessing] "
            "postprocessing=[no postprocessing] tile=128,128"
        },
    )[-1]["result"]
    messages = _serve(server, "run", {"job": job, "inputs": {"input": desc}})
    result = messages[-1]["result"]["outputs"]
    out = protocol.read_image(next(iter(result.values())))
    expected = deepimagej.run(
        pancreatic_bundle,
        image,
        axes="yx",
        tile={"y": 128, "x": 128},
        apply_preprocessing=False,
        apply_postprocessing=False,
    )
    np.testing.assert_allclose(out.array, expected, atol=1e-6)
    assert out.calibration == {"x": 2.0} and out.title == "Output probability"
    assert any(m["type"] == "progress" for m in messages) and any(
        "tile(s) in" in m.get("text", "") for m in messages
    )
    # cancel: the plugin's "cancel" arrives while the job runs; the job stops at its next progress
    server.out.seek(0)
    server.out.truncate()
    reader = threading.Thread(
        target=server.handle, args=({"id": 9, "op": "run", "args": {"job": job, "inputs": {"input": desc}}},)
    )
    reader.start()
    while server.current is None or server.current.id != 9:
        time.sleep(0.001)
    server.current.cancelled.set()
    reader.join(60)
    reply = json.loads(server.out.getvalue().splitlines()[-1])
    assert reply == {"type": "error", "id": 9, "kind": "Cancelled", "message": "canceled (Esc)"}


# ------------------------------------------------------------------ the worker process
def test_worker_process_speaks_first_serves_and_exits_when_stdin_closes(tmp_path):
    import deepimagej

    shared = tmp_path / "shared"
    shared.mkdir()
    env = dict(os.environ, PYTHONPATH=str(REPO / "python"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "deepimagej", "worker", "--shared-dir", str(shared)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    hello = json.loads(proc.stdout.readline())
    assert hello == {
        "type": "hello",
        "protocol": protocol.PROTOCOL,
        "version": deepimagej.__version__,
        "pid": proc.pid,
        "python": sys.version.split()[0],
    }
    proc.stdin.write(protocol.encode({"id": 1, "op": "status", "args": {}}))
    proc.stdin.flush()
    reply = json.loads(proc.stdout.readline())
    assert (
        reply["type"] == "result" and reply["result"]["pid"] == proc.pid and reply["result"]["loaded"] == []
    )
    proc.stdin.close()  # ImageJ quit (or was killed): the pipe closes
    assert proc.wait(10) == 0 and not shared.exists()


# ------------------------------------------------------------------ installing bundles
def test_install_model_from_zip_and_refusals(pancreatic_bundle, pancreatic_zip, tmp_path):
    from deepimagej.imagej.models import install_model

    good = pancreatic_zip
    models = tmp_path / "models"
    spec = install_model(good, models)
    assert spec.root == models / "unet-pancreatic" and spec.name == pancreatic_bundle.name
    with pytest.raises(BundleError, match="already installed"):
        install_model(good, models)
    for name, entry in (("escape", "../evil.txt"), ("absolute", "/tmp/evil.txt")):
        bad = tmp_path / f"{name}.zip"
        with zipfile.ZipFile(bad, "w") as zf:
            zf.writestr("rdf.yaml", "x")
            zf.writestr(entry, "evil")
        with pytest.raises(BundleError, match="outside the bundle"):
            install_model(bad, models)
    link = tmp_path / "link.zip"
    with zipfile.ZipFile(link, "w") as zf:
        info = zipfile.ZipInfo("rdf.yaml")
        info.external_attr = 0o120777 << 16
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(BundleError, match="is a symbolic link"):
        install_model(link, models)
    assert not (tmp_path / "evil.txt").exists() and sorted(p.name for p in models.iterdir()) == [
        "unet-pancreatic"
    ]
