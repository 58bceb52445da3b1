"""Images larger than memory and Dask: speed and memory of streamed runs (``make bench``).

Each configuration runs in its own child process, so that its peak resident memory (VmHWM of
that process: runtime, model, blocks in flight) is its own; ratios compare configurations
measured in the same run. The model is the pancreatic U-Net (TF SavedModel bundle, default
plan); the images are its example image mirrored up to the size (seamless), written once as
tiled (512x512) 8-bit BigTIFFs into a cache folder (``--data``, default
``/tmp/deepimagej-bench``), never into the repository.

    inmem2048     the in-memory default run on a 2048x2048 image, TIFF in, TIFF out
                  (read + run + write; best of 3 after a warm-up): the Mpix/s baseline
    stream16k     a 16384x16384 BigTIFF streamed to .ome.zarr (``predict(out=...)``, i.e.
                  ``deepimagej run BUNDLE big.tif -o big.ome.zarr``) with the default budget;
                  one run after a warm-up on the 2048 image: time, Mpix/s, whole-process peak
                  RSS (target <= 2 GiB), Mpix/s against inmem2048 (target >= 0.9)
    check16k      one interior block of that output against an in-memory run on the window
                  the block was computed from (same whole-image normalisation; max abs diff < 1e-4)
    one4096       a 4096x4096 BigTIFF streamed to .ome.zarr in one process (best of 2, model loaded)
    dask2x1_4096  the same on a local Dask cluster of 2 worker processes with 1 thread each
                  (what ``--workers 2`` starts; cluster started and models loaded by a warm-up
                  run, best of 2): throughput against one4096 (target >= 0.9) and max abs diff
                  of the outputs (0). Both also report their first run as the CLI does it
                  (``cold_s``: the model load, and for Dask the cluster start, included).

``--quick`` uses 4096 instead of 16384 and 2048 instead of 4096 (a smoke test of a minute or two).
The results are printed, the last line being one JSON object, and saved to
``benchmarks/results/bench_streaming[_quick].json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
ASSETS = REPO.parent / "shared" / "assets"
BUNDLE = REPO / "bundles" / "unet-pancreatic"
EXAMPLE = ASSETS / "unet_pancreatic" / "exampleImage.tif"
RESULTS = REPO / "benchmarks" / "results"
BASE = 2048  # the in-memory baseline (and warm-up) image
FULL = {"stream": 16384, "dask": 4096}
QUICK = {"stream": 4096, "dask": 2048}
FILE_TILE = 512


def _label(size: int) -> str:
    return f"{size // 1024}k" if size >= 8192 else str(size)


# --------------------------------------------------------------------------------------------
# test images (generated once, cached)
# --------------------------------------------------------------------------------------------


def _mirror_index(n: int, period: int) -> np.ndarray:
    """0, 1, ..., period-1, period-1, ..., 0, 0, 1, ...: the symmetric extension of an axis."""
    i = np.arange(n) % (2 * period)
    return np.where(i < period, i, 2 * period - 1 - i)


def image_path(data: Path, size: int) -> Path:
    """A size x size 8-bit tiled BigTIFF: the pancreatic example image mirrored (np.pad 'symmetric')."""
    import tifffile

    from deepimagej.io import read_image

    path = data / f"pancreatic_{size}.tif"
    if path.is_file():
        return path
    data.mkdir(parents=True, exist_ok=True)
    base = np.asarray(read_image(EXAMPLE).array)
    iy, ix = _mirror_index(size, base.shape[0]), _mirror_index(size, base.shape[1])

    def tiles() -> Any:
        for y0 in range(0, size, FILE_TILE):
            for x0 in range(0, size, FILE_TILE):
                yield base[np.ix_(iy[y0 : y0 + FILE_TILE], ix[x0 : x0 + FILE_TILE])]

    part = path.with_name(f".{path.name}.part-{os.getpid()}")
    tifffile.imwrite(
        part,
        tiles(),
        shape=(size, size),
        dtype=np.uint8,
        tile=(FILE_TILE, FILE_TILE),
        bigtiff=True,
        photometric="minisblack",
    )
    os.replace(part, path)
    return path


# --------------------------------------------------------------------------------------------
# configurations (each in its own child process)
# --------------------------------------------------------------------------------------------


def _best_of(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def _streamed(spec: Any, source: Path, target: Path, scheduler: Any = None) -> Any:
    """One streamed run, as ``deepimagej run BUNDLE SOURCE -o TARGET`` does it (lazy input, store output)."""
    from deepimagej import predict, stores

    image = stores.open_image(source)
    try:
        return predict.predict(
            spec, predict.bind_inputs(spec, image), out=target, overwrite=True, scheduler=scheduler
        )
    finally:
        image.close()


def _plan_figures(result: Any) -> dict[str, Any]:
    rp = result.run_plan
    return {
        "tiles": rp.plan.n_tiles,
        "tile": list(rp.plan.tile_shape),
        "batch": rp.choice.batch,
        "estimated_peak": int(rp.choice.estimated_peak),
        "budget": int(rp.choice.budget),
    }


def _interior_tile(plan: Any) -> dict[str, list[int]]:
    """The tile whose kept block holds the image centre: its window and kept block, in image pixels."""
    centre = [(n - 2 * b) // 2 for n, b in zip(plan.image_shape, plan.border)]
    for tile in plan.tiles:
        block = [(s.start - b, s.stop - b) for s, b in zip(tile.target_slices, plan.border)]
        if all(lo <= c < hi for (lo, hi), c in zip(block, centre)):
            window = [
                (s.start - p - b, s.stop - p - b)
                for s, p, b in zip(tile.input_slices, plan.pad_before, plan.border)
            ]
            kept = [(s.start, s.stop) for s in tile.output_slices]
            return {
                "window": [list(w) for w in window],
                "kept": [list(k) for k in kept],
                "block": [list(b) for b in block],
            }
    raise RuntimeError("no tile holds the image centre")


def run_config(name: str, size: int, data: Path, work: Path, extra: dict[str, Any]) -> dict[str, Any]:
    """One configuration, in this (child) process."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from deepimagej import memory, predict
    from deepimagej.bundle import load_bundle
    from deepimagej.io import read_image, write_image

    spec = load_bundle(BUNDLE)
    memory.measure(
        spec, spec.weights["tensorflow_saved_model_bundle"]
    )  # the one-off probe (cached) is not timed
    base = image_path(data, BASE)
    if name == "inmem":
        source = image_path(data, size)
        target = work / f"inmem{size}.tif"

        def once() -> Any:
            image = read_image(source)
            result = predict.predict(spec, predict.bind_inputs(spec, image.array, image.axes))
            write_image(target, result.outputs["output"])
            return result

        result = once()  # warm-up: loads the model
        seconds = _best_of(once, 3)
        return {
            "seconds": seconds,
            "pixels": size * size,
            "peak": memory.peak_rss_bytes(),
            **_plan_figures(result),
        }
    if name == "stream":
        source = image_path(data, size)
        _streamed(spec, base, work / "warmup.ome.zarr")  # loads the model
        shutil.rmtree(work / "warmup.ome.zarr")
        start = time.perf_counter()
        result = _streamed(spec, source, work / f"stream{size}.ome.zarr")
        seconds = time.perf_counter() - start
        return {
            "seconds": seconds,
            "pixels": size * size,
            "peak": memory.peak_rss_bytes(),
            "interior": _interior_tile(result.run_plan.plan),
            **_plan_figures(result),
        }
    if name == "check":
        return _check_block(spec, image_path(data, size), work / f"stream{size}.ome.zarr", extra["interior"])
    if name == "one":
        source = image_path(data, size)
        start = time.perf_counter()
        _streamed(spec, source, work / f"one{size}.ome.zarr")  # cold: loads the model
        cold = time.perf_counter() - start
        runs: list[Any] = []
        seconds = _best_of(lambda: runs.append(_streamed(spec, source, work / f"one{size}.ome.zarr")), 2)
        return {
            "seconds": seconds,
            "pixels": size * size,
            "peak": memory.peak_rss_bytes(),
            "cold_s": cold,
            **_plan_figures(runs[-1]),
        }
    if name == "dask":
        import dask

        from deepimagej import distributed

        source = image_path(data, size)
        start = time.perf_counter()
        _streamed(
            spec, source, work / f"dask{size}.ome.zarr", 2
        )  # cold, as --workers 2 runs: starts a cluster
        cold = time.perf_counter() - start
        start = time.perf_counter()
        client = distributed.connect(None, 2)  # what --workers 2 starts: 2 processes, 1 thread each
        started = time.perf_counter() - start
        try:
            # the client's own reads of the lazy input (the statistics pass) on dask's local threads, as in a
            # --workers run, where they happen before the cluster exists (a Client is dask's default scheduler)
            with dask.config.set(scheduler="threads"):
                start = time.perf_counter()
                _streamed(spec, base, work / "warmup.ome.zarr", client)  # every worker loads the model
                warmup = time.perf_counter() - start
                shutil.rmtree(work / "warmup.ome.zarr")
                runs = []
                seconds = _best_of(
                    lambda: runs.append(_streamed(spec, source, work / f"dask{size}.ome.zarr", client)), 2
                )
            workers = client.run(memory.peak_rss_bytes)
        finally:
            client.close()
            client.cluster.close()
        return {
            "seconds": seconds,
            "pixels": size * size,
            "peak": memory.peak_rss_bytes(),
            "cold_s": cold,
            "worker_peaks": sorted(int(v) for v in workers.values()),
            "cluster_start_s": started,
            "warmup_s": warmup,
            **_plan_figures(runs[-1]),
        }
    raise ValueError(name)


