"""``deepimagej remote ...`` (hosts), ``deepimagej jobs ...`` (the job table) and ``--host`` for run/train.

Registered into the main ``deepimagej`` group by :mod:`deepimagej.cli`. The hidden
``deepimagej remote server VERB`` commands are the server's side (:mod:`deepimagej.remote.server`),
which the client runs over SSH.

Examples::

    deepimagej remote add gpu me@gpu.example.org --key ~/.ssh/id_ed25519
    deepimagej remote test gpu --accept-host-key
    deepimagej run bundles/unet-pancreatic cells.tif -o labels.tif --host gpu
    deepimagej train --images imgs/ --rois rois/ --out my-unet --epochs 50 --host gpu --detach
    deepimagej jobs                 # every job with its state and progress
    deepimagej jobs fetch 3         # the result of job 3, once done
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from deepimagej.cli_errors import friendly_errors
from deepimagej.errors import RemoteError
from deepimagej.remote import client
from deepimagej.remote.protocol import DEFAULT_WORKDIR
from deepimagej.remote.store import DEFAULT_TIMEOUT_S, Job

# The server's side (deepimagej.remote.server, .runner) is imported inside its commands: it needs POSIX
# (fcntl, pty), and a client on Windows still has every other command.

# ----------------------------------------------------------------------------- --host for run and train


def forwarded_options(exclude: Sequence[str] = ()) -> list[str]:
    """The options the user gave to the current command, as arguments for the same command on a server.

    Options left at their defaults are not repeated; ``--host``, ``--detach`` and the options
    named in ``exclude`` (paths, which are uploaded instead) are left out.
    """
    ctx = click.get_current_context()
    args: list[str] = []
    for param in ctx.command.params:
        if not isinstance(param, click.Option) or param.name in ("host", "detach", *exclude):
            continue
        if ctx.get_parameter_source(param.name) in (
            None,
            ParameterSource.DEFAULT,
            ParameterSource.DEFAULT_MAP,
        ):
            continue
        value = ctx.params[param.name]
        flag = max(param.opts, key=len)
        if param.is_flag:
            if value:
                args.append(flag)
            elif param.secondary_opts:
                args.append(max(param.secondary_opts, key=len))
        elif param.multiple:
            for item in value:
                args += [flag, str(item)]
        elif value is not None:
            args += [flag, str(value)]
    return args


class _Status:
    """One line on a terminal that shows where a job is (nothing when the output is not a terminal)."""

    def __init__(self) -> None:
        self.enabled = sys.stderr.isatty()
        self.shown = False

    def __call__(self, job: Job) -> None:
        if not self.enabled:
            return
        elapsed = f" {job.elapsed:.0f} s" if job.elapsed is not None else ""
        click.echo(
            f"\r\x1b[2Kjob {job.id} on {job.host}: {job.state}{elapsed} {client.describe_progress(job)}",
            err=True,
            nl=False,
        )
        self.shown = True

    def echo(self, text: str) -> None:
        if self.shown:
            click.echo("\r\x1b[2K", err=True, nl=False)
            self.shown = False
        click.echo(text)

    def close(self) -> None:
        if self.shown:
            click.echo("", err=True)


def remote_run(
    host: str,
    bundle: Path,
    input_path: Path | None,
    named_inputs: Sequence[str],
    outputs: Sequence[str],
    options: Sequence[str],
    detach: bool,
) -> None:
    """``deepimagej run ... --host NAME``: the same command as a job on the server (see :mod:`deepimagej.remote.client`).

    Args:
        host: the host name.
        bundle: the bundle folder (uploaded).
        input_path: the positional INPUT (uploaded), or None.
        named_inputs: ``--input NAME=PATH`` values (each PATH uploaded).
        outputs: ``-o`` values, ``PATH`` or ``NAME=PATH`` (downloaded into when the job is done).
        options: the other options, as arguments (:func:`forwarded_options`).
        detach: return once the job runs.
    """
    command: list[client.Token] = [client.Upload(bundle)]
    if input_path is not None:
        command.append(client.Upload(input_path))
    for value in named_inputs:
        name, sep, path = value.partition("=")
        if not sep or not name.strip() or not path.strip():
            raise RemoteError(f"--input '{value}': expected NAME=PATH")
        command += ["--input", client.Upload(Path(path.strip()), prefix=f"{name.strip()}=")]
    for value in outputs:
        name, sep, path = value.partition("=")
        command += [
            "-o",
            client.Output(Path(path.strip()), prefix=f"{name.strip()}=")
            if sep
            else client.Output(Path(value)),
        ]
    command += options
    status = _Status()
    try:
        client.submit(host, "run", command, detach=detach, echo=status.echo, on_update=status)
    finally:
        status.close()


def remote_train(
    host: str, uploads: dict[str, Path | None], out_dir: Path, options: Sequence[str], detach: bool
) -> None:
    """``deepimagej train ... --host NAME``: the same training as a job on the server; the bundle comes back to ``out_dir``.

    Args:
        host: the host name.
        uploads: path options to upload, e.g. ``{"--images": imgs, "--rois": rois, "--from": None}`` (``None``: not given).
        out_dir: the bundle folder to write here.
        options: the other options, as arguments (:func:`forwarded_options`).
        detach: return once the job runs.
    """
    command: list[client.Token] = []
    for flag, path in uploads.items():
        if path is not None:
            command += [flag, client.Upload(path)]
    command += ["--out", client.Output(out_dir), "--work", client.Work(), *options]
    status = _Status()
    try:
        client.submit(host, "train", command, detach=detach, echo=status.echo, on_update=status)
    finally:
        status.close()


# ----------------------------------------------------------------------------- deepimagej remote


@click.group("remote")
def remote() -> None:
    """Servers that run jobs over SSH: deepimagej run/train ... --host NAME."""


@remote.command("add")
@click.argument("name")
@click.argument("address", metavar="USER@HOST[:PORT]")
@click.option(
    "--key",
    type=click.Path(path_type=Path),
    help="Private key file (default: SSH agent, ~/.ssh/config, ~/.ssh/id_*).",
)
@click.option("--workdir", default=DEFAULT_WORKDIR, show_default=True, help="Work folder on the server.")
@click.option(
    "--deepimagej",
    "command",
    default="deepimagej",
    show_default=True,
    help="The server's deepimagej command (default: the one on its login PATH).",
)
@click.option(
    "--timeout",
    type=float,
    default=DEFAULT_TIMEOUT_S,
    show_default=True,
    help="Seconds to wait for the server before it counts as down.",
)
@click.option("--replace", is_flag=True, help="Replace a host of the same name.")
@friendly_errors
def add_cmd(
    name: str, address: str, key: Path | None, workdir: str, command: str, timeout: float, replace: bool
) -> None:
    """Add a server NAME at USER@HOST[:PORT] (check it with: deepimagej remote test NAME)."""

    host = client.add_host(
        name, address, key=key, workdir=workdir, deepimagej=command, timeout=timeout, replace=replace
    )
    click.echo(
        f"added {host.name}: {host.address}{f' key {host.key}' if host.key else ''}, work folder "
        f"{host.workdir}, deepimagej '{host.deepimagej}'; check it with: deepimagej remote test {host.name}"
    )


@remote.command("list")
@friendly_errors
def list_cmd() -> None:
    """List the servers."""

    found = client.hosts()
    if not found:
        click.echo("no hosts; add one with: deepimagej remote add NAME user@server")
    for h in found:
        click.echo(
            f"{h.name:<12} {h.address:<32} key {h.key or '(agent/ssh config)'}  workdir {h.workdir}  "
            f"deepimagej {h.deepimagej}"
        )


@remote.command("remove")
@click.argument("name")
@friendly_errors
def remove_cmd(name: str) -> None:
    """Forget the server NAME (its jobs stay in the table)."""

    client.remove_host(name)
    click.echo(f"removed {name}")


@remote.command("test")
@click.argument("name")
@click.option(
    "--accept-host-key", is_flag=True, help="Trust the server's host key if it is not yet in known_hosts."
)
@friendly_errors
def test_cmd(name: str, accept_host_key: bool) -> None:
    """Connect to NAME and check its deepimagej: version, cores, memory, GPUs, engines, disk space."""

    info = client.test_host(name, accept_host_key=accept_host_key)
    gb = 1e9
    gpus = (
        ", ".join(f"{g['name']} ({g['memory'] / gb:.0f} GB)" for g in info["gpus"])
        or "none (jobs run on the CPU)"
    )
    engines = ", ".join(
        f"{k} {v['version'] or ''}".strip() for k, v in info["engines"].items() if v["installed"]
    )
    click.echo(f"{name}: reached {info['hostname']} in {info['latency_s']:.2f} s")
    click.echo(
        f"deepimagej {info['version']} (remote protocol {info['protocol']}), Python {info['python']} "
        f"({info['executable']})"
    )
    click.echo(
        f"cores {info['cores']}, memory {info['memory_total'] / gb:.1f} GB "
        f"({info['memory_available'] / gb:.1f} GB free), GPUs: {gpus}"
    )
    click.echo(f"engines: {engines or 'none'}")
    click.echo(f"work folder {info['workdir']}: {info['disk_free'] / gb:.1f} GB free")
    for line in info["missing"]:
        click.echo(f"missing: {line}")
    click.echo(
        "ready"
        if len(info["missing"]) < len(info["engines"])
        else "not ready: no engine installed on the server"
    )


@remote.command("clean")
@click.argument("name")
@friendly_errors
def clean_cmd(name: str) -> None:
    """Delete uploads on NAME that no job uses any more."""

    answer = client.clean(name)
    click.echo(f"{name}: freed {answer['freed'] / 1e6:.1f} MB; {answer['free'] / 1e9:.1f} GB free")


# ----------------------------------------------------------------------------- the server's side (hidden)


@remote.group("server", hidden=True)
def server() -> None:
    """The server's side of remote jobs (run over SSH by the client; answers in JSON)."""


