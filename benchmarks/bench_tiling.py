"""Speed and memory of ``deepimagej.predict.run`` against plain loops over the same library (``make bench``).

Each configuration runs in its own child process, so that its peak resident memory (VmHWM,
whole process: runtime, model, image, outputs) is its own; times are the best of a few runs
after a warm-up. Ratios compare configurations measured in the same run, on a 2048x2048 image
(the pancreatic example image mirrored up to that size):

pancreatic U-Net (TF SavedModel bundle)
    default   ``predict.run`` with the default plan (memory budget: half the free memory)
    untiled   ONE direct call of the SavedModel signature on the whole pre-processed image
              (2048 is a valid size: no padding; the floor: no tiling, no post-processing)
    untiled_halo  the same call on the image mirror-padded by the halo (47) on every side to a
              valid size, 2144x2144: DeepImageJ's one-patch run (paper Eq. 2), the floor of
              earlier benchmarks
    tile608   ``predict.run`` with 608-pixel tiles
    keras608  a plain loop calling the same SavedModel on the same 608-pixel tiles
    budget1G  ``predict.run(max_memory="1G")``
nuclei U-Net (fixed 512x512 input, halo 32; ONNX and TorchScript weights)
    onnx / onnx_raw               ``predict.run`` / a plain onnxruntime loop on the same 25 tiles
    torchscript / torchscript_raw ``predict.run`` / a plain TorchScript loop (inference_mode)
    onnx_1G                       ``predict.run(max_memory="1G")``
    onnx_ab / torchscript_ab      ``predict.run`` and the plain loop called alternately in ONE
                                  process (their time ratio, free of process-to-process drift)

``--rounds N`` runs the list N times round-robin (each time in fresh processes) and keeps each
configuration's best time and highest peak: on a shared 2-core machine, two processes of the
same code differ by up to 10-15 %, more than the gaps measured here.

The last line printed is one JSON object with every figure, so that runs can be compared.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
ASSETS = REPO.parent / "shared" / "assets"
NUCLEI = ASSETS / "bioimageio_unet2d_nuclei_broad" / "bioimageio.yaml"
SIZE = 2048
REPEATS = 3


def _best_of(fn: Callable[[], object], repeats: int = REPEATS) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def _peak() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def _big_image() -> np.ndarray:
    from deepimagej.io import read_image

    base = read_image(ASSETS / "unet_pancreatic" / "exampleImage.tif").array
    reps = (-(-SIZE // base.shape[0]), -(-SIZE // base.shape[1]))
    tiled = np.pad(
        base,
        [(0, reps[0] * base.shape[0] - base.shape[0]), (0, reps[1] * base.shape[1] - base.shape[1])],
        mode="symmetric",
    )
    return np.ascontiguousarray(tiled[:SIZE, :SIZE])


def _engine(spec, fmt: str):  # noqa: ANN001, ANN202
    from deepimagej.engines import load_engine

    return load_engine(spec.weights[fmt], [t.name for t in spec.inputs], [t.name for t in spec.outputs])


def _pre(spec, image: np.ndarray, axes: str) -> np.ndarray:  # noqa: ANN001
    from deepimagej import ops

    return ops.apply_processing(image, axes, spec.inputs[0].processing)


def _raw_loop(spec, fmt: str, image: np.ndarray, tile: dict[str, int] | None) -> Callable[[], np.ndarray]:  # noqa: ANN001
    """A plain loop: pre-process the whole image, mirror-pad it, call the runtime tile by tile."""
    from deepimagej import tiling

    tensor = spec.inputs[0]
    model_axes = tensor.axis_names
    plan = tiling.plan_for_spec(spec, {"y": SIZE, "x": SIZE}, tile)
    if fmt == "onnx":
        session = _engine(spec, fmt).session
        feed_name = session.get_inputs()[0].name

        def call(x: np.ndarray) -> np.ndarray:
            return session.run(None, {feed_name: x})[0]
    elif fmt == "torchscript":
        import torch

        module = torch.jit.load(str(spec.weights[fmt].path)).eval()

        def call(x: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                return module(torch.from_numpy(x)).numpy()
    else:
        signature, key, out_key = _signature(spec)
        import tensorflow as tf

        def call(x: np.ndarray) -> np.ndarray:
            return signature(**{key: tf.constant(x)})[out_key].numpy()

    def loop() -> np.ndarray:
        pre = _pre(spec, image[None, ..., None] if model_axes == "byxc" else image[None, None], model_axes)
        pad = [(0, 0)] * pre.ndim
        for a, before, after in zip(plan.spatial_axes, plan.pad_before, plan.pad_after):
            pad[model_axes.index(a)] = (before, after)
        padded = tiling.mirror_pad(pre, pad)
        out = np.empty(pre.shape, np.float32)
        for t in plan.tiles:
            index = [slice(None)] * pre.ndim
            target = [slice(None)] * pre.ndim
            source = [slice(None)] * pre.ndim
            for a, s_in, s_out, s_tgt in zip(
                plan.spatial_axes, t.input_slices, t.output_slices, t.target_slices
            ):
                d = model_axes.index(a)
                index[d], source[d], target[d] = s_in, s_out, s_tgt
            y = call(np.ascontiguousarray(padded[tuple(index)]))
            out[tuple(target)] = y[tuple(source)]
        return out

    return loop


def _signature(spec):  # noqa: ANN001, ANN202
    """The bundle's SavedModel ``serving_default`` signature, loaded with TensorFlow directly."""
    import tensorflow as tf

    from deepimagej.engines.tensorflow import saved_model_dir

    loaded = tf.saved_model.load(str(saved_model_dir(spec.weights["tensorflow_saved_model_bundle"].path)))
    signature = loaded.signatures["serving_default"]
    signature.loaded = loaded  # keep the variables alive
    key = next(iter(signature.structured_input_signature[1]))
    return signature, key, next(iter(signature.structured_outputs))


