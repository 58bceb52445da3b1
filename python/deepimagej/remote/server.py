"""The server side of remote jobs: what ``deepimagej remote server VERB --workdir DIR`` does over SSH.

Every verb reads and writes only inside the work folder (layout in :mod:`deepimagej.remote.protocol`)
and answers with JSON. A submitted job runs detached from the SSH session (a new session, no
terminal, no pipe to the client) under a supervisor, :mod:`deepimagej.remote.runner`, so that it
survives the client's disconnection and exit.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.metadata
import importlib.util
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil

from deepimagej.checksums import sha256_of
from deepimagej.errors import RemoteError
from deepimagej.outputs import write_text_atomic
from deepimagej.remote import protocol as P

#: engines whose presence the server reports, with the extra that installs each
ENGINES = {"tensorflow": "tensorflow", "onnxruntime": "onnx", "torch": "torch"}
#: seconds a cancelled job gets to stop after SIGTERM before SIGKILL
STOP_GRACE_S = 5.0


class Workdir:
    """The server's work folder (created on first use, private to the user)."""

    def __init__(self, path: str | Path) -> None:
        self.root = Path(os.path.expanduser(str(path))).absolute()
        for sub in ("", P.BLOBS, P.INCOMING, P.CACHE, P.JOBS):
            folder = self.root / sub
            try:
                folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            except OSError as exc:
                raise RemoteError(
                    f"cannot create the work folder {folder} on the server: {exc.strerror}"
                ) from None

    def job(self, job_id: str) -> Path:
        """The folder of job ``job_id`` (the id is checked, so the folder is inside ``jobs/``)."""
        return self.root / P.JOBS / P.check_job_id(job_id)

    def existing_job(self, job_id: str) -> Path:
        folder = self.job(job_id)
        if not (folder / P.STATUS_FILE).is_file():
            raise RemoteError(f"no job {job_id} in {self.root} on the server")
        return folder

    def free_bytes(self) -> int:
        return shutil.disk_usage(self.root).free


# --------------------------------------------------------------------------- status file