def _answer(value: Any) -> None:
    click.echo(json.dumps(value))


def _payload() -> Any:
    try:
        return json.loads(sys.stdin.read() or "null")
    except ValueError:
        raise RemoteError("the request is not JSON") from None


_workdir_option = click.option("--workdir", required=True, help="The server's work folder.")


@server.command("hello")
@_workdir_option
@friendly_errors
def hello_cmd(workdir: str) -> None:
    from deepimagej.remote import server as srv

    _answer(srv.hello(srv.Workdir(workdir)))


@server.command("have")
@_workdir_option
@friendly_errors
def have_cmd(workdir: str) -> None:
    from deepimagej.remote import server as srv

    _answer(srv.have(srv.Workdir(workdir), _payload() or []))


@server.command("submit")
@_workdir_option
@friendly_errors
def submit_cmd(workdir: str) -> None:
    from deepimagej.remote import server as srv

    _answer(srv.submit(srv.Workdir(workdir), _payload()))


@server.command("status")
@_workdir_option
@click.argument("job_ids", nargs=-1)
@friendly_errors
def status_cmd(workdir: str, job_ids: tuple[str, ...]) -> None:
    from deepimagej.remote import server as srv

    _answer(srv.status(srv.Workdir(workdir), list(job_ids)))


@server.command("cancel")
@_workdir_option
@click.argument("job_id")
@friendly_errors
def cancel_server_cmd(workdir: str, job_id: str) -> None:
    from deepimagej.remote import server as srv

    _answer(srv.cancel(srv.Workdir(workdir), job_id))


