""" "DeepImageJ Jobs": the job manager of remote runs and trainings (:mod:`deepimagej.remote`) in ImageJ.

Clicked from the menu it shows the job table ("DeepImageJ Jobs": id, host, kind, state, progress,
start, elapsed time) and asks what to do with which job; called from a macro it does what its
options say (and the Recorder records them)::

    run("DeepImageJ Jobs");                                  // the table (refreshed from the hosts)
    run("DeepImageJ Jobs", "action=refresh");                // the same, and one line per job in the Log
    run("DeepImageJ Jobs", "action=fetch job=3");            // a run: its result opens as an image
                                                             // a training: its bundle is installed
    run("DeepImageJ Jobs", "action=cancel job=4");
    run("DeepImageJ Jobs", "action=log job=4");              // the job's log into ImageJ's Log

A run started from "DeepImageJ Run" comes back as the model's output, and the bundle's
post-processing macros run on it here, as they would have without ``detach``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from deepimagej import remote
from deepimagej.errors import RemoteError
from deepimagej.imagej.commands.options import parse_options
from deepimagej.imagej.commands.run import bundle_macro_runner, show_output
from deepimagej.io import read_image

ACTIONS = ("refresh", "fetch", "cancel", "log")
TABLE = "DeepImageJ Jobs"


def _elapsed(job: remote.Job) -> str:
    s = job.elapsed
    return "-" if s is None else f"{int(s) // 3600}:{int(s) % 3600 // 60:02d}:{int(s) % 60:02d}"


def show_table(found: list[remote.Job]) -> None:
    """The job table as an ImageJ results window titled "DeepImageJ Jobs"."""
    from deepimagej.imagej.java_classes import jc

    table = jc.ResultsTable()
    for job in found:
        table.incrementCounter()
        table.addValue("ID", float(job.id))
        table.addValue("Host", job.host)
        table.addValue("Kind", job.kind)
        table.addValue("State", job.state)
        table.addValue("Progress", remote.describe_progress(job) or "-")
        table.addValue("Started", time.strftime("%Y-%m-%d %H:%M", time.localtime(job.started or job.created)))
        table.addValue("Elapsed", _elapsed(job))
        table.addValue(
            "Result",
            ", ".join(job.local.get("outputs", []))
            if job.state == "done"
            else (job.error or job.note or "-"),
        )
    table.show(TABLE)


def fetch_into_imagej(ij: Any, job_id: str) -> Any:
    """Download a done job's result: a run opens as the current image (post-processed as it would have
    been), a training's bundle is installed where the job was told to write it. Returns the image or None.
    """
    from deepimagej.imagej.java_classes import jc

    IJ = jc.IJ
    paths = remote.fetch(job_id)
    job = remote.job(job_id, refresh=False)
    origin = job.local.get("origin", {})
    if job.kind == "train":
        IJ.log(
            f"[DeepImageJ Jobs] job {job.id}: bundle installed at {paths[0]}; run it with "
            f'run("DeepImageJ Run", "model=[{paths[0]}]")'
        )
        return None
    if origin.get("imagej") == "run":
        output = read_image(paths[0])
        post = [Path(p) for p in origin["post"]]
        root = Path(origin["bundle"]) if origin.get("bundle") else (post[0].parent if post else Path.cwd())
        result = show_output(
            ij,
            output.array,
            output.axes,
            origin["title"],
            post,
            origin["calibration"],
            bundle_macro_runner(ij, root),
        )
    elif paths[0].is_file():
        result = ij.open(paths[0])
    else:
        IJ.log(f"[DeepImageJ Jobs] job {job.id}: results in {paths[0]}")
        return None
    result.show()
    ij.current = result
    IJ.log(f"[DeepImageJ Jobs] job {job.id}: result opened as '{result.getTitle()}'")
    return result


def _ask(found: list[remote.Job]) -> tuple[str, str] | None:
    """The dialog: which job, which action (None when cancelled)."""
    from deepimagej.imagej.java_classes import jc

    gd = jc.GenericDialog(TABLE)
    labels = [f"{j.id}: {j.kind} on {j.host} ({j.state})" for j in reversed(found)]
    gd.addChoice("Job", labels, labels[0])
    gd.addChoice("Action", ACTIONS, "fetch" if found[-1].state == "done" else ACTIONS[0])
    gd.addMessage(
        "fetch: open a run's result / install a training's bundle (done jobs); cancel: stop a job;\n"
        "log: the job's log into the Log window; refresh: ask the servers again."
    )
    gd.showDialog()
    if gd.wasCanceled():
        return None
    job = str(gd.getNextChoice()).split(":")[0]
    return str(gd.getNextChoice()), job


def jobs_command(ij: Any, options: str | None) -> None:
    """The "DeepImageJ Jobs" command; called from the Java shim."""
    from deepimagej.imagej.java_classes import jc

    IJ = jc.IJ
    opts = {k.lower(): v.strip() for k, v in parse_options(options).items()}
    found = remote.jobs()
    show_table(found)
    in_macro = jc.Interpreter.getInstance() is not None
    if not (options or "").strip():
        if in_macro:  # run("DeepImageJ Jobs") in a macro: the table, no dialog
            return
        if not found:
            IJ.log(
                "[DeepImageJ Jobs] no jobs yet: use host=NAME in DeepImageJ Run or U-Net Train "
                "(servers: deepimagej remote add NAME user@server)"
            )
            return
        chosen = _ask(found)
        if chosen is None:
            return
        action, job_id = chosen
    else:
        action, job_id = opts.get("action", "refresh") or "refresh", opts.get("job", "")
    if action in ("refresh", "list"):
        for job in found:
            IJ.log(
                f"[DeepImageJ Jobs] {job.id}: {job.kind} on {job.host}: {job.state} "
                f"{remote.describe_progress(job)}{f' ({job.note})' if job.note else ''}".rstrip()
            )
        return
    if action not in ACTIONS:
        raise RemoteError(f"DeepImageJ Jobs: action={action}; use one of: {', '.join(ACTIONS)}")
    if not job_id:
        raise RemoteError(f"DeepImageJ Jobs: action={action} needs job=ID (the ID column of the table)")
    if action == "cancel":
        job = remote.cancel(job_id)
        IJ.log(f"[DeepImageJ Jobs] job {job.id}: {job.state}")
    elif action == "log":
        remote.log(job_id, echo=lambda line: IJ.log(f"[job {job_id}] {line}"))
    else:
        fetch_into_imagej(ij, job_id)
    show_table(remote.jobs(refresh=False))