@contextlib.contextmanager
def job_lock(folder: Path) -> Iterator[None]:
    """Exclusive lock of a job's status (the supervisor and the verbs write it)."""
    with open(folder / P.LOCK_FILE, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def read_status(folder: Path) -> dict[str, Any]:
    """The job's status (``status.json``)."""
    return json.loads((folder / P.STATUS_FILE).read_text(encoding="utf-8"))


def write_status(folder: Path, status: dict[str, Any]) -> dict[str, Any]:
    """Replace ``status.json`` atomically (call with :func:`job_lock` held)."""
    status["updated"] = time.time()
    write_text_atomic(folder / P.STATUS_FILE, json.dumps(status, indent=1))
    return status


def update_status(folder: Path, **changes: Any) -> dict[str, Any]:
    """Read, change and write the status under the job's lock; returns the new status."""
    with job_lock(folder):
        status = read_status(folder)
        status.update(changes)
        return write_status(folder, status)


def process_info(pid: int) -> dict[str, Any]:
    """What identifies a process across pid reuse: its pid and start time."""
    try:
        return {"pid": pid, "started": psutil.Process(pid).create_time()}
    except psutil.Error:
        return {"pid": pid, "started": None}


def alive(info: dict[str, Any] | None) -> bool:
    """Whether the process of :func:`process_info` still runs (same pid and start time, not a zombie)."""
    if not info or not info.get("pid"):
        return False
    try:
        proc = psutil.Process(info["pid"])
        if info.get("started") is not None and abs(proc.create_time() - info["started"]) > 0.01:
            return False
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def kill_group(info: dict[str, Any] | None, grace_s: float = STOP_GRACE_S) -> None:
    """Stop a job's worker and everything it started (its process group): SIGTERM, then SIGKILL."""
    if not info or not info.get("pid"):
        return
    pgid, since = info.get("pgid") or info["pid"], info.get("started") or 0.0
    for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        members = group_members(pgid, since)
        if not members:
            return
        for proc in members:
            with contextlib.suppress(psutil.Error):
                proc.send_signal(sig)
        psutil.wait_procs(members, timeout=wait)


def group_members(pgid: int, since: float) -> list[psutil.Process]:
    """The live processes of process group ``pgid`` started at or after ``since`` (never a reused pid's group)."""
    members = []
    for proc in psutil.process_iter(["pid", "create_time", "status"]):
        try:
            if (
                os.getpgid(proc.pid) == pgid
                and proc.info["create_time"] >= since - 0.01
                and proc.info["status"] != psutil.STATUS_ZOMBIE
            ):
                members.append(proc)
        except (ProcessLookupError, psutil.Error, OSError):
            continue
    return members


GONE = (
    "the job's processes on the server ended unexpectedly (killed, or the server restarted); "
    "'deepimagej jobs resume' runs it again (a training continues from its last checkpoint)"
)


def refresh(folder: Path) -> dict[str, Any]:
    """The status, with a queued/running job whose supervisor is gone marked failed (and its worker stopped)."""
    status = read_status(folder)
    if status["state"] in P.FINISHED or alive(status.get("supervisor")):
        return status
    with job_lock(folder):
        status = read_status(folder)  # the supervisor may have finished meanwhile
        if status["state"] in P.FINISHED or alive(status.get("supervisor")):
            return status
        if time.time() - status.get("submitted", 0) < 10 and status.get("supervisor") is None:
            return status  # being started
        kill_group(status.get("worker"))
        ran = (
            max(0.0, status["updated"] - status["attempt_started"]) if status.get("attempt_started") else 0.0
        )
        status.update(
            state="failed", error=GONE, finished=time.time(), run_seconds=status.get("run_seconds", 0.0) + ran
        )
        return write_status(folder, status)


# --------------------------------------------------------------------------- verbs


def hello(workdir: Workdir) -> dict[str, Any]:
    """What the server offers: versions, cores, memory, GPUs, engines, free disk space."""
    engines = {}
    for module, extra in ENGINES.items():
        found = importlib.util.find_spec(module) is not None
        version = None
        if found:
            dist = {
                "tensorflow": ("tensorflow", "tensorflow-cpu"),
                "onnxruntime": ("onnxruntime", "onnxruntime-gpu"),
                "torch": ("torch",),
            }[module]
            for name in dist:
                with contextlib.suppress(importlib.metadata.PackageNotFoundError):
                    version = importlib.metadata.version(name)
                    break
        engines[module] = {"version": version, "installed": found, "extra": extra}
    memory = psutil.virtual_memory()
    return {
        "protocol": P.PROTOCOL,
        "version": importlib.metadata.version("deepimagej"),
        "python": platform.python_version(),
        "executable": sys.executable,
        "hostname": platform.node(),
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "memory_total": memory.total,
        "memory_available": memory.available,
        "gpus": _gpus(),
        "engines": engines,
        "workdir": str(workdir.root),
        "disk_free": workdir.free_bytes(),
    }


def _gpus() -> list[dict[str, Any]]:
    """NVIDIA GPUs (``nvidia-smi``); an empty list when there is none or no driver."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    try:
        out = subprocess.run(
            [smi, "--query-gpu=name,memory.total", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    gpus = []
    for line in out.strip().splitlines():
        name, _, mem = line.rpartition(",")
        with contextlib.suppress(ValueError):
            gpus.append({"name": name.strip(), "memory": int(float(mem)) * 2**20})
    return gpus


def have(workdir: Workdir, blobs: list[list[Any]]) -> dict[str, Any]:
    """Which of the ``[sha256, size]`` blobs the server holds (complete or in part), and the free space."""
    present, partial = [], {}
    for digest, size in blobs:
        P.check_sha256(digest)
        if (workdir.root / P.BLOBS / digest).is_file():
            present.append(digest)
        else:
            incoming = workdir.root / P.INCOMING / digest
            if incoming.is_file():
                partial[digest] = min(incoming.stat().st_size, int(size))
    return {
        "workdir": str(workdir.root),
        "free": workdir.free_bytes(),
        "present": present,
        "partial": partial,
    }


def _commit_blob(workdir: Workdir, digest: str) -> Path:
    """The verified blob ``digest``: an upload in ``incoming/`` is hashed and moved into ``blobs/``."""
    blob = workdir.root / P.BLOBS / digest
    if blob.is_file():
        return blob
    incoming = workdir.root / P.INCOMING / digest
    if not incoming.is_file():
        raise RemoteError(
            f"the server misses the upload {digest[:12]}; run the job again (it uploads what is missing)"
        )
    if sha256_of(incoming, cached=False) != digest:
        incoming.unlink()
        raise RemoteError(f"the upload {digest[:12]} arrived damaged and was deleted; run the job again")
    os.chmod(incoming, 0o444)  # the content of a blob never changes
    os.replace(incoming, blob)
    return blob


def _place(blob: Path, target: Path) -> None:
    """Put a blob at ``target`` (a hard link; a copy where links are not possible)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(blob, target)
    except OSError:
        shutil.copyfile(blob, target)


def submit(workdir: Workdir, spec: dict[str, Any]) -> dict[str, Any]:
    """Create the job folder from verified uploads and start the job detached; returns its status."""
    P.check_spec(spec)
    folder = workdir.job(spec["id"])
    if (folder / P.STATUS_FILE).is_file():
        return refresh(folder)  # submitted before (the answer was lost): the same job
    staging = folder.with_name(f".{folder.name}.staging")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        for i, up in enumerate(spec["uploads"]):
            base = staging / P.INPUTS / str(i)
            if up["type"] == "file":
                _place(_commit_blob(workdir, up["sha"]), base / up["name"])
            else:
                (base / up["name"]).mkdir(parents=True)
                for rel, (digest, _size) in up["files"].items():
                    _place(_commit_blob(workdir, digest), base / up["name"] / P.check_relpath(rel))
        for j, out in enumerate(spec["outputs"]):
            (staging / P.OUTPUTS / str(j) / (out["name"] if out.get("dir") else "")).mkdir(parents=True)
        (staging / P.WORK).mkdir(parents=True)
        write_text_atomic(staging / P.JOB_FILE, json.dumps(spec, indent=1))
        (staging / P.LOG_FILE).touch()
        now = time.time()
        write_text_atomic(
            staging / P.STATUS_FILE,
            json.dumps(
                {
                    "id": spec["id"],
                    "kind": spec["kind"],
                    "state": "queued",
                    "progress": {},
                    "submitted": now,
                    "updated": now,
                    "started": None,
                    "finished": None,
                    "attempt": 1,
                    "error": None,
                    "supervisor": None,
                    "worker": None,
                    "returncode": None,
                    "cancel_requested": False,
                },
                indent=1,
            ),
        )
        os.replace(staging, folder)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise RemoteError(_os_error_text(exc, workdir)) from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return _start(workdir, folder)


def _os_error_text(exc: OSError, workdir: Workdir) -> str:
    if exc.errno == 28:  # ENOSPC
        return f"the server's disk is full ({workdir.root}): free some space there"
    return f"{exc.filename or workdir.root}: {exc.strerror} (on the server)"


def _start(workdir: Workdir, folder: Path) -> dict[str, Any]:
    """Start the job's supervisor in a new session, detached from this SSH session."""
    argv = [
        sys.executable,
        "-m",
        "deepimagej",
        *P.SERVER_ARGS,
        "run-job",
        "--workdir",
        str(workdir.root),
        folder.name,
    ]
    with open(folder / "supervisor.err", "ab") as err:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
            cwd=folder,
            start_new_session=True,
            close_fds=True,
        )
    return update_status(folder, supervisor=process_info(proc.pid))