def _check_block(
    spec: Any, source: Path, streamed: Path, interior: dict[str, list[list[int]]]
) -> dict[str, Any]:
    """An interior block of the streamed output against an in-memory run on the window it was computed from.

    The window is pre-processed with the statistics of the whole image (``scale_range``,
    computed block by block over the lazy image, as the streamed run does), then run in memory
    as one tile; the block is the part of that output the streamed run kept.
    """
    import zarr

    from deepimagej import ops, predict, stores
    from deepimagej.layout import Layout

    tensor = spec.inputs[0]
    image = stores.open_image(source)
    try:
        layout = Layout.of(image.axes, tensor)
        start = time.perf_counter()
        pipeline = ops.fit(tensor.processing, layout.to_model(image.array), layout.model_axes)
        stats_seconds = time.perf_counter() - start  # the whole-image statistics pass (one process)
        (wy0, wy1), (wx0, wx1) = interior["window"]
        crop = np.asarray(image.array[wy0:wy1, wx0:wx1])
    finally:
        image.close()
    normalised = pipeline.apply(layout.to_model(crop))
    window = layout.from_model(normalised, layout.model_axes, crop.shape)[0]
    result = predict.run(
        spec, window, axes="yx", tile={"y": wy1 - wy0, "x": wx1 - wx0}, apply_preprocessing=False
    )
    (ky0, ky1), (kx0, kx1) = interior["kept"]
    (by0, by1), (bx0, bx1) = interior["block"]
    expected = np.asarray(result)[ky0:ky1, kx0:kx1]
    got = np.asarray(zarr.open_array(str(streamed / "0"), mode="r")[by0:by1, bx0:bx1])
    diff = float(np.max(np.abs(got.astype(np.float64) - expected.astype(np.float64))))
    return {
        "max_abs_diff": diff,
        "block": interior["block"],
        "window": interior["window"],
        "differing_pixels": int(np.count_nonzero(got != expected)),
        "dtype": str(got.dtype),
        "stats_s": stats_seconds,
    }


