"""``deepimagej worker``: the Python process behind the DeepImageJ plugin jar in a user's ImageJ/Fiji.

The plugin (``imagej/plugin/java``) starts one worker per ImageJ on its first command and
keeps it: models stay loaded between calls. The worker serves the commands' requests
(:mod:`~deepimagej.imagej.plugin.protocol`): the dialogs' descriptions, runs, explore, install,
build, U-Net training, and the requests that involve servers (``host=``, DeepImageJ Jobs:
:mod:`~deepimagej.imagej.plugin.remote_requests`); images come and go as memory-mapped files in the folder the plugin
gives (``--shared-dir``). ImageJ itself runs the bundle's ImageJ pre/post-processing macros;
the worker runs the model, with ``apply_preprocessing`` / ``apply_postprocessing`` off for a
stage that is a macro (as :mod:`deepimagej.imagej.commands.run` does in the embedded ImageJ).

The worker needs no Java. It exits when its stdin closes (ImageJ quit or was killed). Its
stdout carries the protocol only: anything else printed (TensorFlow's messages, ``print``)
goes to stderr, which the plugin keeps for error messages.
"""

from __future__ import annotations

import argparse
import os
import queue
import shutil
import sys
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, BinaryIO

import deepimagej
from deepimagej.errors import DeepImageJError, first_line
from deepimagej.imagej.commands import dialogs
from deepimagej.imagej.commands.options import THIS_COMPUTER, RunOptions, parse_options
from deepimagej.imagej.plugin import remote_requests
from deepimagej.imagej.plugin.protocol import PROTOCOL, Cancelled, decode, encode, read_image, write_image


class Job:
    """One request being served: where its log lines and progress go, and whether it was cancelled."""

    def __init__(self, server: Server, job_id: int, op: str) -> None:
        self.server = server
        self.id = job_id
        self.op = op
        self.cancelled = threading.Event()

    def log(self, text: str) -> None:
        """A line for ImageJ's Log window."""
        self.server.send({"type": "log", "id": self.id, "text": str(text)})

    def progress(self, done: int, total: int, text: str = "") -> None:
        """ImageJ's progress bar (``done`` of ``total``) and status line; stops a cancelled job."""
        self.check()
        self.server.send(
            {"type": "progress", "id": self.id, "done": int(done), "total": int(total), "text": text}
        )

    def check(self) -> None:
        """Raise :class:`Cancelled` if the plugin asked to stop."""
        if self.cancelled.is_set():
            raise Cancelled()


Handler = Callable[["Server", Job, dict[str, Any]], dict[str, Any]]


class Server:
    """Serves requests from one plugin: one job at a time, ``cancel`` read meanwhile.

    Args:
        out: the protocol's output (the worker's real stdout).
        shared_dir: the folder of the mapped image files, given by the plugin.
    """

    def __init__(self, out: BinaryIO, shared_dir: Path) -> None:
        self.out = out
        self.shared_dir = shared_dir
        self._send_lock = threading.Lock()
        self._jobs: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.current: Job | None = None
        #: (bundle folder, weights format) of the models loaded in this worker
        self.loaded: set[tuple[str, str]] = set()

    def send(self, message: Mapping[str, Any]) -> None:
        line = encode(message)
        with self._send_lock:
            self.out.write(line)
            self.out.flush()

    def hello(self) -> None:
        self.send(
            {
                "type": "hello",
                "protocol": PROTOCOL,
                "version": deepimagej.__version__,
                "pid": os.getpid(),
                "python": sys.version.split()[0],
            }
        )

    # ------------------------------------------------------------ the loop
    def serve(self, instream: BinaryIO) -> None:
        """Read requests until ``instream`` ends; then return (the caller exits)."""
        worker = threading.Thread(target=self._work, name="deepimagej-worker-jobs", daemon=True)
        worker.start()
        for line in instream:
            if not line.strip():
                continue
            try:
                request = decode(line)
            except ValueError as exc:
                print(f"deepimagej worker: ignored a bad request line ({exc})", file=sys.stderr)
                continue
            if request.get("op") == "cancel":
                job = self.current
                if job is not None and job.id == request.get("id"):
                    job.cancelled.set()
                continue
            self._jobs.put(request)
        current = self.current
        if current is not None:
            current.cancelled.set()

    def _work(self) -> None:
        while True:
            request = self._jobs.get()
            if request is None:
                return
            self.handle(request)

    def handle(self, request: Mapping[str, Any]) -> None:
        """Serve one request: its log/progress lines, then its result or its one-line error."""
        op = str(request.get("op", ""))
        job_id = int(request.get("id", 0))
        job = Job(self, job_id, op)
        self.current = job
        try:
            handler = HANDLERS.get(op)
            if handler is None:
                raise DeepImageJError(
                    f"the worker does not know the request '{op}' (plugin and worker differ: "
                    "run deepimagej install-plugin again)"
                )
            result = handler(self, job, dict(request.get("args") or {}))
            self.send({"type": "result", "id": job_id, "result": result})
        except Cancelled:
            self.send({"type": "error", "id": job_id, "kind": "Cancelled", "message": "canceled (Esc)"})
        except DeepImageJError as exc:
            self.send({"type": "error", "id": job_id, "kind": type(exc).__name__, "message": first_line(exc)})
        except Exception as exc:  # noqa: BLE001 - anything else is reported in one line, the trace goes to stderr
            traceback.print_exc(file=sys.stderr)
            self.send(
                {
                    "type": "error",
                    "id": job_id,
                    "kind": type(exc).__name__,
                    "message": f"{op} failed: {type(exc).__name__}: {first_line(exc)}",
                }
            )
        finally:
            self.current = None

    def output_path(self, index: int) -> Path:
        """The mapped file of the ``index``-th output image."""
        return self.shared_dir / f"output-{index}.raw"


