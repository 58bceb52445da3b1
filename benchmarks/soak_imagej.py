"""Soak: 1000 macro-driven ``run("DeepImageJ Run", ...)`` calls in one JVM leak nothing (``make soak``).

Each call is a macro, as a user's pipeline would run it: the pancreatic U-Net bundle
(``bundles/unet-pancreatic``, made by ``make models``) on a small crop of its example image,
with the bundle's own ImageJ macros (pre-processing, post-processing: threshold, watershed,
labels), which run confined like any bundle's macros. After ``--warmup`` calls and at the end
it measures, after a full garbage collection: the process RSS, the Java heap in use, Java and
OS threads, images ImageJ knows (``WindowManager``), windows (displayable and all AWT keeps),
and the live ``ij.ImagePlus`` objects (``jcmd GC.class_histogram``).

Passes (exit 0) when RSS grew by less than ``--max-growth`` (10 %) after the warm-up and no
thread, image, window or ImagePlus count grew. Prints the numbers and a JSON line. Run it with
``nice -n 19`` on a shared machine (``make soak`` does).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BUNDLE = REPO / "bundles" / "unet-pancreatic"
MACRO = (
    'run("DeepImageJ Run", "model=[{bundle}] format=Keras preprocessing=[preprocessing.txt] '
    'postprocessing=[postprocessing.txt] axes=Y,X logging=none");\n'
    "n = nImages;\n"
)


def live_instances(class_name: str) -> int:
    """Live objects of ``class_name`` in this process's JVM (after a full GC: the histogram forces one)."""
    out = subprocess.run(
        ["jcmd", str(os.getpid()), "GC.class_histogram"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    ).stdout
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 4 and parts[3] == class_name:
            return int(parts[1])
    return 0


def measure() -> dict:
    import psutil

    from deepimagej.imagej.java_classes import jc

    runtime = jc.Runtime.getRuntime()
    jc.System.gc()
    time.sleep(0.5)
    windows = list(jc.Window.getWindows())
    imageplus = live_instances("ij.ImagePlus")  # forces a full GC first
    return {
        "rss_mib": round(psutil.Process().memory_info().rss / 2**20, 1),
        "java_heap_mib": round((int(runtime.totalMemory()) - int(runtime.freeMemory())) / 2**20, 1),
        "java_threads": int(jc.ManagementFactory.getThreadMXBean().getThreadCount()),
        "os_threads": psutil.Process().num_threads(),
        "images": int(jc.WindowManager.getImageCount()),
        "windows_displayable": sum(1 for w in windows if w.isDisplayable()),
        "windows_all": len(windows),
        "imageplus_objects": imageplus,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--size", type=int, default=96, help="side of the crop of the example image (pixels)")
    parser.add_argument("--max-growth", type=float, default=0.10, help="allowed RSS growth after the warm-up")
    args = parser.parse_args(argv)
    if not (BUNDLE / "config.xml").is_file():
        print(f"{BUNDLE} not found: run `make models` first", file=sys.stderr)
        return 2
    import tifffile

    from deepimagej.imagej import start

    full = tifffile.imread(BUNDLE / "exampleImage.tif")
    y0, x0 = (full.shape[0] - args.size) // 2, (full.shape[1] - args.size) // 2
    image = full[y0 : y0 + args.size, x0 : x0 + args.size]  # the middle: cells, not just background
    ij = start(timeout=120)
    macro = MACRO.format(bundle=BUNDLE)
    t0 = time.monotonic()
    warm: dict = {}
    for i in range(1, args.calls + 1):
        res = ij.run_macro(macro, image)
        if res.image is None or res.image.shape != image.shape:
            print(
                f"call {i}: unexpected result {None if res.image is None else res.image.shape}",
                file=sys.stderr,
            )
            return 1
        if i == args.warmup:
            warm = measure()
            print(f"after {i} calls (warm-up): {warm}", flush=True)
        elif i % 100 == 0:
            print(f"{i} calls, {time.monotonic() - t0:.0f} s", flush=True)
    end = measure()
    print(f"after {args.calls} calls: {end}", flush=True)
    growth = (end["rss_mib"] - warm["rss_mib"]) / warm["rss_mib"]
    grown = [
        k
        for k in ("java_threads", "os_threads", "images", "windows_displayable", "imageplus_objects")
        if end[k] > warm[k]
    ]
    ok = growth < args.max_growth and not grown
    print(
        f"RSS {warm['rss_mib']} -> {end['rss_mib']} MiB ({100 * growth:+.1f} %), Java heap "
        f"{warm['java_heap_mib']} -> {end['java_heap_mib']} MiB, threads {warm['java_threads']} -> "
        f"{end['java_threads']} (Java), images {warm['images']} -> {end['images']}, windows "
        f"{warm['windows_displayable']} -> {end['windows_displayable']}, ImagePlus {warm['imageplus_objects']} -> "
        f"{end['imageplus_objects']}; {args.calls} calls in {time.monotonic() - t0:.0f} s: "
        + ("PASS" if ok else f"FAIL ({'RSS' if growth >= args.max_growth else ''} {' '.join(grown)})"),
        flush=True,
    )
    print(
        json.dumps(
            {
                "calls": args.calls,
                "warmup": warm,
                "end": end,
                "rss_growth": round(growth, 4),
                "grown": grown,
                "pass": ok,
            }
        ),
        flush=True,
    )
    return 0 if ok else 1


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    os._exit(code)