# --------------------------------------------------------------------------------------------
# the driver
# --------------------------------------------------------------------------------------------


def _child(
    name: str, size: int, data: Path, work: Path, extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    args = [
        sys.executable,
        __file__,
        "--config",
        name,
        "--size",
        str(size),
        "--data",
        str(data),
        "--work",
        str(work),
        "--extra",
        json.dumps(extra or {}),
    ]
    start = time.perf_counter()
    proc = subprocess.run(
        args, capture_output=True, text=True, check=False, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        sys.exit(f"configuration {name} ({size}) failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    result = json.loads(lines[-1])
    result["process_s"] = round(time.perf_counter() - start, 1)
    return result


def _max_abs_diff(a: Path, b: Path) -> float:
    """Max abs difference of two single-output stores, read band by band."""
    import zarr

    x, y = zarr.open_array(str(a / "0"), mode="r"), zarr.open_array(str(b / "0"), mode="r")
    if x.shape != y.shape:
        return float("inf")
    band = x.chunks[0]
    worst = 0.0
    for y0 in range(0, x.shape[0], band):
        d = np.abs(
            np.asarray(x[y0 : y0 + band]).astype(np.float64)
            - np.asarray(y[y0 : y0 + band]).astype(np.float64)
        )
        worst = max(worst, float(d.max()))
    return worst


def _machine() -> dict[str, Any]:
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), cpu)
    except OSError:
        pass
    commit = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    return {"cores": os.cpu_count(), "cpu": cpu, "commit": commit, "date": time.strftime("%Y-%m-%d %H:%M")}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="smaller images (a smoke test of a minute or two)"
    )
    default_data = Path(os.environ.get("DEEPIMAGEJ_BENCH_DATA", "/tmp/deepimagej-bench"))
    parser.add_argument(
        "--data",
        type=Path,
        default=default_data,
        help="cache folder of the generated test images (default: /tmp/deepimagej-bench)",
    )
    parser.add_argument(
        "--config", choices=["inmem", "stream", "check", "one", "dask"], help=argparse.SUPPRESS
    )
    parser.add_argument(
        "--only",
        nargs="*",
        choices=["stream", "dask"],
        help="only the streaming part (inmem, stream, check) or the Dask part (one, dask); not saved",
    )
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--extra", default="{}", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.config:
        print(json.dumps(run_config(args.config, args.size, args.data, args.work, json.loads(args.extra))))
        return
    if not BUNDLE.is_dir() or not EXAMPLE.is_file():
        sys.exit("error: needs bundles/unet-pancreatic (make models) and ../shared/assets")
    sizes = QUICK if args.quick else FULL
    big, dask_size = sizes["stream"], sizes["dask"]
    names = {
        "inmem": f"inmem{BASE}",
        "stream": f"stream{_label(big)}",
        "check": f"check{_label(big)}",
        "one": f"one{dask_size}",
        "dask": f"dask2x1_{dask_size}",
    }
    for size in (BASE, big, dask_size):
        image_path(args.data, size)
    work = args.data / f"run-{os.getpid()}"
    work.mkdir(parents=True)
    print(
        f"pancreatic U-Net, {os.cpu_count()} cores; each configuration in its own process; images in {args.data}"
    )
    r: dict[str, dict[str, Any]] = {}
    parts = set(args.only or ["stream", "dask"])
    keys = (["inmem", "stream"] if "stream" in parts else []) + (["one", "dask"] if "dask" in parts else [])
    sized = {"inmem": BASE, "stream": big, "one": dask_size, "dask": dask_size}
    diff = float("nan")
    try:
        for key, size in ((k, sized[k]) for k in keys):
            r[key] = _child(key, size, args.data, work)
            v = r[key]
            v["mpix_s"] = v["pixels"] / 1e6 / v["seconds"]
            workers = ""
            if "worker_peaks" in v:
                workers = f", worker peaks {', '.join(f'{p / 2**30:.2f}' for p in v['worker_peaks'])} GiB"
            print(
                f"  {names[key]:14s} {v['seconds']:8.2f} s  {v['mpix_s']:.3f} Mpix/s  "
                f"peak RSS {v['peak'] / 2**30:.2f} GiB{workers}  ({v['tiles']} tiles of "
                f"{'x'.join(map(str, v['tile']))}, batch {v['batch']}, estimated "
                f"peak {v['estimated_peak'] / 2**30:.2f} GiB)",
                flush=True,
            )
            if key == "stream":
                r["check"] = _child("check", big, args.data, work, {"interior": v["interior"]})
                c = r["check"]
                (by0, by1), (bx0, bx1) = c["block"]
                print(
                    f"  {names['check']:14s} block y {by0}:{by1}, x {bx0}:{bx1} vs an in-memory run on its window: "
                    f"max abs diff {c['max_abs_diff']:.3g} ({c['differing_pixels']} pixels differ; target < 1e-4)",
                    flush=True,
                )
                shutil.rmtree(work / f"stream{big}.ome.zarr", ignore_errors=True)
        if "dask" in parts:
            diff = _max_abs_diff(work / f"one{dask_size}.ome.zarr", work / f"dask{dask_size}.ome.zarr")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.only:  # a partial run: its figures, not saved
        if "dask" in parts:
            ratio = r["dask"]["mpix_s"] / r["one"]["mpix_s"]
            print(
                f"{names['dask']} / {names['one']} throughput  {ratio:.3f}  (target >= 0.9); max abs diff {diff:.3g}"
            )
        if "stream" in parts:
            ratio = r["stream"]["mpix_s"] / r["inmem"]["mpix_s"]
            print(f"{names['stream']} Mpix/s / {names['inmem']} Mpix/s   {ratio:.3f}  (target >= 0.9)")
        return
    stream_ratio = r["stream"]["mpix_s"] / r["inmem"]["mpix_s"]
    dask_ratio = r["dask"]["mpix_s"] / r["one"]["mpix_s"]
    stream_peak = r["stream"]["peak"] / 2**30
    print(f"{names['stream']} Mpix/s / {names['inmem']} Mpix/s   {stream_ratio:.3f}  (target >= 0.9)")
    print(f"{names['stream']} peak RSS                {stream_peak:.3f} GiB  (target <= 2 GiB)")
    print(f"{names['check']} max abs diff             {r['check']['max_abs_diff']:.3g}  (target < 1e-4)")
    print(f"{names['dask']} / {names['one']} throughput  {dask_ratio:.3f}  (target >= 0.9)")
    print(f"{names['dask']} vs {names['one']} max abs diff  {diff:.3g}  (target 0)")
    cold_ratio = r["one"]["cold_s"] / r["dask"]["cold_s"]
    print(
        f"first run, as the CLI does it: one process {r['one']['cold_s']:.1f} s (model load included), --workers 2 "
        f"{r['dask']['cold_s']:.1f} s (cluster start and model loads included): throughput {cold_ratio:.3f}"
    )
    figures: dict[str, Any] = {"quick": args.quick, **_machine()}
    for key, v in r.items():
        figures[names[key]] = {
            k: (round(x, 4) if isinstance(x, float) else x) for k, x in v.items() if k != "interior"
        }
    figures["ratios"] = {
        "stream_vs_inmem_mpix": round(stream_ratio, 3),
        "dask_vs_one_mpix": round(dask_ratio, 3),
        "stream_peak_gib": round(stream_peak, 3),
        "stream_block_max_abs_diff": r["check"]["max_abs_diff"],
        "dask_vs_one_max_abs_diff": diff,
        "dask_vs_one_first_run_mpix": round(cold_ratio, 3),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"bench_streaming{'_quick' if args.quick else ''}.json"
    out.write_text(json.dumps(figures, indent=1) + "\n")
    print(f"saved {out.relative_to(REPO)}")
    print(json.dumps(figures["ratios"]))


if __name__ == "__main__":
    main()
