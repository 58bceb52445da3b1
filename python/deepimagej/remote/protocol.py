"""What the client and the server side of a remote job agree on: names, states, layout, the job spec.

The client (:mod:`deepimagej.remote.client`) talks to the server side (:mod:`deepimagej.remote.server`,
the hidden ``deepimagej remote server ...`` commands run over SSH) with JSON. This module holds
every fact both sides need, once: the protocol number, the job states, the file layout of the
server's work folder, and the checks that keep names and paths inside it.

A job spec (JSON) describes one ``deepimagej`` command to run on the server::

    {"protocol": 1, "id": "20240601-153210-3fa2c1d0", "kind": "run",
     "uploads": [{"name": "unet-pancreatic", "type": "dir", "files": {"rdf.yaml": [SHA256, SIZE], ...}},
                 {"name": "cells.tif", "type": "file", "sha": SHA256, "size": SIZE}],
     "outputs": [{"name": "labels.tif"}],
     "command": ["run", {"upload": 0}, {"upload": 1}, "-o", {"output": 0}, "--tile", "256,256"]}

A command token is a literal argument or a reference: ``{"upload": i}`` (the uploaded file or
folder ``i``, optionally with a ``"prefix"`` such as ``"raw="``), ``{"output": j}`` (where output
``j`` is written; ``"dir": true`` in its entry makes it a folder made beforehand, as the user's was) or ``{"work": ""}`` (the job's own folder for checkpoints). The server turns
references into paths inside the job folder; it never runs a shell, and only the ``deepimagej``
sub-commands in :data:`COMMANDS`.

Server work folder (``WORKDIR``, by default ``~/.deepimagej/remote`` on the server)::

    WORKDIR/blobs/SHA256          uploaded file contents, verified, read-only (content-addressed)
    WORKDIR/incoming/SHA256       uploads in progress (verified and moved to blobs/ on submit)
    WORKDIR/cache/                the jobs' cache (unpacked weights): XDG_CACHE_HOME of a job
    WORKDIR/jobs/ID/job.json      the job spec
    WORKDIR/jobs/ID/status.json   the status (JSON, replaced atomically)
    WORKDIR/jobs/ID/log.txt       what the command printed
    WORKDIR/jobs/ID/inputs/I/NAME the uploads (hard links to blobs/)
    WORKDIR/jobs/ID/outputs/J/NAME the results
    WORKDIR/jobs/ID/work/         checkpoints (training resumes from here)
"""

from __future__ import annotations

import os
import re
from pathlib import Path, PurePosixPath
from typing import Any

from deepimagej.errors import RemoteError

#: bumped whenever client and server stop understanding each other
PROTOCOL = 1
#: the hidden command group of the server role: ``deepimagej remote server VERB --workdir DIR``
SERVER_ARGS = ("remote", "server")
#: the ``deepimagej`` sub-commands a job may run
COMMANDS = ("run", "train")
#: every state a job can be in; the last three are final
STATES = ("queued", "uploading", "running", "done", "failed", "cancelled")
FINISHED = ("done", "failed", "cancelled")
DEFAULT_WORKDIR = "~/.deepimagej/remote"

BLOBS, INCOMING, CACHE, JOBS = "blobs", "incoming", "cache", "jobs"
JOB_FILE, STATUS_FILE, LOG_FILE, LOCK_FILE = "job.json", "status.json", "log.txt", ".lock"
INPUTS, OUTPUTS, WORK = "inputs", "outputs", "work"

_JOB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def check_job_id(job_id: str) -> str:
    """A remote job id: letters, digits, ``-`` and ``_`` (so that it can never name a path outside ``jobs/``).

    Raises:
        RemoteError: anything else.
    """
    if not isinstance(job_id, str) or not _JOB_ID.match(job_id):
        raise RemoteError(f"job id {job_id!r}: expected letters, digits, '-' or '_' (at most 64)")
    return job_id


def check_sha256(digest: str) -> str:
    """A lower-case hex SHA-256 digest (the name of a blob)."""
    if not isinstance(digest, str) or not _SHA256.match(digest):
        raise RemoteError(f"{digest!r} is not a SHA-256 digest")
    return digest


