"""Remote jobs from the client's side: upload, submit, follow, fetch, and the job table's verbs.

A job is one ``deepimagej run`` or ``deepimagej train`` command run on a host. Its arguments are
literal strings and references to local files (:class:`Upload`), to results (:class:`Output`)
and to the job's own folder on the server (:class:`Work`, where a training keeps its checkpoints).
:func:`submit`:

1. connects (:func:`deepimagej.remote.ssh.connect`) and records the job (``queued``);
2. hashes every file to upload (SHA-256, cached by path, size and modification time) and asks the
   server which contents it already has: only the others are sent (``uploading``), continuing an
   upload that was interrupted where it stopped;
3. submits the job spec (:mod:`deepimagej.remote.protocol`): the server runs it detached;
4. unless detached, follows the job (its log lines and progress, reconnecting when the connection
   drops) and downloads the results when it is done, atomically, only under the requested output.

The table (:class:`deepimagej.remote.store.Store`) remembers everything, so :func:`jobs`,
:func:`fetch`, :func:`cancel` and :func:`resume` work from another process, after a restart, or
after the client was killed in the middle of a job.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deepimagej.checksums import sha256_of
from deepimagej.errors import ConnectionLost, RemoteError
from deepimagej.outputs import atomic_file, make_folder
from deepimagej.remote import protocol as P
from deepimagej.remote.ssh import Connection, connect
from deepimagej.remote.store import DEFAULT_TIMEOUT_S, Host, Job, Store, client_alive, parse_address

Echo = Callable[[str], None]
OnUpdate = Callable[[Job], None]
#: seconds between two looks at a running job
POLL_S = 1.0
#: a running job whose status has not changed for this long is checked by the server (is it alive?)
STALE_S = 15.0
#: how long a follower tries to reconnect after the connection dropped
RECONNECT_S = 60.0


@dataclass(frozen=True)
class Upload:
    """A local file or folder the job reads (``prefix`` is glued before its path, e.g. ``raw=``)."""

    path: Path
    prefix: str = ""


@dataclass(frozen=True)
class Output:
    """A local file or folder the job writes (downloaded there when the job is done; ``prefix`` as for Upload)."""

    path: Path
    prefix: str = ""


@dataclass(frozen=True)
class Work:
    """The job's own folder on the server (checkpoints: ``jobs resume`` continues from them)."""


Token = str | Upload | Output | Work


def _quiet(_text: str) -> None:
    """An :data:`Echo` that prints nothing."""


def _ignore(_job: Job) -> None:
    """An :data:`OnUpdate` that does nothing."""


# --------------------------------------------------------------------------- hosts


def add_host(
    name: str,
    address: str,
    *,
    key: str | Path | None = None,
    workdir: str | None = None,
    deepimagej: str | None = None,
    timeout: float | None = None,
    replace: bool = False,
) -> Host:
    """Record a host (nothing is contacted; :func:`test_host` checks it).

    Args:
        name: what to call it (``gpu``).
        address: ``user@host[:port]`` (or an alias of ``~/.ssh/config``).
        key: private key file (default: the SSH agent, ``~/.ssh/config``, ``~/.ssh/id_*``).
        workdir: the server's work folder (default ``~/.deepimagej/remote``).
        deepimagej: the server's ``deepimagej`` command (default: the one on its login ``PATH``).
        timeout: seconds to wait for the server before it counts as down (default 10).
        replace: replace a host of the same name.
    """
    if not name or not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise RemoteError(f"host name {name!r}: use letters, digits, '-', '_' or '.'")
    if key is not None and not Path(key).expanduser().is_file():
        raise RemoteError(f"--key {key}: no such key file")
    host = Host(
        name,
        parse_address(address),
        str(Path(key).expanduser().absolute()) if key else None,
        workdir or P.DEFAULT_WORKDIR,
        deepimagej or "deepimagej",
        float(timeout or DEFAULT_TIMEOUT_S),
    )
    return Store().add_host(host, replace=replace)


def remove_host(name: str) -> None:
    """Forget a host (its jobs stay in the table)."""
    Store().remove_host(name)


def hosts() -> list[Host]:
    """The known hosts."""
    return Store().hosts()


def host(name: str) -> Host:
    """The host called ``name``.

    Raises:
        RemoteError: no such host (the message lists the known ones and how to add one).
    """
    return Store().host(name)


