""" "DeepImageJ Jobs": the job manager of remote runs and trainings (:mod:`deepimagej.remote`) in ImageJ.

Clicked from the menu it shows the job table ("DeepImageJ Jobs": id, host, kind, state, progress,
start, elapsed time) and asks what to do with which job; called from a macro it does what its
options say (and the Recorder records them)::

    run("DeepImageJ Jobs");                                  // the table (refreshed from the hosts),
    run("DeepImageJ Jobs", "action=refresh");                // and one line per job in the Log
    run("DeepImageJ Jobs", "action=fetch job=3");            // a run: its result opens as an image
                                                             // a training: its bundle is installed
    run("DeepImageJ Jobs", "action=cancel job=4");
    run("DeepImageJ Jobs", "action=log job=4");              // the job's log into ImageJ's Log

A run started from "DeepImageJ Run" comes back as the model's output, and the bundle's
post-processing macros run on it here, as they would have without ``detach``.

The plugin jar in a user's own ImageJ/Fiji has the same command: its worker answers with
:func:`dialog_for`, :func:`table_rows`, :func:`perform` and :class:`Fetched`, and Java opens the image.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deepimagej import remote
from deepimagej.errors import RemoteError
from deepimagej.imagej.commands import dialogs
from deepimagej.imagej.commands.options import parse_options
from deepimagej.imagej.commands.run import bundle_macro_runner, show_output
from deepimagej.io import read_image

ACTIONS = dialogs.JOB_ACTIONS
TABLE = "DeepImageJ Jobs"
NO_JOBS = (
    "[DeepImageJ Jobs] no jobs yet: use host=NAME in DeepImageJ Run or U-Net Train, or "
    "deepimagej run/train --host NAME (servers: deepimagej remote add NAME user@server)"
)


def _elapsed(job: remote.Job) -> str:
    s = job.elapsed
    return "-" if s is None else f"{int(s) // 3600}:{int(s) % 3600 // 60:02d}:{int(s) % 60:02d}"


def table_rows(found: list[remote.Job]) -> list[dict[str, str | float]]:
    """The rows of the job table, column by column (the embedded ImageJ and the plugin jar show the same)."""
    return [
        {
            "ID": float(job.id),
            "Host": job.host,
            "Kind": job.kind,
            "State": job.state,
            "Progress": remote.describe_progress(job) or "-",
            "Started": time.strftime("%Y-%m-%d %H:%M", time.localtime(job.started or job.created)),
            "Elapsed": _elapsed(job),
            "Result": ", ".join(job.local.get("outputs", []))
            if job.state == "done"
            else (job.error or job.note or "-"),
        }
        for job in found
    ]


def show_table(found: list[remote.Job]) -> None:
    """The job table as an ImageJ results window titled "DeepImageJ Jobs"."""
    from deepimagej.imagej.java_classes import jc

    table = jc.ResultsTable()
    for row in table_rows(found):
        table.incrementCounter()
        for column, value in row.items():
            table.addValue(column, value)
    table.show(TABLE)


def dialog_for(found: list[remote.Job]) -> dialogs.Dialog | None:
    """The command's dialog for these jobs; None when there are none to choose from."""
    if not found:
        return None
    return dialogs.jobs_dialog([(f"{j.id}: {j.kind} on {j.host} ({j.state})", j.state) for j in found])


@dataclass(frozen=True)
class Request:
    """What the command was asked: an action of :data:`ACTIONS` and, but for ``refresh``, a job ID."""

    action: str
    job: str = ""


def read_request(options: str | None) -> Request:
    """The request in macro options (``action=fetch job=3``; ``job`` may be a label of the dialog).

    Raises:
        RemoteError: an unknown action, or an action that needs a job without one.
    """
    opts = {k.lower(): v.strip() for k, v in parse_options(options).items()}
    action = opts.get("action", "refresh") or "refresh"
    job = opts.get("job", "").split(":", 1)[0].strip()
    if action == "list":
        action = "refresh"
    if action not in ACTIONS:
        raise RemoteError(f"DeepImageJ Jobs: action={action}; use one of: {', '.join(ACTIONS)}")
    if action != "refresh" and not job:
        raise RemoteError(f"DeepImageJ Jobs: action={action} needs job=ID (the ID column of the table)")
    return Request(action, job)


