"""The client's table of hosts and jobs: one SQLite file in the user's config folder.

It survives restarts of the client: ``deepimagej jobs`` lists every job ever started from this
account until it is removed. Nothing secret is stored: a host is an address, the *path* of a
key file (never its content), the server's work folder and ``deepimagej`` command. The folder is
``$DEEPIMAGEJ_CONFIG``, else ``$XDG_CONFIG_HOME/deepimagej`` (``~/.config/deepimagej``; on
Windows ``%APPDATA%\\deepimagej``).
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from deepimagej.errors import RemoteError
from deepimagej.remote.protocol import DEFAULT_WORKDIR, FINISHED

DB_NAME = "remote.sqlite"
#: seconds a connection may take (TCP, SSH banner, authentication) before the host counts as down
DEFAULT_TIMEOUT_S = 10.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS hosts (
    name TEXT PRIMARY KEY, address TEXT NOT NULL, key TEXT, workdir TEXT NOT NULL, deepimagej TEXT NOT NULL,
    timeout REAL NOT NULL, added REAL NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT, remote_id TEXT UNIQUE NOT NULL, host TEXT NOT NULL, kind TEXT NOT NULL,
    state TEXT NOT NULL, progress TEXT NOT NULL DEFAULT '{}', created REAL NOT NULL, started REAL, finished REAL,
    run_seconds REAL, updated REAL NOT NULL, error TEXT, spec TEXT NOT NULL, local TEXT NOT NULL,
    total_bytes INTEGER NOT NULL DEFAULT 0, uploaded_bytes INTEGER NOT NULL DEFAULT 0,
    present_bytes INTEGER NOT NULL DEFAULT 0, client_pid INTEGER, client_started REAL, workdir TEXT,
    submitted INTEGER NOT NULL DEFAULT 0, fetched REAL);
CREATE TABLE IF NOT EXISTS hashes (
    path TEXT PRIMARY KEY, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, sha256 TEXT NOT NULL);
"""


def config_dir() -> Path:
    """The folder of the client's table (see the module docstring)."""
    if os.environ.get("DEEPIMAGEJ_CONFIG"):
        return Path(os.environ["DEEPIMAGEJ_CONFIG"]).expanduser()
    if os.name == "nt" and os.environ.get("APPDATA"):
        return Path(os.environ["APPDATA"]) / "deepimagej"
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "deepimagej"


@dataclass
class Host:
    """A server known by name.

    Attributes:
        name: what the user calls it (``gpu``).
        address: ``[user@]host[:port]`` as given (``host`` may be an alias of ``~/.ssh/config``).
        key: path of the private key file to use, or ``None`` (the SSH agent, ``~/.ssh/config``, ``~/.ssh/id_*``).
        workdir: the server's work folder (``~`` is the server user's home).
        deepimagej: the server's ``deepimagej`` command (a name on the login ``PATH`` or a path).
        timeout: seconds to wait for the server before it counts as down.
    """

    name: str
    address: str
    key: str | None = None
    workdir: str = DEFAULT_WORKDIR
    deepimagej: str = "deepimagej"
    timeout: float = DEFAULT_TIMEOUT_S

    @property
    def user(self) -> str | None:
        return split_address(self.address)[0]

    @property
    def hostname(self) -> str:
        return split_address(self.address)[1]

    @property
    def port(self) -> int | None:
        return split_address(self.address)[2]


def split_address(address: str) -> tuple[str | None, str, int | None]:
    """``[user@]host[:port]`` (``[::1]:22`` for IPv6) -> ``(user, host, port)``; ``ValueError`` for a bad port."""
    user, _, rest = address.rpartition("@")
    port = None
    if rest.startswith("[") and "]" in rest:
        host, tail = rest[1 : rest.index("]")], rest[rest.index("]") + 1 :]
        if tail:
            port = int(tail.removeprefix(":"))
    elif rest.count(":") == 1:
        host, _, tail = rest.partition(":")
        port = int(tail)
    else:
        host = rest
    return user or None, host, port


def parse_address(address: str) -> str:
    """Check ``[user@]host[:port]``; returns it unchanged.

    Raises:
        RemoteError: empty host, a bad port, spaces.
    """
    try:
        _user, hostname, port = split_address(address)
    except ValueError:
        hostname, port = "", None
    bad = not hostname or any(c.isspace() for c in address) or (port is not None and not 0 < port < 65536)
    if bad:
        raise RemoteError(
            f"host address {address!r}: expected user@host or user@host:port (e.g. me@gpu.example.org:22)"
        )
    return address


@dataclass
class Job:
    """One row of the job table (see :mod:`deepimagej.remote.client` for what the fields mean)."""

    id: int
    remote_id: str
    host: str
    kind: str
    state: str
    progress: dict[str, Any]
    created: float
    started: float | None
    finished: float | None
    run_seconds: float | None
    updated: float
    error: str | None
    spec: dict[str, Any]
    local: dict[str, Any]
    total_bytes: int
    uploaded_bytes: int
    present_bytes: int
    client_pid: int | None
    client_started: float | None
    workdir: str | None
    submitted: bool
    fetched: float | None
    note: str | None = field(default=None, compare=False)

    @property
    def finished_state(self) -> bool:
        return self.state in FINISHED

    @property
    def elapsed(self) -> float | None:
        """Seconds the job has run on the server (all attempts), or since its upload began."""
        if self.run_seconds is not None and self.finished is not None:
            return self.run_seconds
        if self.started is None:
            return None
        return (self.finished or time.time()) - self.started


_JSON_FIELDS = ("progress", "spec", "local")