def test_host(name: str, accept_host_key: bool = False) -> dict[str, Any]:
    """Connect to a host and ask its deepimagej what it offers (see :func:`deepimagej.remote.server.hello`).

    Returns:
        The server's answer plus ``latency_s`` (connection time) and ``missing``: one line per
        missing piece with how to install it.

    Raises:
        RemoteError: the host cannot be used (the message says why and what to do).
    """
    host = Store().host(name)
    start = time.perf_counter()
    with connect(host, accept_host_key=accept_host_key) as conn:
        latency = time.perf_counter() - start
        info = conn.server("hello")
    if info.get("protocol") != P.PROTOCOL:
        raise RemoteError(
            f"{name}: the server's deepimagej {info.get('version')} speaks remote protocol "
            f"{info.get('protocol')}, this one {P.PROTOCOL}; install the same deepimagej version on both"
        )
    info["latency_s"] = latency
    info["missing"] = [
        f"{engine}: pip install 'deepimagej[{e['extra']}]' on the server"
        for engine, e in info["engines"].items()
        if not e["installed"]
    ]
    return info


# a verb of the API, not a test for pytest to collect; mypy does not model attributes set on a function
test_host.__test__ = False  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- submitting


def run(
    host: str,
    bundle: str | Path,
    input: str | Path | dict[str, str | Path],
    output: str | Path | dict[str, str | Path],
    *,
    detach: bool = False,
    echo: Echo = _quiet,
    on_update: OnUpdate = _ignore,
    **options: Any,
) -> Job:
    """``deepimagej run BUNDLE INPUT -o OUTPUT`` on ``host``; the result is downloaded to ``output``.

    Args:
        host: a host name (:func:`add_host`).
        bundle, input, output: as for ``deepimagej run``: paths (an output may be a folder), or
            ``{name: path}`` for the inputs and outputs of a model with several.
        detach: return once the job runs (fetch it later with :func:`fetch`).
        echo: called with every line of the job's log and with the client's messages.
        on_update: called with the job at every look at it (progress, state).
        options: further ``deepimagej run`` options, e.g. ``tile="256,256"``, ``no_postprocessing=True``.

    Returns:
        The job (``state`` ``"done"`` and the output written, unless detached).
    """
    command: list[Token] = [Upload(Path(bundle))]
    if isinstance(input, dict):
        for name, path in input.items():
            command += ["--input", Upload(Path(path), prefix=f"{name}=")]
    else:
        command.append(Upload(Path(input)))
    if isinstance(output, dict):
        for name, path in output.items():
            command += ["-o", Output(Path(path), prefix=f"{name}=")]
    else:
        command += ["-o", Output(Path(output))]
    command += as_options(options)
    return submit(host, "run", command, detach=detach, echo=echo, on_update=on_update)


def train(
    host: str,
    *,
    images: str | Path,
    out: str | Path,
    labels: str | Path | None = None,
    rois: str | Path | None = None,
    points: str | Path | None = None,
    from_bundle: str | Path | None = None,
    detach: bool = False,
    echo: Echo = _quiet,
    on_update: OnUpdate = _ignore,
    **options: Any,
) -> Job:
    """``deepimagej train`` on ``host``; the trained bundle is downloaded to ``out``.

    Args:
        host: a host name.
        images, labels, rois, points, from_bundle: as ``--images``, ``--labels``, ``--rois``, ``--points``, ``--from``.
        out: the bundle folder to write here.
        detach, echo, on_update: as for :func:`run`.
        options: further ``deepimagej train`` options, e.g. ``epochs=20``, ``tile=128``.
    """
    command: list[Token] = ["--images", Upload(Path(images))]
    for flag, value in (
        ("--labels", labels),
        ("--rois", rois),
        ("--points", points),
        ("--from", from_bundle),
    ):
        if value is not None:
            command += [flag, Upload(Path(value))]
    command += ["--out", Output(Path(out)), "--work", Work(), *as_options(options)]
    return submit(host, "train", command, detach=detach, echo=echo, on_update=on_update)


def as_options(options: dict[str, Any]) -> list[str]:
    """``{"tile": "256,256", "no_postprocessing": True}`` -> ``["--tile", "256,256", "--no-postprocessing"]``."""
    args: list[str] = []
    for key, value in options.items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            args.append(flag)
        elif value is not None and value is not False:
            args += [flag, str(value)]
    return args


