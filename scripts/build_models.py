"""Build the example bundles shipped in ``bundles/`` from real material in ``../shared/assets``.

``make models`` runs this. It (re)builds:

- ``bundles/unet-pancreatic``: the DeepImageJ pancreatic-cell U-Net (:func:`deepimagej.examples.build_pancreatic`);
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
sys.path.insert(0, str(REPO / "python"))
ASSETS = REPO.parent / "shared" / "assets"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", choices=["pancreatic", "isbi", "detection"], action="append")
    args = parser.parse_args()
    only = set(args.only or ["pancreatic", "isbi", "detection"])
    if not ASSETS.is_dir():
        sys.exit(f"error: {ASSETS} not found: the example models are built from ../shared/assets")
    if "pancreatic" in only:
        from deepimagej.examples import build_pancreatic

        out = REPO / "bundles" / "unet-pancreatic"
        start = time.perf_counter()
        spec = build_pancreatic(ASSETS / "unet_pancreatic", out)
        print(f"built {out} ({spec.name}) in {time.perf_counter() - start:.1f} s")
    for name, script in (("isbi", "train_isbi.py"), ("detection", "train_detection.py")):
        if name in only and (REPO / "scripts" / script).exists():
            subprocess.run([sys.executable, str(REPO / "scripts" / script)], check=True)


if __name__ == "__main__":
    main()