def worker_command(workdir: Workdir, folder: Path, spec: dict[str, Any]) -> list[str]:
    """The job's ``deepimagej`` command line, references turned into paths inside the job folder."""
    args: list[str] = []
    for token in spec["command"]:
        if isinstance(token, str):
            args.append(token)
        elif "upload" in token:
            up = spec["uploads"][token["upload"]]
            args.append(token.get("prefix", "") + str(folder / P.INPUTS / str(token["upload"]) / up["name"]))
        elif "output" in token:
            out = spec["outputs"][token["output"]]
            args.append(
                token.get("prefix", "") + str(folder / P.OUTPUTS / str(token["output"]) / out["name"])
            )
        else:
            args.append(str(folder / P.WORK))
    return [sys.executable, "-m", "deepimagej", *args]


def worker_env(workdir: Workdir) -> dict[str, str]:
    """The job's environment: the login environment, the cache inside the work folder, a plain terminal."""
    env = dict(os.environ)
    env.update(
        XDG_CACHE_HOME=str(workdir.root / P.CACHE),
        PYTHONUNBUFFERED="1",
        NO_COLOR="1",
        COLUMNS="100",
        TF_CPP_MIN_LOG_LEVEL=env.get("TF_CPP_MIN_LOG_LEVEL", "2"),
    )
    return env


def status(workdir: Workdir, job_ids: list[str]) -> dict[str, Any]:
    """The refreshed status of each job (``{"state": "missing"}`` for a job the server does not have)."""
    out = {}
    for job_id in job_ids:
        folder = workdir.job(job_id)
        out[job_id] = (
            refresh(folder) if (folder / P.STATUS_FILE).is_file() else {"id": job_id, "state": "missing"}
        )
    return out