# ---------------------------------------------------------------- requests
def _options(dialog: Callable[[], dialogs.Dialog], args: Mapping[str, Any]) -> str:
    """The macro options of a request: as the macro gave them, or made from the values of the dialog."""
    values = args.get("values")
    if values is not None:
        return dialog().options(values)
    return str(args.get("options") or "")


def _run_dialog() -> dialogs.Dialog:
    from deepimagej.imagej.commands.run import host_choices, installed_model_names

    return dialogs.run_dialog(installed_model_names(), host_choices())


def _install_dialog() -> dialogs.Dialog:
    from deepimagej.paths import USER_MODELS

    return dialogs.install_dialog(USER_MODELS)


def _train_dialog() -> dialogs.Dialog:
    from deepimagej.imagej.commands.run import host_choices

    return dialogs.train_dialog(host_choices())


#: command -> (its dialog, whether a macro's options go through the dialog as ImageJ reads them)
DIALOGS: dict[str, tuple[Callable[[], dialogs.Dialog | None], bool]] = {
    "run": (_run_dialog, False),
    "build": (dialogs.build_dialog, False),
    "install": (_install_dialog, False),
    "train": (_train_dialog, True),
    "jobs": (remote_requests.jobs_dialog, False),  # none when there is no job to choose
}


def dialog_request(server: Server, job: Job, args: dict[str, Any]) -> dict[str, Any]:
    """``dialog``: the command's dialog to show (or fill from the options), or none when the options say it all."""
    command = str(args.get("command", ""))
    if command not in DIALOGS:
        raise DeepImageJError(f"no dialog for the command '{command}'")
    make, always = DIALOGS[command]
    wanted = {k.lower(): v for k, v in parse_options(str(args.get("options") or "")).items()}.get("host")
    if command == "train" and wanted and wanted.strip() != THIS_COMPUTER:
        from deepimagej import remote

        remote.host(wanted.strip())  # an unknown host: its own message, not ImageJ's "not a valid choice"
    if not always and str(args.get("options") or "").strip():
        return {"dialog": None}
    dialog = make()
    return {"dialog": dialog.to_json() if dialog is not None else None}


