"""notebooks/unet_training.ipynb runs from top to bottom (nbclient, a real kernel)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "unet_training.ipynb"


@pytest.mark.skipif(
    not (REPO / "bundles" / "isbi2012-em-unet" / "rdf.yaml").is_file(),
    reason="bundles/isbi2012-em-unet not built (make models)",
)
def test_unet_training_notebook_executes(assets, tmp_path):
    pytest.importorskip("tensorflow")
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    env_path = os.environ.get("PYTHONPATH", "")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO / "python"), env_path) if p)
    try:
        client = nbclient.NotebookClient(
            nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(REPO / "notebooks")}}
        )
        client.execute()
    finally:
        os.environ["PYTHONPATH"] = env_path
    outputs = "".join(
        o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
    )
    assert "pixel_accuracy" in outputs and "best validation loss" in outputs
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