def check_name(name: str) -> str:
    """One path component chosen by a user (a file or folder name): kept as data, never as a path.

    Any character is allowed (``a;touch owned;b.tif`` is a fine name) except ``/``, ``\\`` and NUL,
    and the name is not ``.`` or ``..``.

    Raises:
        RemoteError: the name could leave its folder.
    """
    if (
        not isinstance(name, str)
        or not name
        or name in (".", "..")
        or "/" in name
        or "\\" in name
        or "\0" in name
        or len(name.encode("utf-8", "surrogateescape")) > 255
    ):
        raise RemoteError(f"file name {name!r}: not a plain file name")
    return name


def check_relpath(rel: str) -> PurePosixPath:
    """A relative POSIX path inside a folder (``sub/file.tif``): no absolute path, no ``..``, no empty part.

    Raises:
        RemoteError: the path could leave its folder.
    """
    if not isinstance(rel, str) or not rel or rel.startswith("/") or "\\" in rel or "\0" in rel:
        raise RemoteError(f"path {rel!r}: not a relative path inside the job")
    parts = rel.split("/")
    for part in parts:
        check_name(part)
    return PurePosixPath(*parts)


def safe_join(root: Path, rel: str) -> Path:
    """``root / rel`` for a checked relative path, verified to stay inside ``root`` (symbolic links included)."""
    target = Path(root) / check_relpath(rel)
    real_root = os.path.realpath(root)
    real = os.path.realpath(target)
    if os.path.commonpath([real_root, real]) != real_root:
        raise RemoteError(f"path {rel!r} leaves {root}")
    return target


def check_literal(arg: str) -> str:
    """A literal command argument: not a path outside the job (absolute, ``~``, or with a ``..`` part).

    Paths reach a job only as references to uploads and outputs, which the server places itself.
    """
    if not isinstance(arg, str) or "\0" in arg:
        raise RemoteError(f"argument {arg!r}: not text")
    value = arg.split("=", 1)[1] if arg.startswith("-") and "=" in arg else arg
    if value.startswith(("/", "~")) or ".." in PurePosixPath(value).parts or "\\.." in value:
        raise RemoteError(f"argument {arg!r}: a path; paths are uploaded, not named on the server")
    return arg


def check_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """Validate a job spec (see the module docstring) before the server acts on it.

    Raises:
        RemoteError: another protocol, an unknown command, a bad name, path, digest or reference.
    """
    if not isinstance(spec, dict):
        raise RemoteError("job spec: expected a JSON object")
    if spec.get("protocol") != PROTOCOL:
        raise RemoteError(f"job spec of protocol {spec.get('protocol')}, this server speaks {PROTOCOL}")
    check_job_id(spec.get("id", ""))
    uploads, outputs, command = spec.get("uploads", []), spec.get("outputs", []), spec.get("command", [])
    for up in uploads:
        check_name(up.get("name", ""))
        if up.get("type") == "file":
            check_sha256(up.get("sha", ""))
        elif up.get("type") == "dir":
            for rel, (digest, _size) in up.get("files", {}).items():
                check_relpath(rel)
                check_sha256(digest)
        else:
            raise RemoteError(f"upload {up.get('name')!r}: type must be 'file' or 'dir'")
    for out in outputs:
        check_name(out.get("name", ""))
    if not command or command[0] not in COMMANDS:
        raise RemoteError(f"job command {command[:1]}: a job runs one of: deepimagej {', '.join(COMMANDS)}")
    if spec.get("kind") != command[0]:
        raise RemoteError(f"job kind {spec.get('kind')!r} does not match its command {command[0]!r}")
    for token in command[1:]:
        if isinstance(token, str):
            check_literal(token)
        elif isinstance(token, dict) and "upload" in token:
            if not isinstance(token["upload"], int) or not 0 <= token["upload"] < len(uploads):
                raise RemoteError(f"job command: no upload {token['upload']!r}")
            check_literal(token.get("prefix", ""))
        elif isinstance(token, dict) and "output" in token:
            if not isinstance(token["output"], int) or not 0 <= token["output"] < len(outputs):
                raise RemoteError(f"job command: no output {token['output']!r}")
            check_literal(token.get("prefix", ""))
        elif not (isinstance(token, dict) and set(token) == {"work"}):
            raise RemoteError(f"job command: unknown argument {token!r}")
    return spec
