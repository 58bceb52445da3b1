"""The plugin worker's requests that involve servers (:mod:`deepimagej.remote`).

DeepImageJ Run and U-Net Train with ``host=NAME`` (the model runs, or trains, on that server as
a job; ImageJ keeps the bundle's macros), and DeepImageJ Jobs (the job table, fetch, cancel,
log). The work itself is the embedded ImageJ's: :func:`deepimagej.imagej.commands.run.run_on_host`,
:func:`deepimagej.imagej.commands.train.submit_training` and :mod:`deepimagej.imagej.commands.jobs`.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deepimagej.errors import DeepImageJError
from deepimagej.imagej.commands.options import RunOptions
from deepimagej.imagej.plugin.protocol import Cancelled, read_image, write_image

if TYPE_CHECKING:
    from deepimagej.imagej.commands.dialogs import Dialog
    from deepimagej.imagej.plugin.worker import Job, Server

# like the worker's other requests, these load the commands' modules (and SSH) when first used


def jobs_dialog() -> Dialog | None:
    """DeepImageJ Jobs' dialog for the jobs of this computer's table (None: there are none)."""
    from deepimagej import remote
    from deepimagej.imagej.commands import jobs

    return jobs.dialog_for(remote.jobs())


def run_on_host(job: Job, plan: Mapping[str, Any], spec: Any, image: Any, shared: Path) -> dict[str, Any]:
    """``run`` with ``host``: the model step as a job on that server (as the embedded ImageJ's
    DeepImageJ Run does), its output shared back in the mapped file ``shared``; detached, no
    output and the job's ID."""
    from deepimagej import remote
    from deepimagej.imagej.commands import run as run_command

    opts = RunOptions(model=str(spec.root), host=str(plan["host"]), detach=bool(plan.get("detach")))
    post = [str(m["path"]) for m in plan.get("postprocessing") or []]
    title = str(plan.get("title") or spec.outputs[0].name)
    origin = {
        "imagej": "run",
        "title": title,
        "calibration": dict(image.calibration),
        "post": post,
        "model": spec.name,
        "bundle": str(spec.root),
    }
    settings: run_command.PredictSettings = {
        "tile": plan.get("tile") or None,
        "weights_format": plan.get("weights_format"),
        "apply_preprocessing": bool(plan.get("apply_preprocessing")),
        "apply_postprocessing": bool(plan.get("apply_postprocessing")),
    }
    submitted: list[int] = []

    def on_update(remote_job: remote.Job) -> None:
        submitted[:] = [remote_job.id]
        tiles = (remote_job.progress or {}).get("tiles") or [0, 1]
        text = f"DeepImageJ Run: {spec.name} on {remote_job.host}: {remote_job.state} "
        job.progress(int(tiles[0]), max(int(tiles[1]), 1), text + remote.describe_progress(remote_job))

    try:
        output = run_command.run_on_host(
            opts,
            spec,
            image.array,
            image.axes,
            settings,
            origin,
            lambda text: job.log(f"[DeepImageJ] {text}"),
            on_update,
        )
    except Cancelled:
        if submitted:  # Esc in ImageJ: the server's job stops too
            remote.cancel(submitted[0])
        raise
    if output is None:
        return {"outputs": {}, "detached": submitted[0] if submitted else None}
    described = write_image(
        output.array, output.axes, shared, title=title, calibration=dict(image.calibration)
    )
    return {"outputs": {spec.outputs[0].name: described}}


def train_on_host(job: Job, args: Mapping[str, Any], settings: dict[str, Any]) -> dict[str, Any]:
    """``train`` with ``host``: the shared image and ROIs (or the folders) to a job on that server."""
    from deepimagej import remote
    from deepimagej.imagej.commands.dialogs import DATA_CHOICES
    from deepimagej.imagej.commands.train import (
        checked_output,
        folders_for_host,
        one_image_for_host,
        rois_are_points,
        submit_training,
    )
    from deepimagej.imagej.models import find_model

    output = checked_output(settings)
    source = find_model(settings["from"]).root if settings["from"] else None

    submitted: list[int] = []

    def on_update(remote_job: remote.Job) -> None:
        submitted[:] = [remote_job.id]
        progress = remote_job.progress or {}
        epoch, epochs = int(progress.get("epoch", 0)), int(progress.get("epochs", 0) or settings["epochs"])
        text = f"U-Net Train on {remote_job.host}: {remote_job.state} {remote.describe_progress(remote_job)}"
        job.progress(epoch, max(epochs, 1), text)

    with tempfile.TemporaryDirectory() as tmp:
        if settings["data"] == DATA_CHOICES[0]:
            if "image" not in args:
                raise DeepImageJError("U-Net Train: ImageJ sent no image (plugin and worker differ)")
            image = read_image(args["image"])
            are_points = rois_are_points(list(args.get("roi_types") or []))
            data = one_image_for_host(
                Path(tmp),
                image.title,
                image.array,
                image.axes,
                Path(args["rois"]),
                are_points,
                settings["task"],
                job.log,
            )
        else:
            data = folders_for_host(settings)
        try:
            remote_job = submit_training(settings, data, source, output, job.log, on_update)
        except Cancelled:
            if submitted:  # Esc in ImageJ: the server's job stops too
                remote.cancel(submitted[0])
            raise
    return {"output": str(output), "job": remote_job.id, "detached": bool(settings["detach"])}


def jobs_request(server: Server, job: Job, args: dict[str, Any]) -> dict[str, Any]:
    """``jobs``: DeepImageJ Jobs (remote runs and trainings): the table's rows, and a fetched run's image to open.

    The reply's ``open`` is the image file, ``postprocessing`` the bundle's macros to run on it and
    ``title`` its title (as DeepImageJ Run with ``host=`` would have shown it).
    """
    from deepimagej import remote
    from deepimagej.imagej.commands import jobs

    found = remote.jobs()
    values = args.get("values")
    if values is not None:
        dialog = jobs.dialog_for(found)
        if dialog is None:
            raise DeepImageJError("DeepImageJ Jobs: there is no job any more; refresh the table")
        options = dialog.options(values)
    else:
        options = str(args.get("options") or "")
    fetched = jobs.perform(jobs.read_request(options), found, job.log)
    reply: dict[str, Any] = {"table": jobs.table_rows(remote.jobs(refresh=False))}
    if fetched is not None and fetched.image:
        reply.update(
            open=str(fetched.path),
            postprocessing=[{"name": p.name, "path": str(p)} for p in fetched.post],
            title=fetched.title or fetched.path.name,
            job=str(fetched.job.id),
        )
    return reply
