"""ImageJ front door vs direct Python call, ImageJ start-up, numpy <-> ImagePlus speed (a note, not a test).

    PYTHONPATH=python .venv/bin/python benchmarks/bench_imagej.py [--size 2048] [--repeat 3]

Prints: JVM + ImageJ start time; conversion MB/s both ways on a 4096x4096 float32 image; the
pancreatic bundle on a size x size image run through run("DeepImageJ Run") in a macro vs
deepimagej.predict.run on the same numpy array (same macros-free settings), as a ratio.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    t0 = time.perf_counter()
    from deepimagej.imagej import start
    from deepimagej.imagej.convert import from_imageplus, to_imageplus

    ij = start()
    print(f"JVM + ImageJ {ij.version} start: {time.perf_counter() - t0:.2f} s")

    big = np.random.default_rng(0).random((4096, 4096), dtype=np.float32)
    mb = big.nbytes / 1e6
    t_in = best(lambda: to_imageplus(big), args.repeat)
    imp = to_imageplus(big)
    t_out = best(lambda: from_imageplus(imp), args.repeat)
    print(
        f"numpy -> ImagePlus: {mb / t_in:.0f} MB/s; ImagePlus -> numpy: {mb / t_out:.0f} MB/s "
        f"(4096x4096 float32; numpy copy: {mb / best(big.copy, args.repeat):.0f} MB/s)"
    )

    bundle = REPO / "bundles" / "unet-pancreatic"
    if not bundle.is_dir():
        print(f"{bundle} missing: skipping the model comparison")
        return
    from deepimagej import predict
    from deepimagej.bundle import load_bundle

    spec = load_bundle(bundle)
    image = np.random.default_rng(1).random((args.size, args.size), dtype=np.float32)
    # warm both paths (model load, graph tracing)
    predict.run(spec, image[:256, :256], axes="yx")
    options = "preprocessing=[no preprocessing] postprocessing=[no postprocessing] logging=none"
    ij.run_bundle(bundle, image[:256, :256], options)
    t_py = best(lambda: predict.run(spec, image, axes="yx"), args.repeat)
    t_ij = best(lambda: ij.run_bundle(bundle, image, options), args.repeat)
    print(
        f'{args.size}x{args.size}: direct Python {t_py:.2f} s; macro run("DeepImageJ Run") {t_ij:.2f} s; '
        f"ratio {t_ij / t_py:.3f} (goal <= 1.05)"
    )


if __name__ == "__main__":
    main()