def _sha256(store: Store, path: Path) -> tuple[str, int]:
    st = path.stat()
    digest = store.cached_sha256(path.resolve(), st.st_size, st.st_mtime_ns)
    if digest is None:
        digest = sha256_of(path)
        store.remember_sha256(path.resolve(), st.st_size, st.st_mtime_ns, digest)
    return digest, st.st_size


def _describe_upload(store: Store, path: Path) -> dict[str, Any]:
    """The spec entry of one upload: a file's digest and size, or a folder's files (regular files only)."""
    path = path.expanduser()
    if path.is_file():
        digest, size = _sha256(store, path)
        return {"name": P.check_name(path.absolute().name), "type": "file", "sha": digest, "size": size}
    if path.is_dir():
        files: dict[str, list[Any]] = {}
        for dirpath, dirnames, filenames in os.walk(path):
            dirnames.sort()
            for name in sorted(filenames):
                full = Path(dirpath) / name
                if full.is_file():
                    files[full.relative_to(path).as_posix()] = list(_sha256(store, full))
        return {"name": P.check_name(path.absolute().name), "type": "dir", "files": files}
    raise RemoteError(f"{path}: no such file or folder")


def _blobs(spec: dict[str, Any], local: dict[str, Any]) -> dict[str, tuple[Path, int]]:
    """Every content of the job's uploads: ``{sha256: (a local file with it, size)}``."""
    out: dict[str, tuple[Path, int]] = {}
    for up, path in zip(spec["uploads"], local["uploads"]):
        if up["type"] == "file":
            out[up["sha"]] = (Path(path), up["size"])
        else:
            for rel, (digest, size) in up["files"].items():
                out[digest] = (Path(path) / rel, size)
    return out


