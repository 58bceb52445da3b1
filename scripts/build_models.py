"""Build the example bundles shipped in ``bundles/`` from real material in ``../shared/assets``.

``make models`` runs this. It (re)builds:

- ``bundles/unet-pancreatic``: the DeepImageJ pancreatic-cell U-Net (Keras 2.3 ``.h5``) exported as a
  TensorFlow SavedModel bundle with its bioimage.io pre/post-processing (min-max scaling, binarize 0.5),
  its DeepImageJ ImageJ macros (from the original 2020 bundle) and its example image/result.
- the U-Net plugin bundles (ISBI 2012 segmentation / detection), by scripts/train_isbi.py and
  scripts/train_detection.py (long: see their own docs).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ASSETS = REPO.parent / "shared" / "assets"


def build_pancreatic(out: Path) -> None:
    from deepimagej.bundle.build import build_bundle

    src = ASSETS / "unet_pancreatic"
    start = time.perf_counter()
    spec = build_bundle(
        src / "unet_pancreatic_cell_segmentation.h5",
        out,
        name="Pancreatic Cell Segmentation (U-Net)",
        rdf_template=src / "rdf.yaml",
        preprocessing_macros=[src / "bundle_2020" / "preprocessing.txt"],
        postprocessing_macros=[src / "bundle_2020" / "postprocessing.txt"],
        example_image=src / "exampleImage.tif",
        example_axes="yx",
        documentation=(src / "README.md").read_text(encoding="utf-8")
        + "\n\nModel: Ignacio Arganda-Carreras / DeepImageJ, BSD-2-Clause (bioimage-io/spec-bioimage-io "
        "example_specs/models/unet2d_keras_tf; deepimagej/models u-net_pancreatic_segmentation). "
        "Data: Cell Tracking Challenge PhC-C2DL-PSC. Re-exported by deepimagej-py `scripts/build_models.py`.\n",
        overwrite=True,
    )
    print(f"built {out} ({spec.name}) in {time.perf_counter() - start:.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=["pancreatic", "isbi", "detection"], action="append")
    args = parser.parse_args()
    only = set(args.only or ["pancreatic", "isbi", "detection"])
    if not ASSETS.is_dir():
        sys.exit(f"error: {ASSETS} not found: the example models are built from ../shared/assets")
    if "pancreatic" in only:
        build_pancreatic(REPO / "bundles" / "unet-pancreatic")
    for name, script in (("isbi", "train_isbi.py"), ("detection", "train_detection.py")):
        if name in only and (REPO / "scripts" / script).exists():
            subprocess.run([sys.executable, str(REPO / "scripts" / script)], check=True)


if __name__ == "__main__":
    main()