def run_prepare(server: Server, job: Job, args: dict[str, Any]) -> dict[str, Any]:
    """``run.prepare``: the DeepImageJ Run options -> the model, its macros to run in ImageJ, the input files."""
    from deepimagej.imagej.commands.run import input_files, macro_files, output_title
    from deepimagej.imagej.models import find_model

    opts = RunOptions.parse(_options(_run_dialog, args))
    spec = find_model(opts.model)
    pre = macro_files(spec, opts.preprocessing, "preprocessing")
    post = macro_files(spec, opts.postprocessing, "postprocessing")
    files = [str(p) for p in input_files(Path(opts.input_path))] if opts.input_path else []
    if opts.host and len(spec.inputs) > 1:
        raise DeepImageJError(
            f"DeepImageJ Run: {spec.name} has several inputs; run it on a server from the command "
            "line (deepimagej run BUNDLE --input NAME=PATH ... --host HOST)"
        )
    if opts.detach and files:
        raise DeepImageJError(
            "DeepImageJ Run: detach with inputPath= (a folder) is not supported; run the folder "
            "without detach, or from the command line (deepimagej run BUNDLE FOLDER -o OUT --host HOST --detach)"
        )
    return {
        "model": str(spec.root),
        "name": spec.name,
        "input": spec.inputs[0].name,
        "preprocessing": [{"name": p.name, "path": str(p)} for p in pre],
        "postprocessing": [{"name": p.name, "path": str(p)} for p in post],
        "title": output_title(spec, post),
        # the bundle's bioimage.io operations stand in for its macros, unless the user named the
        # stage's macros or asked for none ("preprocessing=[no preprocessing]": the raw image goes in)
        "apply_preprocessing": not pre and opts.preprocessing is None,
        "apply_postprocessing": not post and opts.postprocessing is None,
        "weights_format": opts.weights_format,
        "tile": opts.tile,
        "logging": opts.logging,
        "input_files": files,
        "output_folder": opts.output_folder,
        "display": opts.display_output,
        "host": opts.host,  # a server (deepimagej remote): the model runs there, the macros here
        "detach": opts.detach,
    }


def run_request(server: Server, job: Job, args: dict[str, Any]) -> dict[str, Any]:
    """``run``: the model on the shared input image(s); every output as a shared image.

    ``inputs`` names the images by model input (one image for a one-input model may carry any
    name); ``outputs`` names them by model output, the first one titled as the post-processing
    macros expect.
    """
    from deepimagej import predict
    from deepimagej.bundle.validate import check_bundle
    from deepimagej.engines import load_engine
    from deepimagej.imagej.models import find_model
    from deepimagej.io import ImageData

    plan = dict(args.get("job") or {})
    spec = find_model(plan["model"])
    shared = {name: read_image(description) for name, description in dict(args.get("inputs") or {}).items()}
    if len(shared) == 1 and len(spec.inputs) == 1:
        shared = {spec.inputs[0].name: next(iter(shared.values()))}
    images = {
        name: ImageData(
            image.array, image.axes, _pixel_size(image.calibration), image.calibration.get("unit")
        )
        for name, image in shared.items()
    }
    logging = str(plan.get("logging", "normal"))
    verbose = logging in ("verbose", "debug")
    pre, post = plan.get("preprocessing") or [], plan.get("postprocessing") or []
    titles = ", ".join(f"'{image.title}'" for image in shared.values())
    job.log(
        f"[DeepImageJ] running '{spec.name}' on {titles}"
        + (f" with {', '.join(m['name'] for m in pre)}" if pre else "")
        + (f" then {', '.join(m['name'] for m in post)}" if post else "")
    )
    if plan.get("host"):
        return remote_requests.run_on_host(
            job, plan, spec, next(iter(shared.values())), server.output_path(0)
        )
    weights = check_bundle(spec, plan.get("weights_format"))
    key = (str(spec.root), weights.format)
    if key not in server.loaded:
        job.progress(0, 1, f"DeepImageJ Run: loading {spec.name} ({weights.format})")
        start = time.perf_counter()
        load_engine(weights, [t.name for t in spec.inputs], [t.name for t in spec.outputs])
        server.loaded.add(key)
        job.log(
            f"[DeepImageJ] {spec.name}: model loaded in {time.perf_counter() - start:.2f} s ({weights.format})"
        )
    start = time.perf_counter()
    tiles = [0, 0]

    def progress(done: int, total: int, elapsed: float, rss: int) -> None:
        tiles[:] = [done, total]
        job.progress(done, total, f"DeepImageJ Run: {spec.name}: tile {done}/{total}, {elapsed:.1f} s")
        if verbose:
            job.log(
                f"[DeepImageJ] tile {done}/{total}  {elapsed:6.1f} s  worker peak memory {rss / 2**20:.0f} MB"
            )

    job.check()
    prediction = predict.predict(
        spec,
        predict.bind_inputs(spec, images),
        tile=plan.get("tile") or None,
        weights_format=plan.get("weights_format"),
        apply_preprocessing=bool(plan.get("apply_preprocessing")),
        apply_postprocessing=bool(plan.get("apply_postprocessing")),
        progress=progress,
    )
    job.check()
    model_s = time.perf_counter() - start
    timing = next(iter(shared.values())).calibration
    outputs = {}
    for index, (name, image) in enumerate(prediction.outputs.items()):
        calibration = {**image.pixel_size, **({"unit": image.unit} if image.unit else {})}
        calibration.update({k: timing[k] for k in ("t", "time_unit") if k in timing})
        title = str(plan.get("title") or name) if index == 0 else name
        outputs[name] = write_image(
            image.array, image.axes, server.output_path(index), title=title, calibration=calibration
        )
    if verbose:
        job.log(
            f"[DeepImageJ] worker: model {model_s:.3f} s, outputs written in "
            f"{time.perf_counter() - start - model_s:.3f} s"
        )
    if logging not in ("none", "quiet", "off"):
        job.log(
            f"[DeepImageJ] {spec.name}: {tiles[1]} tile(s) in {time.perf_counter() - start:.2f} s; "
            f"worker peak memory {prediction.peak_rss / 2**20:.0f} MB"
        )
    return {"outputs": outputs}