@server.command("resume")
@_workdir_option
@click.argument("job_id")
@friendly_errors
def resume_server_cmd(workdir: str, job_id: str) -> None:
    from deepimagej.remote import server as srv

    _answer(srv.resume(srv.Workdir(workdir), job_id))


@server.command("outputs")
@_workdir_option
@click.argument("job_id")
@friendly_errors
def outputs_cmd(workdir: str, job_id: str) -> None:
    from deepimagej.remote import server as srv

    _answer(srv.outputs(srv.Workdir(workdir), job_id))


@server.command("remove")
@_workdir_option
@click.argument("job_id")
@friendly_errors
def remove_server_cmd(workdir: str, job_id: str) -> None:
    from deepimagej.remote import server as srv

    _answer(srv.remove(srv.Workdir(workdir), job_id))


@server.command("clean")
@_workdir_option
@friendly_errors
def clean_server_cmd(workdir: str) -> None:
    from deepimagej.remote import server as srv

    _answer(srv.clean(srv.Workdir(workdir)))


@server.command("run-job")
@_workdir_option
@click.argument("job_id")
@friendly_errors
def run_job_cmd(workdir: str, job_id: str) -> None:
    from deepimagej.remote import server as srv
    from deepimagej.remote.runner import run_job

    run_job(srv.Workdir(workdir), job_id)


# ----------------------------------------------------------------------------- deepimagej jobs


def _when(t: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(t)) if t else "-"