def build_spec(
    store: Store, kind: str, command: Sequence[Token], remote_id: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The job spec sent to the server and what only the client keeps (local paths).

    Raises:
        RemoteError: a missing file, a name or argument the server would refuse.
    """
    if kind not in P.COMMANDS:
        raise RemoteError(f"remote jobs run one of: deepimagej {', '.join(P.COMMANDS)}")
    uploads: list[dict[str, Any]] = []
    outputs: list[dict[str, Any]] = []
    tokens: list[str | dict[str, Any]] = [kind]
    local: dict[str, Any] = {"uploads": [], "outputs": [], "argv": [kind]}
    for token in command:
        if isinstance(token, Upload):
            tokens.append({"upload": len(uploads), **({"prefix": token.prefix} if token.prefix else {})})
            uploads.append(_describe_upload(store, token.path))
            local["uploads"].append(str(token.path.expanduser().absolute()))
            local["argv"].append(token.prefix + str(token.path))
        elif isinstance(token, Output):
            tokens.append({"output": len(outputs), **({"prefix": token.prefix} if token.prefix else {})})
            path = token.path.expanduser().absolute()
            outputs.append({"name": P.check_name(path.name), **({"dir": True} if path.is_dir() else {})})
            local["outputs"].append(str(path))
            local["argv"].append(token.prefix + str(token.path))
        elif isinstance(token, Work):
            tokens.append({"work": ""})
            local["argv"].append("(job folder)")
        else:
            tokens.append(P.check_literal(str(token)))
            local["argv"].append(str(token))
    spec = {
        "protocol": P.PROTOCOL,
        "id": remote_id,
        "kind": kind,
        "uploads": uploads,
        "outputs": outputs,
        "command": tokens,
    }
    return P.check_spec(spec), local


def submit(
    host: str,
    kind: str,
    command: Sequence[Token],
    *,
    detach: bool = False,
    echo: Echo = _quiet,
    on_update: OnUpdate = _ignore,
    origin: dict[str, Any] | None = None,
) -> Job:
    """Run ``deepimagej KIND COMMAND...`` on ``host`` as a job (see the module docstring).

    Args:
        host: a host name.
        kind: ``"run"`` or ``"train"``.
        command: the arguments after ``deepimagej KIND``.
        detach: return once the job runs on the server.
        echo: called with the job's log lines and the client's messages.
        on_update: called with the job at every look at it.
        origin: extra facts the client keeps with the job (e.g. what ImageJ does with the result).

    Raises:
        RemoteError: the host cannot be used, the upload or the job failed (the job stays in the table).
    """
    store = Store()
    conn = connect(store.host(host))
    try:
        remote_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(4)}"
        spec, local = build_spec(store, kind, command, remote_id)
        if origin:
            local["origin"] = origin
        job = store.new_job(remote_id, host, kind, spec, local)
        echo(f"job {job.id} on {host}: deepimagej {' '.join(local['argv'])}")
        job = _upload_and_submit(store, conn, job, echo, on_update)
        return _after_submit(store, conn, job, detach, echo, on_update)
    finally:
        conn.close()


def _after_submit(
    store: Store, conn: Connection, job: Job, detach: bool, echo: Echo, on_update: OnUpdate
) -> Job:
    if detach:
        echo(
            f"job {job.id} runs on {job.host}; see it with: deepimagej jobs (fetch the result: deepimagej jobs "
            f"fetch {job.id})"
        )
        return job
    try:
        job, conn = _follow(store, conn, job, echo, on_update)
    except KeyboardInterrupt:
        echo(
            f"stopped following: job {job.id} goes on on {job.host} (deepimagej jobs; deepimagej jobs fetch {job.id})"
        )
        raise
    if job.state == "done":
        _fetch(store, conn, job, None, echo)
        return store.job(job.id)
    raise RemoteError(
        f"job {job.id} {job.state} on {job.host}: {job.error or job.state} "
        f"(log: deepimagej jobs log {job.id})"
    )


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def _upload_and_submit(store: Store, conn: Connection, job: Job, echo: Echo, on_update: OnUpdate) -> Job:
    """Send what the server lacks, then submit; a failure marks the job failed with what to do."""
    blobs = _blobs(job.spec, job.local)
    total = sum(size for _path, size in blobs.values())
    before, sent, last_shown = job.uploaded_bytes, 0, time.monotonic()
    try:
        answer = conn.server("have", payload=[[digest, size] for digest, (_p, size) in blobs.items()])
        partial = answer["partial"]
        missing = [d for d in blobs if d not in answer["present"]]
        need = sum(blobs[d][1] - partial.get(d, 0) for d in missing)
        job = store.update_job(
            job.id,
            state="uploading",
            workdir=answer["workdir"],
            total_bytes=total,
            present_bytes=total - need,
        )
        if need > answer["free"]:
            raise RemoteError(
                f"{job.host}: not enough disk space in {answer['workdir']} for the upload: "
                f"{_mb(need)} needed, {_mb(answer['free'])} free; free some space there or choose "
                f"another --workdir"
            )
        echo(
            f"uploading {_mb(need)} ({len(missing)} of {len(blobs)} file(s); {_mb(total - need)} already on "
            f"{job.host})"
        )

        def on_sent(n: int) -> None:
            nonlocal sent, last_shown
            sent += n
            if time.monotonic() - last_shown > 0.25:  # the table shows how far the upload is
                last_shown = time.monotonic()
                on_update(store.update_job(job.id, uploaded_bytes=before + sent))

        for digest in missing:
            path = blobs[digest][0]
            _check_unchanged(store, path, digest)
            conn.upload(path, f"{answer['workdir']}/{P.INCOMING}/{digest}", partial.get(digest, 0), on_sent)
        job = store.update_job(job.id, uploaded_bytes=before + sent)
        if job.state == "cancelled":  # by another process, during the upload
            return job
        status = conn.server("submit", payload=job.spec)
    except KeyboardInterrupt:
        store.update_job(
            job.id,
            state="failed",
            uploaded_bytes=before + sent,
            error=f"upload interrupted; 'deepimagej jobs resume {job.id}' uploads the rest",
        )
        raise
    except RemoteError as exc:
        hint = (
            f"; 'deepimagej jobs resume {job.id}' uploads the rest"
            if isinstance(exc, ConnectionLost)
            else f"; then 'deepimagej jobs resume {job.id}'"
        )
        store.update_job(job.id, state="failed", uploaded_bytes=before + sent, error=f"{exc}{hint}")
        raise RemoteError(f"job {job.id}: {exc}{hint}") from None
    job = _apply(store, store.update_job(job.id, submitted=True, error=None), status)
    on_update(job)
    return job


def _check_unchanged(store: Store, path: Path, digest: str) -> None:
    if _sha256(store, path)[0] != digest:
        raise RemoteError(f"{path} changed since the job was made; start a new job")


def _apply(store: Store, job: Job, status: dict[str, Any]) -> Job:
    """Copy the server's view of a job into the table."""
    state = status.get("state")
    if state == "missing":
        if job.submitted:
            return store.update_job(job.id, state="failed", error="the job's folder is gone from the server")
        return job
    fields = {k: status.get(k) for k in ("state", "started", "finished", "error")}
    fields["progress"] = status.get("progress") or {}
    if status.get("run_seconds") is not None:
        fields["run_seconds"] = status["run_seconds"]
    return store.update_job(job.id, **fields)


# --------------------------------------------------------------------------- following


def _paths(job: Job) -> tuple[str, str]:
    folder = f"{job.workdir}/{P.JOBS}/{job.remote_id}"
    return f"{folder}/{P.STATUS_FILE}", f"{folder}/{P.LOG_FILE}"


def _reconnect(conn: Connection, job: Job, echo: Echo) -> Connection:
    """A new connection to the job's host, tried for :data:`RECONNECT_S` seconds."""
    conn.close()
    deadline = time.monotonic() + RECONNECT_S
    echo(f"connection to {job.host} lost; reconnecting (job {job.id} goes on there)")
    while True:
        try:
            return connect(Store().host(job.host))
        except RemoteError as exc:
            if time.monotonic() > deadline:
                raise ConnectionLost(
                    f"job {job.id} goes on on {job.host}, but the connection is lost ({exc}); see "
                    f"it later with 'deepimagej jobs', then 'deepimagej jobs fetch {job.id}'"
                ) from None
            time.sleep(2.0)


def _follow(
    store: Store, conn: Connection, job: Job, echo: Echo, on_update: OnUpdate, log_offset: int = 0
) -> tuple[Job, Connection]:
    """Print the job's log and track its status until it ends; survives dropped connections."""
    store.claim_job(job.id)
    status_path, log_path = _paths(job)
    offset, partial = log_offset, b""
    last_seen, last_change, last_check = None, time.monotonic(), time.monotonic()
    while True:
        try:
            data = conn.read(log_path, offset)
            offset += len(data)
            *lines, partial = (partial + data).split(b"\n")
            for line in lines:
                echo(line.decode("utf-8", "replace"))
            raw = conn.read(status_path)
            status = json.loads(raw) if raw else {"state": "missing"}
            if status.get("updated") != last_seen:
                last_seen, last_change = status.get("updated"), time.monotonic()
            now = time.monotonic()
            if status["state"] not in P.FINISHED and (
                now - last_change > STALE_S or now - last_check > 4 * STALE_S
            ):
                status = conn.server("status", job.remote_id)[
                    job.remote_id
                ]  # the server checks its processes
                last_check = last_change = now
        except ConnectionLost:
            conn = _reconnect(conn, job, echo)
            continue
        job = _apply(store, job, status)
        on_update(job)
        if job.finished_state:
            if partial:
                echo(partial.decode("utf-8", "replace"))
            return job, conn
        time.sleep(POLL_S)


# --------------------------------------------------------------------------- fetching


def _fetch(store: Store, conn: Connection, job: Job, to: Path | None, echo: Echo) -> list[Path]:
    """Download the outputs of a done job, each atomically, only under its local output path."""
    listing = conn.server("outputs", job.remote_id)
    targets = [Path(p) for p in job.local["outputs"]]
    if to is not None:
        if len(targets) != 1:
            raise RemoteError(f"job {job.id} has {len(targets)} outputs; --to works for one")
        targets = [Path(to).expanduser().absolute()]
    folder = f"{job.workdir}/{P.JOBS}/{job.remote_id}/{P.OUTPUTS}"
    written = []
    for j, (item, target) in enumerate(zip(listing, targets)):
        remote = f"{folder}/{j}/{P.check_name(item['name'])}"
        if item["type"] == "missing":
            raise RemoteError(
                f"job {job.id}: the server has no result '{item['name']}' (see deepimagej jobs log {job.id})"
            )
        if item["type"] == "file":
            with atomic_file(target) as tmp:
                conn.download(remote, tmp)
        else:
            make_folder(target.parent)
            part = target.parent / f".{target.name}.part-{job.remote_id}"
            try:
                _fetch_folder(conn, remote, item["files"], part, target)
            finally:
                shutil.rmtree(part, ignore_errors=True)
        written.append(target)
        echo(f"result: {target}")
    store.update_job(job.id, fetched=time.time())
    return written


def _fetch_folder(conn: Connection, remote: str, files: list[list[Any]], part: Path, target: Path) -> None:
    """Download a folder into ``part``, then put it at ``target`` (a rename, or file by file into an existing one)."""
    shutil.rmtree(part, ignore_errors=True)
    part.mkdir()
    for rel, _size in files:
        dest = P.safe_join(part, rel)
        dest.parent.mkdir(parents=True, exist_ok=True)
        conn.download(f"{remote}/{P.check_relpath(rel)}", dest)
    if not target.exists():
        os.replace(part, target)
        return
    if not target.is_dir():
        raise RemoteError(f"{target} exists and is not a folder; move it away and fetch again")
    for rel, _size in files:
        dest = P.safe_join(target, rel)
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(P.safe_join(part, rel), dest)


# --------------------------------------------------------------------------- the table's verbs


def jobs(refresh: bool = True) -> list[Job]:
    """Every job in the table; with ``refresh`` the unfinished ones are asked for at their hosts first.

    A host that cannot be reached leaves its jobs as last seen, with ``note`` saying why.
    """
    store = Store()
    listed = store.jobs()
    if not refresh:
        return listed
    by_host: dict[str, list[Job]] = defaultdict(list)
    for job in listed:
        if job.finished_state:
            continue
        if not job.submitted:
            if not client_alive(job):
                store.update_job(
                    job.id,
                    state="failed",
                    error=f"upload interrupted (the client stopped); "
                    f"'deepimagej jobs resume {job.id}' uploads the rest",
                )
            continue
        by_host[job.host].append(job)
    notes: dict[int, str] = {}
    for name, group in by_host.items():
        try:
            with connect(store.host(name)) as conn:
                answer = conn.server("status", *[j.remote_id for j in group])
            for job in group:
                _apply(store, job, answer[job.remote_id])
        except RemoteError as exc:
            for job in group:
                notes[job.id] = f"as last seen: {exc}"
    listed = store.jobs()
    for job in listed:
        job.note = notes.get(job.id)
    return listed


def job(job_id: int | str, refresh: bool = True) -> Job:
    """One job (asked for at its host first when it has not finished)."""
    store = Store()
    found = store.job(job_id)
    if refresh and not found.finished_state and found.submitted:
        with connect(store.host(found.host)) as conn:
            found = _apply(store, found, conn.server("status", found.remote_id)[found.remote_id])
    return found


def log(job_id: int | str, follow: bool = False, echo: Echo = print) -> Job:
    """Show a job's log (the server's copy) with ``echo``; ``follow`` keeps showing it until the job ends."""
    store = Store()
    found = store.job(job_id)
    if not found.submitted:
        echo(found.error or f"job {found.id} has not reached {found.host} yet ({found.state})")
        return found
    with connect(store.host(found.host)) as conn:
        if follow:
            found, conn = _follow(store, conn, found, echo, _ignore)
            conn.close()
            return found
        text = conn.read(_paths(found)[1]).decode("utf-8", "replace")
    for line in text.splitlines():
        echo(line)
    return found


def follow(
    job_id: int | str, echo: Echo = _quiet, on_update: OnUpdate = _ignore, fetch_result: bool = True
) -> Job:
    """Wait for a job to end (showing its log), then download its result (``fetch_result``)."""
    store = Store()
    found = store.job(job_id)
    if not found.submitted:
        raise RemoteError(f"job {found.id} never reached {found.host}: {found.error or found.state}")
    conn = connect(store.host(found.host))
    try:
        found, conn = _follow(store, conn, found, echo, on_update)
        if found.state == "done" and fetch_result:
            _fetch(store, conn, found, None, echo)
            found = store.job(found.id)
        return found
    finally:
        conn.close()


def fetch(job_id: int | str, to: str | Path | None = None, echo: Echo = _quiet) -> list[Path]:
    """Download the result of a done job (to where the job was told to write it, or ``to``).

    Raises:
        RemoteError: the job is not done (its state and progress say how far it is).
    """
    store = Store()
    found = job(job_id)
    if found.state != "done":
        where = f" ({describe_progress(found)})" if found.progress else ""
        reason = f": {found.error}" if found.error and found.state == "failed" else ""
        raise RemoteError(
            f"job {found.id} is {found.state}{where}{reason}; only a done job has a result to fetch"
        )
    with connect(store.host(found.host)) as conn:
        return _fetch(store, conn, found, Path(to) if to else None, echo)


def cancel(job_id: int | str) -> Job:
    """Stop a job and every process it started on the server.

    Raises:
        RemoteError: the job already finished.
    """
    store = Store()
    found = job(job_id)
    if found.finished_state:
        raise RemoteError(f"job {found.id} already finished ({found.state}): nothing to cancel")
    if not found.submitted:
        return store.update_job(
            found.id, state="cancelled", error="cancelled before it reached the server", finished=time.time()
        )
    with connect(store.host(found.host)) as conn:
        return _apply(store, found, conn.server("cancel", found.remote_id))


def resume(
    job_id: int | str, detach: bool = False, echo: Echo = _quiet, on_update: OnUpdate = _ignore
) -> Job:
    """Continue a job: finish an interrupted upload, or run a failed/cancelled job again on the server.

    A training continues from its last checkpoint (``deepimagej train`` resumes from the job's folder).

    Raises:
        RemoteError: the job is done or still running.
    """
    store = Store()
    found = job(job_id)
    if found.state == "done":
        raise RemoteError(f"job {found.id} is done: nothing to resume (deepimagej jobs fetch {found.id})")
    if not found.finished_state and (found.submitted or client_alive(found)):
        raise RemoteError(f"job {found.id} is still {found.state}: nothing to resume")
    conn = connect(store.host(found.host))
    try:
        store.claim_job(found.id)
        if not found.submitted:
            status = conn.server("status", found.remote_id)[found.remote_id]
            if status["state"] == "missing":
                echo(f"job {found.id}: continuing the upload to {found.host}")
                found = _upload_and_submit(store, conn, found, echo, on_update)
            else:
                found = _apply(store, store.update_job(found.id, submitted=True), status)
        else:
            echo(
                f"job {found.id}: running it again on {found.host}"
                + (" from its last checkpoint" if found.kind == "train" else "")
            )
            found = _apply(
                store,
                store.update_job(found.id, error=None, finished=None),
                conn.server("resume", found.remote_id),
            )
        offset = len(conn.read(_paths(found)[1])) if found.submitted else 0
        if detach:
            return found
        found, conn = _follow(store, conn, found, echo, on_update, log_offset=offset)
        if found.state == "done":
            _fetch(store, conn, found, None, echo)
            return store.job(found.id)
        raise RemoteError(f"job {found.id} {found.state} on {found.host}: {found.error or found.state}")
    finally:
        conn.close()


def remove(job_id: int | str) -> None:
    """Delete a finished job from the table and its folder from the server (uploads stay for later jobs)."""
    store = Store()
    found = job(job_id)
    if not found.finished_state:
        raise RemoteError(
            f"job {found.id} is {found.state}: cancel it first (deepimagej jobs cancel {found.id})"
        )
    if found.submitted:
        with connect(store.host(found.host)) as conn:
            conn.server("remove", found.remote_id)
    store.delete_job(found.id)


def clean(host: str) -> dict[str, Any]:
    """Free the server's disk of uploads no job uses any more; returns ``{"freed": bytes, "free": bytes}``."""
    with connect(Store().host(host)) as conn:
        return conn.server("clean")


def describe_progress(job: Job) -> str:
    """``tiles 12/300``, ``epoch 3/10 loss 0.2100 val_loss 0.2500`` or ``sent 3.0 MB of 12.0 MB``."""
    p = job.progress or {}
    if job.state == "uploading" and job.total_bytes:
        return f"sent {_mb(job.uploaded_bytes)} of {_mb(job.total_bytes - job.present_bytes)}"
    if "epoch" in p:
        metrics = " ".join(f"{k} {p[k]:.4f}" for k in ("loss", "val_loss", "val_acc", "val_iou") if k in p)
        return f"epoch {p['epoch']}/{p.get('epochs', '?')} {metrics}".strip()
    if "tiles" in p:
        return f"tiles {p['tiles'][0]}/{p['tiles'][1]}"
    return ""