@dataclass(frozen=True)
class Fetched:
    """A done job's result, downloaded.

    Attributes:
        job: the job.
        path: its result: a training's bundle folder, a run's (first) output file or folder.
        image: whether ``path`` is an image to open.
        post: the bundle's post-processing macros to run on that image (a run started from
            DeepImageJ Run with ``host=``: the macros run here, as without ``detach``).
        bundle: the bundle folder those macros belong to.
        title: the image's title then.
        calibration: the input image's calibration then.
    """

    job: remote.Job
    path: Path
    image: bool
    post: tuple[Path, ...] = ()
    bundle: Path | None = None
    title: str | None = None
    calibration: dict[str, Any] | None = None

    def message(self) -> str:
        """The Log line for what was fetched but not opened (a bundle, a folder)."""
        if self.job.kind == "train":
            return (
                f"[DeepImageJ Jobs] job {self.job.id}: bundle installed at {self.path}; run it with "
                f'run("DeepImageJ Run", "model=[{self.path}]")'
            )
        return f"[DeepImageJ Jobs] job {self.job.id}: results in {self.path}"


def fetch(job_id: str) -> Fetched:
    """Download a done job's result (:func:`deepimagej.remote.fetch`) and say what to do with it here."""
    paths = remote.fetch(job_id)
    job = remote.job(job_id, refresh=False)
    origin = job.local.get("origin", {})
    if job.kind == "train":
        return Fetched(job, paths[0], image=False)
    if origin.get("imagej") == "run":
        post = tuple(Path(p) for p in origin["post"])
        bundle = Path(origin["bundle"]) if origin.get("bundle") else (post[0].parent if post else None)
        return Fetched(job, paths[0], True, post, bundle, origin["title"], origin["calibration"])
    return Fetched(job, paths[0], image=paths[0].is_file())


def perform(request: Request, found: list[remote.Job], log: Callable[[str], None]) -> Fetched | None:
    """Do ``request`` (the Log lines go to ``log``); a fetched result is returned for the caller to open."""
    if request.action == "refresh":
        if not found:
            log(NO_JOBS)
        for job in found:
            log(
                f"[DeepImageJ Jobs] {job.id}: {job.kind} on {job.host}: {job.state} "
                f"{remote.describe_progress(job)}{f' ({job.note})' if job.note else ''}".rstrip()
            )
    elif request.action == "cancel":
        job = remote.cancel(request.job)
        log(f"[DeepImageJ Jobs] job {job.id}: {job.state}")
    elif request.action == "log":
        remote.log(request.job, echo=lambda line: log(f"[job {request.job}] {line}"))
    else:
        fetched = fetch(request.job)
        if not fetched.image:
            log(fetched.message())
        return fetched
    return None


def open_in_imagej(ij: Any, fetched: Fetched) -> Any:
    """A fetched run's image in the embedded ImageJ, post-processed as it would have been; the current image."""
    from deepimagej.imagej.java_classes import jc

    if fetched.post or fetched.title is not None:
        output = read_image(fetched.path)
        result = show_output(
            ij,
            output.array,
            output.axes,
            fetched.title or fetched.path.name,
            list(fetched.post),
            fetched.calibration or {},
            bundle_macro_runner(ij, fetched.bundle or Path.cwd()),
        )
    else:
        result = ij.open(fetched.path)
    result.show()
    ij.current = result
    jc.IJ.log(f"[DeepImageJ Jobs] job {fetched.job.id}: result opened as '{result.getTitle()}'")
    return result


def jobs_command(ij: Any, options: str | None) -> None:
    """The "DeepImageJ Jobs" command; called from the Java shim."""
    from deepimagej.imagej.java_classes import jc

    found = remote.jobs()
    show_table(found)
    if (options or "").strip() or jc.Interpreter.getInstance() is not None or not found:
        request = read_request(options)  # a macro's options (none: the table, and the jobs in the Log)
    else:
        dialog = dialog_for(found)
        assert dialog is not None
        values = dialogs.show(dialog)
        if values is None:
            return
        request = read_request(dialog.options(values))
    fetched = perform(request, found, lambda line: jc.IJ.log(line))
    if fetched is not None and fetched.image:
        open_in_imagej(ij, fetched)
    show_table(remote.jobs(refresh=False))