def _duration(s: float | None) -> str:
    if s is None:
        return "-"
    s = int(s)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


@click.group("jobs", invoke_without_command=True)
@click.option("--no-refresh", is_flag=True, help="Show the table as last seen (do not ask the hosts).")
@click.pass_context
@friendly_errors
def jobs(ctx: click.Context, no_refresh: bool) -> None:
    """Remote jobs: list them (no sub-command), or show, log, cancel, fetch, resume, remove one."""
    if ctx.invoked_subcommand is not None:
        return
    found = client.jobs(refresh=not no_refresh)
    if not found:
        click.echo("no jobs yet: deepimagej run ... --host NAME, or deepimagej train ... --host NAME")
        return
    click.echo(f"{'ID':>4}  {'HOST':<10} {'KIND':<6} {'STATE':<10} {'STARTED':<16} {'ELAPSED':>8}  PROGRESS")
    notes = []
    for j in found:
        click.echo(
            f"{j.id:>4}  {j.host:<10} {j.kind:<6} {j.state:<10} {_when(j.started or j.created):<16} "
            f"{_duration(j.elapsed):>8}  {client.describe_progress(j)}{'  *' if j.note else ''}"
        )
        if j.note:
            notes.append(f"* job {j.id}: {j.note}")
    for note in dict.fromkeys(notes):
        click.echo(note, err=True)


@jobs.command("show")
@click.argument("job_id")
@friendly_errors
def show_cmd(job_id: str) -> None:
    """Everything about job JOB_ID."""

    j = client.job(job_id)
    rows = [
        ("job", f"{j.id} ({j.kind}) on {j.host}, server folder {j.workdir or '?'}/jobs/{j.remote_id}"),
        ("command", "deepimagej " + " ".join(j.local.get("argv", []))),
        ("state", j.state + (f": {j.error}" if j.error and j.state != "done" else "")),
        ("progress", client.describe_progress(j) or "-"),
        ("created", _when(j.created)),
        ("started", _when(j.started)),
        ("finished", _when(j.finished)),
        ("elapsed", _duration(j.elapsed)),
        (
            "uploaded",
            (
                f"{j.uploaded_bytes / 1e6:.1f} MB sent, {j.present_bytes / 1e6:.1f} MB of "
                f"{j.total_bytes / 1e6:.1f} MB were already on the server"
            ),
        ),
        (
            "result",
            ", ".join(j.local.get("outputs", [])) + (f" (fetched {_when(j.fetched)})" if j.fetched else ""),
        ),
    ]
    for key, value in rows:
        click.echo(f"{key:<9} {value}")


@jobs.command("log")
@click.argument("job_id")
@click.option("-f", "--follow", is_flag=True, help="Keep showing the log until the job ends.")
@friendly_errors
def log_cmd(job_id: str, follow: bool) -> None:
    """The log of job JOB_ID (what deepimagej printed on the server)."""

    client.log(job_id, follow=follow, echo=click.echo)


@jobs.command("cancel")
@click.argument("job_id")
@friendly_errors
def cancel_cmd(job_id: str) -> None:
    """Stop job JOB_ID and every process it started on the server."""

    j = client.cancel(job_id)
    click.echo(f"job {j.id}: {j.state}")


@jobs.command("fetch")
@click.argument("job_id")
@click.option(
    "--to", type=click.Path(path_type=Path), help="Write the result here instead of where the job said."
)
@friendly_errors
def fetch_cmd(job_id: str, to: Path | None) -> None:
    """Download the result of the done job JOB_ID (atomically)."""

    for path in client.fetch(job_id, to=to):
        click.echo(f"job {job_id}: {path}")


@jobs.command("resume")
@click.argument("job_id")
@click.option("--detach", is_flag=True, help="Return once the job runs again.")
@friendly_errors
def resume_cmd(job_id: str, detach: bool) -> None:
    """Continue job JOB_ID: finish its upload, or run it again (a training from its last checkpoint)."""

    status = _Status()
    try:
        j = client.resume(job_id, detach=detach, echo=status.echo, on_update=status)
    finally:
        status.close()
    click.echo(f"job {j.id}: {j.state}")


@jobs.command("remove")
@click.argument("job_id")
@friendly_errors
def remove_job_cmd(job_id: str) -> None:
    """Delete the finished job JOB_ID from the table and from the server."""

    client.remove(job_id)
    click.echo(f"removed job {job_id}")