def cancel(workdir: Workdir, job_id: str) -> dict[str, Any]:
    """Stop a queued or running job and every process it started.

    Raises:
        RemoteError: the job already finished.
    """
    folder = workdir.existing_job(job_id)
    current = refresh(folder)
    if current["state"] in P.FINISHED:
        raise RemoteError(f"job {job_id} already finished ({current['state']}): nothing to cancel")
    current = update_status(folder, cancel_requested=True)
    supervisor = current.get("supervisor")
    if supervisor is not None and alive(supervisor):
        with contextlib.suppress(ProcessLookupError):
            os.kill(supervisor["pid"], signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S + 10
        while time.monotonic() < deadline and alive(supervisor):
            time.sleep(0.1)
    with job_lock(folder):
        current = read_status(folder)
        kill_group(current.get("worker"))
        if alive(current.get("supervisor")):
            with contextlib.suppress(ProcessLookupError):
                os.kill(current["supervisor"]["pid"], signal.SIGKILL)
        if current["state"] not in P.FINISHED:
            current.update(state="cancelled", finished=time.time(), error="cancelled")
            current = write_status(folder, current)
    return current


def resume(workdir: Workdir, job_id: str) -> dict[str, Any]:
    """Run a failed or cancelled job again in its folder (a training continues from its checkpoint).

    Raises:
        RemoteError: the job is done or still running.
    """
    folder = workdir.existing_job(job_id)
    current = refresh(folder)
    if current["state"] == "done":
        raise RemoteError(f"job {job_id} is done: nothing to resume (fetch its result)")
    if current["state"] not in P.FINISHED:
        raise RemoteError(f"job {job_id} is still {current['state']}: nothing to resume")
    update_status(
        folder,
        state="queued",
        error=None,
        returncode=None,
        finished=None,
        cancel_requested=False,
        supervisor=None,
        worker=None,
        attempt=current.get("attempt", 1) + 1,
        submitted=time.time(),
        attempt_started=None,
    )
    return _start(workdir, folder)


def outputs(workdir: Workdir, job_id: str) -> list[dict[str, Any]]:
    """What each output of the job holds: ``{"type": "file", "size"}``, ``{"type": "dir", "files"}`` or missing.

    Only regular files are listed (symbolic links are never followed).
    """
    folder = workdir.existing_job(job_id)
    spec = json.loads((folder / P.JOB_FILE).read_text(encoding="utf-8"))
    listing = []
    for j, out in enumerate(spec["outputs"]):
        path = folder / P.OUTPUTS / str(j) / out["name"]
        if path.is_symlink() or not path.exists():
            listing.append({"name": out["name"], "type": "missing"})
        elif path.is_file():
            listing.append({"name": out["name"], "type": "file", "size": path.stat().st_size})
        else:
            files = []
            for dirpath, dirnames, filenames in os.walk(path):
                dirnames[:] = sorted(d for d in dirnames if not os.path.islink(os.path.join(dirpath, d)))
                for name in sorted(filenames):
                    full = Path(dirpath) / name
                    if full.is_file() and not full.is_symlink():
                        files.append([full.relative_to(path).as_posix(), full.stat().st_size])
            listing.append({"name": out["name"], "type": "dir", "files": files})
    return listing


def remove(workdir: Workdir, job_id: str) -> dict[str, Any]:
    """Delete a finished job's folder (its uploads stay in ``blobs/`` for later jobs)."""
    folder = workdir.existing_job(job_id)
    current = refresh(folder)
    if current["state"] not in P.FINISHED:
        raise RemoteError(f"job {job_id} is {current['state']}: cancel it first")
    shutil.rmtree(folder)
    return {"id": job_id, "removed": True}


def clean(workdir: Workdir, older_than_s: float = 86400.0) -> dict[str, Any]:
    """Delete blobs no job uses any more and uploads abandoned for ``older_than_s``; returns the bytes freed."""
    freed, now = 0, time.time()
    for blob in (workdir.root / P.BLOBS).iterdir():
        st = blob.stat()
        if st.st_nlink == 1:
            freed += st.st_size
            blob.unlink()
    for part in (workdir.root / P.INCOMING).iterdir():
        st = part.stat()
        if now - st.st_mtime > older_than_s:
            freed += st.st_size
            part.unlink()
    return {"freed": freed, "free": workdir.free_bytes()}
