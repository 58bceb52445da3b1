"""Tiling overhead, throughput and memory of ``deepimagej.predict.run`` (``make bench``).

Measured in one process, on a 2048x2048 image (the pancreatic example image mirrored up to
that size), each figure against a baseline taken in the same run:

(a) pancreatic U-Net (TF SavedModel bundle): ``predict.run`` with its default tiling and with
    512-pixel tiles / ONE direct call of the same SavedModel signature on the whole
    mirror-padded image (the floor: no tiling, no pre/post-processing);
(b) throughput in megapixels per second of the default run;
(c) peak RSS increase during the run (kernel VmHWM, reset before the run) / input size;
(d) nuclei U-Net (ONNX, fixed 512x512 input, halo 32): ``predict.run`` / a plain loop calling
    onnxruntime directly on the same tiles.

The last line printed is one JSON object (keys ``tiling_overhead``, ``mpix_per_s``,
``peak_rss_over_input``, ``onnx_overhead``, ...) so that runs can be compared.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
ASSETS = REPO.parent / "shared" / "assets"
SIZE = 2048
REPEATS = 3


def _best_of(fn, repeats: int = REPEATS) -> float:  # noqa: ANN001
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def _status(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _reset_peak() -> None:
    """Reset the kernel's peak-RSS counter (VmHWM) of this process (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        pass


def _big_image() -> np.ndarray:
    from deepimagej.io import read_image

    base = read_image(ASSETS / "unet_pancreatic" / "exampleImage.tif").array
    reps = (-(-SIZE // base.shape[0]), -(-SIZE // base.shape[1]))
    tiled = np.pad(base, [(0, reps[0] * base.shape[0] - base.shape[0]), (0, reps[1] * base.shape[1] - base.shape[1])], mode="symmetric")
    return np.ascontiguousarray(tiled[:SIZE, :SIZE])


def bench_pancreatic(bundle: Path, image: np.ndarray) -> dict[str, float]:
    from deepimagej import ops, predict, tiling
    from deepimagej.bundle import load_bundle
    from deepimagej.engines import load_engine

    spec = load_bundle(bundle)
    engine = load_engine(spec.runnable_weights()[0])
    halo = 47
    valid = SIZE + 2 * halo + (-(SIZE + 2 * halo)) % 8
    pre = ops.apply_processing(image[None, :, :, None], "byxc", spec.inputs[0].processing)
    lo = halo
    hi = valid - SIZE - halo
    padded = tiling.mirror_pad(np.asarray(pre, dtype=np.float32), [(0, 0), (lo, hi), (lo, hi), (0, 0)])
    engine(padded)  # warm-up (graph tracing, memory pools)
    floor = _best_of(lambda: engine(padded))

    predict.run(spec, image, axes="yx")  # warm-up for every shape the default plan uses
    rss_before = _status("VmRSS")
    _reset_peak()
    default = _best_of(lambda: predict.run(spec, image, axes="yx"))
    peak_increase = max(_status("VmHWM") - rss_before, 0)
    predict.run(spec, image, axes="yx", tile={"y": 512, "x": 512})
    t512 = _best_of(lambda: predict.run(spec, image, axes="yx", tile={"y": 512, "x": 512}))
    plan = tiling.plan_for_spec(spec, {"y": SIZE, "x": SIZE}, None, max_tile=predict.default_max_tile("yx"))
    rss_before = _status("VmRSS")
    _reset_peak()
    predict.run(spec, image, axes="yx", tile={"y": 512, "x": 512})
    peak_512 = max(_status("VmHWM") - rss_before, 0)
    return {
        "floor_s": floor,
        "default_s": default,
        "default_tiles": plan.n_tiles,
        "tile512_s": t512,
        "tiling_overhead": default / floor,
        "tiling_overhead_512": t512 / floor,
        "mpix_per_s": SIZE * SIZE / 1e6 / default,
        "peak_rss_over_input": peak_increase / image.nbytes,
        "peak_rss_over_input_float32": peak_increase / (image.size * 4),
        "peak_rss_over_input_512": peak_512 / image.nbytes,
    }


def bench_onnx(image: np.ndarray) -> dict[str, float]:
    from deepimagej import ops, predict, tiling
    from deepimagej.bundle import load_bundle
    from deepimagej.engines import load_engine

    spec = load_bundle(ASSETS / "bioimageio_unet2d_nuclei_broad" / "bioimageio.yaml")
    weights = spec.weights["onnx"]
    engine = load_engine(weights)
    session = engine.session
    name = session.get_inputs()[0].name
    img = image.astype(np.float32)
    plan = tiling.plan_for_spec(spec, {"y": SIZE, "x": SIZE}, None)
    pre = ops.apply_processing(img[None, None], "bcyx", spec.inputs[0].processing)

    def raw_loop() -> None:
        padded = tiling.mirror_pad(pre, [(0, 0), (0, 0)] + list(zip(plan.pad_before, plan.pad_after)))
        out = np.empty((1, 1, SIZE, SIZE), np.float32)
        for t in plan.tiles:
            x = np.ascontiguousarray(padded[(0, slice(None), *t.input_slices)][None])
            y = session.run(None, {name: x})[0]
            out[(0, slice(None), *t.target_slices)] = y[(0, slice(None), *t.output_slices)]

    raw_loop()
    raw = _best_of(raw_loop)
    predict.run(spec, image, axes="yx", weights_format="onnx")
    ours = _best_of(lambda: predict.run(spec, image, axes="yx", weights_format="onnx"))
    return {"onnx_raw_s": raw, "onnx_run_s": ours, "onnx_tiles": plan.n_tiles, "onnx_overhead": ours / raw}


def main() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    bundle = REPO / "bundles" / "unet-pancreatic"
    if not bundle.is_dir() or not ASSETS.is_dir():
        sys.exit("error: needs bundles/unet-pancreatic (make models) and ../shared/assets")
    image = _big_image()
    print(f"image {image.shape} {image.dtype}, {os.cpu_count()} cores")
    results = bench_pancreatic(bundle, image)
    print(f"pancreatic U-Net: one untiled SavedModel call {results['floor_s']:.2f} s; "
          f"predict.run default ({results['default_tiles']} tiles) {results['default_s']:.2f} s "
          f"-> overhead {results['tiling_overhead']:.3f}x; 512-px tiles {results['tile512_s']:.2f} s "
          f"-> {results['tiling_overhead_512']:.3f}x (DeepImageJ paper: 3.2x)")
    print(f"throughput {results['mpix_per_s']:.2f} Mpix/s; peak RSS increase / input size: default tiles "
          f"{results['peak_rss_over_input']:.0f}x (uint8 input; {results['peak_rss_over_input_float32']:.0f}x its float32), "
          f"512-px tiles {results['peak_rss_over_input_512']:.0f}x")
    results.update(bench_onnx(image))
    print(f"nuclei U-Net ONNX: raw onnxruntime tile loop {results['onnx_raw_s']:.2f} s, predict.run "
          f"{results['onnx_run_s']:.2f} s ({results['onnx_tiles']} tiles) -> overhead {results['onnx_overhead']:.3f}x")
    print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in results.items()}))


if __name__ == "__main__":
    main()