def _pixel_size(calibration: Mapping[str, Any]) -> dict[str, float]:
    """ImageJ's pixel width/height/depth as ImageData's pixel size."""
    return {axis: float(calibration[axis]) for axis in ("x", "y", "z") if axis in calibration}


def _calibration(image: Any) -> tuple[float, ...] | None:
    """A shared image's pixel size in micrometres (array order: z, y, x), or ``None`` when uncalibrated."""
    from deepimagej.resample import to_micrometres

    cal = image.calibration
    unit = str(cal.get("unit") or "pixel")
    axes = [a for a in ("z", "y", "x") if a in image.axes]
    sizes = [to_micrometres(float(cal.get(a, 1.0)), unit) for a in axes]
    known = [v for v in sizes if v is not None]
    return tuple(known) if len(known) == len(sizes) else None


def explore_request(server: Server, job: Job, args: dict[str, Any]) -> dict[str, Any]:
    """``explore``: the installed models (no model given), or one model's description (and its example)."""
    from deepimagej.errors import BundleError
    from deepimagej.imagej.commands.explore import architecture, model_info
    from deepimagej.imagej.models import find_model, installed_models

    opts = parse_options(str(args.get("options") or ""))
    if not opts.get("model"):
        rows = []
        for m in installed_models():
            rows.append(
                {"model": m.name, "folder": str(m.folder), "status": "ok" if m.spec else f"broken: {m.error}"}
            )
            job.log(f"[DeepImageJ] {m.name}  ({m.folder})" + ("" if m.spec else f"  BROKEN: {m.error}"))
        return {"models": rows}
    spec = find_model(opts["model"])
    job.log(model_info(spec))
    if "architecture" in opts:
        job.log(architecture(spec))
    if "apply" not in opts:
        return {}
    if not spec.sample_inputs:
        raise BundleError(f"model '{spec.name}' has no example image")
    return {"apply": str(spec.sample_inputs[0]), "model": str(spec.root)}


def install_request(server: Server, job: Job, args: dict[str, Any]) -> dict[str, Any]:
    """``install``: a bundle zip or folder into the models folder."""
    from deepimagej.imagej.commands.install import install_values

    dialog = _install_dialog()
    values = (
        dialog.typed(args["values"])
        if args.get("values") is not None
        else dialog.values_from_options(str(args.get("options") or ""))
    )
    spec, lines = install_values(values)
    for line in lines:
        job.log(line)
    return {"model": str(spec.root), "name": spec.name}


def build_request(server: Server, job: Job, args: dict[str, Any]) -> dict[str, Any]:
    """``build``: weights + settings -> a bundle (its example result computed)."""
    from deepimagej.export import build_bundle
    from deepimagej.imagej.commands.build import build_kwargs

    job.progress(0, 1, "DeepImageJ Build Bundled Model: building...")
    spec = build_bundle(**build_kwargs(_options(dialogs.build_dialog, args)))
    job.log(f"[DeepImageJ] bundle '{spec.name}' written to {spec.root}")
    return {"model": str(spec.root), "name": spec.name}


