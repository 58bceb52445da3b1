"""The ImageJ commands with ``host=``: DeepImageJ Run, U-Net Train and DeepImageJ Jobs, through macros.

Real ImageJ 1.x (embedded, Xvfb) and the real OpenSSH server of tests/sshd_server.py: the model
runs (and the U-Net trains) in a job on the server; the bundle's ImageJ macros run here.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import tifffile
from skimage.draw import disk

from deepimagej import remote
from deepimagej.errors import DeepImageJError

pytestmark = pytest.mark.imagej
pytest.importorskip("tensorflow")
BUNDLE = Path(__file__).resolve().parents[1] / "bundles" / "unet-pancreatic"
CENTRES = [(20, 22), (24, 70), (60, 30), (70, 74), (44, 50)]


def cells() -> np.ndarray:
    rng = np.random.default_rng(0)
    image = rng.normal(60, 15, (96, 96))
    for cy, cx in CENTRES:
        rr, cc = disk((cy, cx), 8, shape=image.shape)
        image[rr, cc] += 120
    return np.clip(image, 0, 255).astype(np.uint8)


def test_run_train_and_jobs_with_host_in_macros(ij, sshd, tmp_path):
    from deepimagej.bundle import load_bundle

    if not (BUNDLE / "rdf.yaml").is_file():
        pytest.skip(f"{BUNDLE} not built")
    image = tifffile.imread(BUNDLE / "exampleImage.tif")[:192, :256]
    run = 'run("DeepImageJ Run", "model=[unet-pancreatic] format=Tensorflow{}");'
    here = ij.run_macro(run.format(""), image)
    there = ij.run_macro(run.format(" host=local"), image)
    # the model ran on the server, the bundle's pre/post-processing macros here: the same labels
    assert there.image.dtype == here.image.dtype == np.uint16 and np.array_equal(there.image, here.image)
    assert re.search(r"\[DeepImageJ\] .*output\.tif", there.log) and "on local" in there.log
    assert remote.jobs(refresh=False)[-1].local["origin"]["imagej"] == "run"

    ij.run_macro(run.format(" host=local detach"), image)
    job = remote.jobs(refresh=False)[-1]
    assert job.submitted and not job.fetched
    assert remote.follow(job.id, fetch_result=False).state == "done"
    fetched = ij.run_macro(f'run("DeepImageJ Jobs", "action=fetch job={job.id}");')
    assert np.array_equal(fetched.image, here.image)  # post-processed here, as without detach
    assert f"job {job.id}: result opened" in fetched.log

    out = tmp_path / "blob-unet"
    outlines = 'roiManager("reset");\n' + "".join(
        f'makeOval({cx - 8}, {cy - 8}, 17, 17); roiManager("Add");\n' for cy, cx in CENTRES
    )
    trained = ij.run_macro(
        outlines + f'run("U-Net Train", "data=[current image + ROI Manager] task=auto '
        f'output=[{out}] name=blobs epochs=1 steps=4 tile=64 depth=2 features=4 host=local");\n',
        cells(),
    )
    spec = load_bundle(out)
    assert spec.name == "blobs" and "segmentation" in spec.tags
    assert "[U-Net Train] local: epoch" in trained.log and "one annotated image" in trained.log
    train_job = remote.jobs(refresh=False)[-1]
    assert train_job.kind == "train" and train_job.state == "done"
    again = ij.run_macro(f'run("DeepImageJ Jobs", "action=fetch job={train_job.id}");')
    assert f"bundle installed at {out}" in again.log

    listed = ij.run_macro('run("DeepImageJ Jobs", "action=refresh");')
    for j in (job, train_job):
        assert re.search(rf"\[DeepImageJ Jobs\] {j.id}: {j.kind} on local: done", listed.log), listed.log
    with pytest.raises(DeepImageJError, match="already finished"):
        ij.run_macro(f'run("DeepImageJ Jobs", "action=cancel job={job.id}");')
    with pytest.raises(DeepImageJError, match="no host named 'nowhere'"):
        ij.run_macro(run.format(" host=nowhere"), image)
    with pytest.raises(DeepImageJError, match="no host named 'nowhere'"):
        ij.run_macro(outlines + f'run("U-Net Train", "output=[{tmp_path / "x"}] host=nowhere");', cells())
