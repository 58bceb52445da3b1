"""The example bundles shipped in ``bundles/``, rebuilt from their original material (``make models``).

* :func:`build_pancreatic`: the DeepImageJ pancreatic-cell U-Net (a Keras 2.3 ``.h5``) exported as a
  TensorFlow SavedModel bundle with its bioimage.io pre/post-processing (min-max scaling, binarize
  0.5), its DeepImageJ ImageJ macros (from the original 2020 bundle) and its example image/result.

The U-Net plugin's bundles (ISBI 2012 segmentation and detection) are trained, not converted:
``scripts/train_isbi.py`` and ``scripts/train_detection.py`` drive :mod:`deepimagej.unet` for them.
"""

from __future__ import annotations

from pathlib import Path

from deepimagej.bundle.spec import ModelSpec
from deepimagej.errors import BundleError
from deepimagej.export import build_bundle

__all__ = ["PANCREATIC_CREDIT", "build_pancreatic"]

#: Where the pancreatic model and its data come from (appended to its documentation).
PANCREATIC_CREDIT = (
    "Model: Ignacio Arganda-Carreras / DeepImageJ, BSD-2-Clause (bioimage-io/spec-bioimage-io "
    "example_specs/models/unet2d_keras_tf; deepimagej/models u-net_pancreatic_segmentation). "
    "Data: Cell Tracking Challenge PhC-C2DL-PSC. Re-exported by deepimagej-py `scripts/build_models.py`."
)


def build_pancreatic(source: str | Path, out: str | Path) -> ModelSpec:
    """The pancreatic-cell U-Net bundle from its original files.

    Args:
        source: the folder of the original model (``unet_pancreatic`` of the shared assets):
            ``unet_pancreatic_cell_segmentation.h5``, ``rdf.yaml``, ``exampleImage.tif``, ``README.md``
            and ``bundle_2020/{preprocessing,postprocessing}.txt``.
        out: the bundle folder to write (replaced).

    Returns:
        The spec of the written bundle.

    Raises:
        BundleError: a source file is missing.
    """
    src = Path(source)
    files = [
        src / "unet_pancreatic_cell_segmentation.h5",
        src / "rdf.yaml",
        src / "exampleImage.tif",
        src / "README.md",
        src / "bundle_2020" / "preprocessing.txt",
        src / "bundle_2020" / "postprocessing.txt",
    ]
    missing = [f for f in files if not f.is_file()]
    if missing:
        raise BundleError(
            f"{missing[0]}: not found; the pancreatic bundle is built from the original model's files"
        )
    return build_bundle(
        files[0],
        out,
        name="Pancreatic Cell Segmentation (U-Net)",
        rdf_template=files[1],
        preprocessing_macros=[files[4]],
        postprocessing_macros=[files[5]],
        example_image=files[2],
        example_axes="yx",
        documentation=files[3].read_text(encoding="utf-8") + "\n\n" + PANCREATIC_CREDIT + "\n",
        overwrite=True,
    )
