"""The plugin jar in its own ImageJ: image transfer through the mapped files, macro-driven runs vs direct calls.

    PYTHONPATH=python .venv/bin/python benchmarks/bench_plugin.py [--size 2048] [--repeat 3]

Installs the plugin into a temporary ImageJ folder (``deepimagej install-plugin``), starts
Debian's ImageJ as its own Java process in ``-batch`` mode under a private Xvfb, and measures
in the same run:

* the plugin's first ``run("DeepImageJ Run", ...)`` (worker start, TensorFlow import, model
  load), the next ones (the worker kept), and the call after the worker was killed;
* a 4096x4096 float32 image to the worker and back (``Diagnostics.echo``): ImageJ writing the
  mapped file + the worker reading every byte, and the worker writing + ImageJ reading it into
  a new image, in GB/s each way (goal >= 1);
* the pancreatic U-Net on a size x size image through the macro (no pre/post-processing)
  against ``deepimagej.run`` on the same size in this process, as a ratio (goal <= 1.10).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
OPTIONS = (
    "model=[unet-pancreatic] preprocessing=[no preprocessing] postprocessing=[no postprocessing] logging=none"
)


def start_xvfb() -> tuple[subprocess.Popen, str]:
    read, write = os.pipe()
    proc = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write), "-screen", "0", "1280x1024x24", "-nolisten", "tcp"],
        pass_fds=(write,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(write)
    with os.fdopen(read) as fh:
        return proc, f":{fh.readline().strip()}"


def macro(size: int, repeat: int, sync: Path) -> str:
    """The ImageJ side: each timed run waits for its turn (the direct runs of this process alternate with it)."""
    return f"""
setBatchMode(true);
newImage("cells", "32-bit random", {size}, {size}, 1);
id = getImageID();
t0 = getTime(); run("DeepImageJ Run", "{OPTIONS}"); print("first_call_s=" + (getTime() - t0) / 1000); close();
for (i = 0; i < {repeat}; i++) {{
    File.saveString("", "{sync}/ready" + i);
    while (!File.exists("{sync}/go" + i)) wait(10);
    selectImage(id); t0 = getTime(); run("DeepImageJ Run", "{OPTIONS}"); t = (getTime() - t0) / 1000;
    close();
    print("macro_run_s=" + t);
}}
File.saveString("", "{sync}/ready{repeat}");
exec("kill", "-9", call("deepimagej.plugin.Diagnostics.workerPid"));
selectImage(id); t0 = getTime(); run("DeepImageJ Run", "{OPTIONS}"); print("restart_call_s=" + (getTime() - t0) / 1000);
close();
newImage("big", "32-bit random", 4096, 4096, 1);
big = getImageID();
for (i = 0; i < {repeat + 1}; i++) {{
    selectImage(big); r = call("deepimagej.plugin.Diagnostics.echo"); print("echo " + r); close();
}}
"""


def values(lines: list[str], key: str) -> list[float]:
    return [float(line.split("=", 1)[1]) for line in lines if line.startswith(key + "=")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    import deepimagej
    from deepimagej.bundle import load_bundle
    from deepimagej.imagej.jvm import find_ij_jar
    from deepimagej.imagej.plugin.install import install_plugin

    bundle = REPO / "bundles" / "unet-pancreatic"
    spec = load_bundle(bundle)
    image = np.random.default_rng(0).random((args.size, args.size), dtype=np.float32)
    kw = {"axes": "yx", "apply_preprocessing": False, "apply_postprocessing": False}
    deepimagej.run(spec, image, **kw)  # model load, graph tracing in this process
    direct = []
    with tempfile.TemporaryDirectory(prefix="bench-imagej-") as tmp:
        folder = Path(tmp)
        (folder / "plugins").mkdir()
        install_plugin(folder)
        script = folder / "bench.ijm"
        script.write_text(macro(args.size, args.repeat, folder))
        xvfb, display = start_xvfb()
        try:
            env = dict(os.environ, DISPLAY=display, DEEPIMAGEJ_MODELS=str(bundle.parent))
            proc = subprocess.Popen(
                [
                    "java",
                    "-Xmx6g",
                    f"-Dplugins.dir={folder}",
                    "-jar",
                    str(find_ij_jar()),
                    "-batch",
                    str(script),
                ],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for i in range(args.repeat):  # alternate: a direct run here, then a macro run there
                while not (folder / f"ready{i}").exists() and proc.poll() is None:
                    time.sleep(0.01)
                t0 = time.perf_counter()
                deepimagej.run(spec, image, **kw)
                direct.append(time.perf_counter() - t0)
                (folder / f"go{i}").touch()
            out, err = proc.communicate(timeout=1800)
        finally:
            xvfb.terminate()
    lines = out.splitlines()
    if proc.returncode != 0 or not values(lines, "restart_call_s"):
        sys.exit(f"the ImageJ run failed:\n{out[-3000:]}\n{err[-3000:]}")

    first, runs, restart = (
        values(lines, "first_call_s")[0],
        values(lines, "macro_run_s"),
        values(lines, "restart_call_s")[0],
    )
    print(
        f"DeepImageJ Run from a macro, {args.size}x{args.size}: first call {first:.2f} s (worker start, TensorFlow, "
        f"model load), next calls {min(runs):.2f} s (worker kept), after the worker was killed {restart:.2f} s"
    )
    echoes = [
        dict(part.split("=") for part in line.split()[1:]) for line in lines if line.startswith("echo ")
    ]
    mb = float(echoes[0]["bytes"]) / 1e9
    to_worker = [mb / (float(e["write"]) + float(e["worker_read"])) for e in echoes]
    to_imagej = [mb / (float(e["worker_write"]) + float(e["read"])) for e in echoes]
    print(
        f"4096x4096 float32 through the mapped files: ImageJ -> worker {max(to_worker[1:]):.2f} GB/s, "
        f"worker -> ImageJ {max(to_imagej[1:]):.2f} GB/s (goal >= 1; the first, files created: "
        f"{to_worker[0]:.2f} / {to_imagej[0]:.2f} GB/s); making the ImagePlus of the copy: "
        f"{min(float(e['image']) for e in echoes) * 1000:.1f} ms"
    )
    print(
        f'{args.size}x{args.size}: direct deepimagej.run {min(direct):.2f} s; macro run("DeepImageJ Run") in ImageJ '
        f"{min(runs):.2f} s (alternating, best of {args.repeat}); ratio {min(runs) / min(direct):.3f} (goal <= 1.10)"
    )


if __name__ == "__main__":
    main()