class Store:
    """The SQLite table of hosts and jobs (one file, safe for several clients at once)."""

    def __init__(self, folder: Path | None = None) -> None:
        self.folder = Path(folder) if folder is not None else config_dir()
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.folder / DB_NAME, timeout=30, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise RemoteError(f"{self.folder / DB_NAME}: cannot open the job table ({exc})") from None
        self._db.row_factory = sqlite3.Row

    def close(self) -> None:
        self._db.close()

    # ------------------------------------------------------------------ hosts
    def add_host(self, host: Host, replace: bool = False) -> Host:
        """Record a host; an existing name is an error unless ``replace``."""
        if not replace and self.find_host(host.name) is not None:
            raise RemoteError(
                f"a host named '{host.name}' exists; remove it first (deepimagej remote remove {host.name})"
            )
        self._db.execute(
            "INSERT OR REPLACE INTO hosts VALUES (?, ?, ?, ?, ?, ?, ?)",
            (host.name, host.address, host.key, host.workdir, host.deepimagej, host.timeout, time.time()),
        )
        return host

    def find_host(self, name: str) -> Host | None:
        row = self._db.execute("SELECT * FROM hosts WHERE name = ?", (name,)).fetchone()
        return (
            None
            if row is None
            else Host(
                row["name"], row["address"], row["key"], row["workdir"], row["deepimagej"], row["timeout"]
            )
        )

    def host(self, name: str) -> Host:
        """The host named ``name``.

        Raises:
            RemoteError: no such host (the message lists the known ones).
        """
        host = self.find_host(name)
        if host is None:
            known = ", ".join(h.name for h in self.hosts()) or "none yet"
            raise RemoteError(
                f"no host named '{name}' (known: {known}); add it with: "
                f"deepimagej remote add {name} user@server"
            )
        return host

    def hosts(self) -> list[Host]:
        rows = self._db.execute("SELECT name FROM hosts ORDER BY name").fetchall()
        return [self.host(r["name"]) for r in rows]

    def remove_host(self, name: str) -> None:
        self.host(name)
        self._db.execute("DELETE FROM hosts WHERE name = ?", (name,))

    # ------------------------------------------------------------------ jobs
    def new_job(
        self, remote_id: str, host: str, kind: str, spec: dict[str, Any], local: dict[str, Any]
    ) -> Job:
        """A new job in state ``queued``, owned by this process."""
        now = time.time()
        pid = os.getpid()
        cur = self._db.execute(
            "INSERT INTO jobs (remote_id, host, kind, state, created, updated, spec, local, client_pid, client_started) "
            "VALUES (?, ?, ?, 'queued', ?, ?, ?, ?, ?, ?)",
            (
                remote_id,
                host,
                kind,
                now,
                now,
                json.dumps(spec),
                json.dumps(local),
                pid,
                _process_started(pid),
            ),
        )
        assert cur.lastrowid is not None  # set by every successful INSERT
        return self.job(cur.lastrowid)

    def find_job(self, job_id: int) -> Job | None:
        row = self._db.execute("SELECT * FROM jobs WHERE id = ?", (int(job_id),)).fetchone()
        if row is None:
            return None
        values = dict(row)
        for key in _JSON_FIELDS:
            values[key] = json.loads(values[key])
        values["submitted"] = bool(values["submitted"])
        return Job(**values)

    def job(self, job_id: int | str) -> Job:
        """The job with this id.

        Raises:
            RemoteError: no such job.
        """
        try:
            number = int(job_id)
        except (TypeError, ValueError):
            raise RemoteError(f"job id {job_id!r}: expected a number from 'deepimagej jobs'") from None
        job = self.find_job(number)
        if job is None:
            raise RemoteError(f"no job {job_id} in {self.folder / DB_NAME} (deepimagej jobs lists them)")
        return job

    def jobs(self) -> list[Job]:
        rows = self._db.execute("SELECT id FROM jobs ORDER BY id").fetchall()
        return [self.job(r["id"]) for r in rows]

    def update_job(self, job_id: int, **fields: Any) -> Job:
        """Change fields of a job (JSON fields given as Python objects)."""
        fields["updated"] = time.time()
        for key in _JSON_FIELDS:
            if key in fields:
                fields[key] = json.dumps(fields[key])
        if "submitted" in fields:
            fields["submitted"] = int(bool(fields["submitted"]))
        columns = ", ".join(f"{k} = ?" for k in fields)
        self._db.execute(
            f"UPDATE jobs SET {columns} WHERE id = ?", (*fields.values(), int(job_id))
        )  # column names are ours, values are parameters
        return self.job(job_id)

    def claim_job(self, job_id: int) -> Job:
        """Make this process the job's client (the one uploading/following it)."""
        pid = os.getpid()
        return self.update_job(job_id, client_pid=pid, client_started=_process_started(pid))

    def delete_job(self, job_id: int) -> None:
        self._db.execute("DELETE FROM jobs WHERE id = ?", (int(job_id),))

    # ------------------------------------------------------------------ file hashes
    def cached_sha256(self, path: Path, size: int, mtime_ns: int) -> str | None:
        """The SHA-256 of ``path`` computed before, if the file has not changed since."""
        row = self._db.execute("SELECT * FROM hashes WHERE path = ?", (str(path),)).fetchone()
        if row is not None and row["size"] == size and row["mtime_ns"] == mtime_ns:
            return str(row["sha256"])
        return None

    def remember_sha256(self, path: Path, size: int, mtime_ns: int, digest: str) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO hashes VALUES (?, ?, ?, ?)", (str(path), size, mtime_ns, digest)
        )


def _process_started(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def client_alive(job: Job) -> bool:
    """Whether the process that uploads or follows ``job`` still runs (same pid and start time)."""
    if not job.client_pid:
        return False
    try:
        proc = psutil.Process(job.client_pid)
        return job.client_started is None or abs(proc.create_time() - job.client_started) < 0.01
    except psutil.Error:
        return False
