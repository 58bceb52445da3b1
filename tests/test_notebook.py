"""notebooks/deepimagej_imagej.ipynb runs top to bottom (nbclient) and finds the same labels as Python."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "deepimagej_imagej.ipynb"


@pytest.mark.imagej
@pytest.mark.slow
def test_notebook_runs_and_matches(tmp_path, assets):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("jpype")
    if not (REPO / "bundles" / "unet-pancreatic").is_dir():
        pytest.skip("bundles/unet-pancreatic not built")
    import tifffile

    nb = nbformat.read(NOTEBOOK, as_version=4)
    env_path = os.environ.get("PYTHONPATH", "")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO / "python"), env_path) if p)
    try:
        client = nbclient.NotebookClient(
            nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
        )
        # the kernel starts in tmp_path: tell the notebook where the repository is
        nb.cells.insert(0, nbformat.v4.new_code_cell(f"import os; os.chdir({str(REPO / 'notebooks')!r})"))
        client.execute()
    finally:
        os.environ["PYTHONPATH"] = env_path
    labels = np.load(REPO / "notebooks" / "notebook_labels.npy")
    (REPO / "notebooks" / "notebook_labels.npy").unlink()
    ref = tifffile.imread(assets / "unet_pancreatic" / "bundle_2020" / "resultImage.tiff")
    n = len(np.unique(labels)) - 1
    assert abs(n - 372) <= 0.03 * 372
    assert ((labels > 0) == (ref > 0)).mean() >= 0.97
    outputs = "".join(
        str(o.get("text", "")) for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
    )
    assert "cells:" in outputs