def _train_settings(args: Mapping[str, Any]) -> dict[str, Any]:
    dialog = _train_dialog()
    if args.get("values") is not None:
        return dialog.typed(args["values"])
    return dialog.values_from_options(str(args.get("options") or ""))


def train_prepare(server: Server, job: Job, args: dict[str, Any]) -> dict[str, Any]:
    """``train.prepare``: whether ImageJ must send the current image and the ROI Manager's ROIs."""
    return {"needs_image": _train_settings(args)["data"] == dialogs.DATA_CHOICES[0]}


def train_request(server: Server, job: Job, args: dict[str, Any]) -> dict[str, Any]:
    """``train``: a U-Net from the settings (and the shared image + ROIs); the bundle written."""
    from deepimagej.imagej.commands.train import rois_are_points, samples_from_image, train_from_settings

    settings = _train_settings(args)

    def current_image(tmp: Path) -> tuple[list[Any], Any, str]:
        if "image" not in args:
            raise DeepImageJError("U-Net Train: ImageJ sent no image (plugin and worker differ)")
        image = read_image(args["image"])
        are_points = rois_are_points(list(args.get("roi_types") or []))
        samples, config = samples_from_image(
            settings,
            image.array,
            image.axes,
            Path(args["rois"]),
            are_points,
            tmp,
            calibration=_calibration(image),
        )
        return samples, config, image.title

    if settings.get("host") not in (None, THIS_COMPUTER):
        return remote_requests.train_on_host(job, args, settings)
    result = train_from_settings(settings, current_image, log=job.log, status=job.progress)
    return {
        "output": str(Path(settings["output"]).expanduser()),
        "best_val_loss": float(result.best_val_loss),
    }


def echo_request(server: Server, job: Job, args: dict[str, Any]) -> dict[str, Any]:
    """``echo``: read every byte of the shared input image(s) and write them back (the transfer, measured)."""
    outputs, read_s, write_s, checksum = {}, 0.0, 0.0, 0.0
    for index, (name, description) in enumerate(dict(args.get("inputs") or {}).items()):
        start = time.perf_counter()
        image = read_image(description)
        checksum += float(image.array.sum())  # every byte read from the mapped file
        read_s += time.perf_counter() - start
        start = time.perf_counter()
        outputs[name] = write_image(
            image.array,
            image.axes,
            server.output_path(index),
            title=f"{image.title}-echo",
            calibration=image.calibration,
            rgb=image.rgb,
        )
        write_s += time.perf_counter() - start
    return {"outputs": outputs, "read_s": read_s, "write_s": write_s, "checksum": checksum}


def status_request(server: Server, job: Job, args: dict[str, Any]) -> dict[str, Any]:
    """``status``: this worker's process id, version and loaded models."""
    return {
        "pid": os.getpid(),
        "version": deepimagej.__version__,
        "protocol": PROTOCOL,
        "loaded": [f"{root} ({fmt})" for root, fmt in sorted(server.loaded)],
    }


HANDLERS: dict[str, Handler] = {
    "dialog": dialog_request,
    "run.prepare": run_prepare,
    "run": run_request,
    "explore": explore_request,
    "install": install_request,
    "build": build_request,
    "train.prepare": train_prepare,
    "train": train_request,
    "jobs": remote_requests.jobs_request,
    "echo": echo_request,
    "status": status_request,
}


# ---------------------------------------------------------------- process
def serve_stdio(shared_dir: Path) -> None:
    """Serve the plugin on this process's stdin/stdout until stdin closes, then exit.

    Stdout is kept for the protocol: file descriptor 1 is pointed at stderr, so that whatever
    a library prints cannot break a reply. On exit the shared folder is removed and the process
    ends at once (a model still running in the job thread is abandoned).
    """
    protocol_out = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    server = Server(protocol_out, shared_dir)
    server.hello()
    try:
        server.serve(sys.stdin.buffer)
    finally:
        shutil.rmtree(shared_dir, ignore_errors=True)
        sys.stderr.flush()
        os._exit(0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="deepimagej worker", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--shared-dir",
        type=Path,
        required=True,
        help="folder of the memory-mapped image files (made by the plugin)",
    )
    args = parser.parse_args(argv)
    if not args.shared_dir.is_dir():
        print(f"error: --shared-dir {args.shared_dir}: not a folder", file=sys.stderr)
        return 2
    serve_stdio(args.shared_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