def run_config(name: str) -> dict[str, float]:
    """One configuration, in this (child) process: time and peak RSS."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from deepimagej import predict, tiling
    from deepimagej.bundle import load_bundle

    if name.startswith(("untiled", "keras608", "tile608", "budget1G", "default")):
        spec = load_bundle(REPO / "bundles" / "unet-pancreatic")
        image = _big_image()
        fmt = "tensorflow_saved_model_bundle"
        if name in ("untiled", "untiled_halo"):
            signature, key, out_key = _signature(spec)
            pre = _pre(spec, image[None, ..., None], "byxc")
            if name == "untiled":
                padded = pre
            else:
                halo = 47
                after = halo + (-(SIZE + 2 * halo)) % 8
                padded = tiling.mirror_pad(pre, [(0, 0), (halo, after), (halo, after), (0, 0)])
            import tensorflow as tf

            def call() -> np.ndarray:
                return signature(**{key: tf.constant(padded)})[out_key].numpy()

            call()
            seconds = _best_of(call)
            return {"seconds": seconds, "peak": _peak(), "tiles": 1, "size": padded.shape[1]}
        if name == "keras608":
            loop = _raw_loop(spec, fmt, image, {"y": 608, "x": 608})
            loop()
            return {"seconds": _best_of(loop), "peak": _peak()}
        kwargs = {"default": {}, "tile608": {"tile": {"y": 608, "x": 608}}, "budget1G": {"max_memory": "1G"}}[
            name
        ]
        from deepimagej import memory

        memory.measure(spec, spec.weights[fmt])  # the one-off probe (cached) is not part of the run
        result = predict.predict(spec, predict.bind_inputs(spec, image, "yx"), **kwargs)
        seconds = _best_of(lambda: predict.run(spec, image, axes="yx", **kwargs))
        return {
            "seconds": seconds,
            "peak": _peak(),
            "tiles": result.run_plan.plan.n_tiles,
            "batch": result.run_plan.choice.batch,
            "estimated_peak": result.run_plan.choice.estimated_peak,
        }
    spec = load_bundle(NUCLEI)
    image = _big_image().astype(np.float32)
    fmt = "onnx" if name.startswith("onnx") else "torchscript"
    if name.endswith("_raw"):
        loop = _raw_loop(spec, fmt, image, None)
        loop()
        return {"seconds": _best_of(loop), "peak": _peak()}
    if name.endswith("_ab"):
        loop = _raw_loop(spec, fmt, image, None)

        def ours() -> object:
            return predict.run(spec, image, axes="yx", weights_format=fmt)

        ours(), loop()
        mine, plain = [], []
        for _ in range(2 * REPEATS):
            mine.append(_best_of(ours, 1))
            plain.append(_best_of(loop, 1))
        return {"seconds": min(mine), "raw_seconds": min(plain), "peak": _peak()}
    kwargs = {"max_memory": "1G"} if name.endswith("_1G") else {}
    if kwargs:
        from deepimagej import memory

        memory.measure(spec, spec.weights[fmt])
    result = predict.predict(spec, predict.bind_inputs(spec, image, "yx"), weights_format=fmt, **kwargs)
    seconds = _best_of(lambda: predict.run(spec, image, axes="yx", weights_format=fmt, **kwargs))
    return {
        "seconds": seconds,
        "peak": _peak(),
        "tiles": result.run_plan.plan.n_tiles,
        "batch": result.run_plan.choice.batch,
    }


CONFIGS = [
    "untiled",
    "untiled_halo",
    "default",
    "tile608",
    "keras608",
    "budget1G",
    "onnx_raw",
    "onnx",
    "torchscript_raw",
    "torchscript",
    "onnx_1G",
    "onnx_ab",
    "torchscript_ab",
]


def _child(name: str) -> dict[str, float]:
    proc = subprocess.run(
        [sys.executable, __file__, "--config", name],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        sys.exit(f"configuration {name} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--config", choices=CONFIGS, help="run one configuration in this process (used by the driver)"
    )
    parser.add_argument("--only", nargs="*", choices=CONFIGS, help="run only these configurations")
    parser.add_argument(
        "--rounds", type=int, default=2, help="run the configurations N times round-robin; keep the best"
    )
    args = parser.parse_args()
    if args.config:
        print(json.dumps(run_config(args.config)))
        return
    if not (REPO / "bundles" / "unet-pancreatic").is_dir() or not ASSETS.is_dir():
        sys.exit("error: needs bundles/unet-pancreatic (make models) and ../shared/assets")
    print(f"image {SIZE}x{SIZE}, {os.cpu_count()} cores; each configuration in its own process")
    r: dict[str, dict[str, float]] = {}
    for _ in range(max(1, args.rounds)):
        for name in args.only or CONFIGS:
            result = _child(name)
            if name in r:  # best time, highest peak over the rounds
                result["seconds"] = min(result["seconds"], r[name]["seconds"])
                if "raw_seconds" in result:
                    result["raw_seconds"] = min(result["raw_seconds"], r[name]["raw_seconds"])
                result["peak"] = max(result["peak"], r[name]["peak"])
            r[name] = result
    for name in args.only or CONFIGS:
        extra = "".join(f", {k} {v}" for k, v in r[name].items() if k in ("tiles", "batch"))
        print(f"  {name:16s} {r[name]['seconds']:.2f} s, peak RSS {r[name]['peak'] / 2**30:.2f} GiB{extra}")
    figures: dict[str, float] = {f"{k}_s": v["seconds"] for k, v in r.items()}
    figures.update({f"{k}_peak_gib": round(v["peak"] / 2**30, 3) for k, v in r.items()})

    def ratio(a: str, b: str, label: str, target: float) -> None:
        if a in r and b in r:
            value = r[a]["seconds"] / r[b]["seconds"]
            figures[label] = round(value, 3)
            print(f"{label:32s} {value:.3f}  (target <= {target})")

    ratio("default", "untiled_halo", "pancreatic default / untiled+halo", 1.10)
    ratio("default", "untiled", "pancreatic default / untiled", 1.10)
    ratio("tile608", "untiled_halo", "pancreatic tile 608 / untiled+halo", 1.40)
    ratio("keras608", "untiled_halo", "plain loop tile 608 / untiled+halo", 1.40)
    ratio("onnx", "onnx_raw", "nuclei ONNX / raw loop", 1.05)
    ratio("torchscript", "torchscript_raw", "nuclei TorchScript / raw loop", 1.10)
    for name, label, target in (
        ("onnx_ab", "nuclei ONNX / raw, one process", 1.05),
        ("torchscript_ab", "nuclei TorchScript / raw, one process", 1.10),
    ):
        if name in r:
            value = r[name]["seconds"] / r[name]["raw_seconds"]
            figures[label] = round(value, 3)
            print(f"{label:32s} {value:.3f}  (target <= {target})")
    for name, limit in (("default", 1.5), ("tile608", 1.0), ("budget1G", 1.0), ("onnx_1G", 1.0)):
        if name in r:
            print(f"peak RSS {name:23s} {r[name]['peak'] / 2**30:.3f} GiB  (target <= {limit} GiB)")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
