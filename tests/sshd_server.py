"""A real OpenSSH server for the remote-job tests, on 127.0.0.1 on a free port, with throw-away keys.

The "remote" deepimagej is this installation, reached only through SSH: a small wrapper script
runs ``python -m deepimagej`` with ``PYTHONPATH`` set to the folder holding the
``deepimagej`` package under test (so a worktree or a fresh clone tests its own code).
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil

import deepimagej

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def keygen(path: Path) -> Path:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", path.name, "-f", str(path)], check=True
    )
    return path


@dataclass
class SSHServer:
    """The running sshd and everything a client needs to reach it."""

    root: Path
    port: int
    process: subprocess.Popen
    user: str
    user_key: Path
    other_key: Path
    host_key: Path
    ssh_config: Path
    known_hosts: Path
    deepimagej: Path
    workdir: Path

    @property
    def address(self) -> str:
        return f"{self.user}@127.0.0.1:{self.port}"

    @classmethod
    def start(cls, root: Path) -> SSHServer:
        if not Path(SSHD).is_file() or shutil.which("ssh-keygen") is None:
            raise RuntimeError(
                "OpenSSH server not installed (Debian: openssh-server; make setup installs it)"
            )
        if os.geteuid() == 0:
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation folder
        host_key, user_key, other_key = (
            keygen(root / "host_key"),
            keygen(root / "user_key"),
            keygen(root / "other_key"),
        )
        authorized = root / "authorized_keys"
        authorized.write_text(Path(f"{user_key}.pub").read_text())
        port = free_port()
        config = root / "sshd_config"
        config.write_text(
            "\n".join(
                [
                    f"Port {port}",
                    "ListenAddress 127.0.0.1",
                    f"HostKey {host_key}",
                    f"PidFile {root / 'sshd.pid'}",
                    f"AuthorizedKeysFile {authorized}",
                    "StrictModes no",
                    "UsePAM no",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "PubkeyAuthentication yes",
                    "PermitRootLogin prohibit-password",
                    "Subsystem sftp internal-sftp",
                    "AllowTcpForwarding yes",
                    "MaxStartups 100",
                    "MaxSessions 100",
                    "LogLevel ERROR",
                    "",
                ]
            )
        )
        wrapper = root / "deepimagej-under-test"
        package_parent = Path(deepimagej.__file__).resolve().parents[1]
        wrapper.write_text(
            f"#!/bin/sh\nPYTHONPATH={shlex.quote(str(package_parent))} "
            f'exec {shlex.quote(sys.executable)} -m deepimagej "$@"\n'
        )
        wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        known_hosts = root / "known_hosts"
        ssh_config = root / "ssh_config"
        ssh_config.write_text(f"Host *\n  UserKnownHostsFile {known_hosts}\n  IdentitiesOnly yes\n")
        log = open(root / "sshd.log", "wb")  # noqa: SIM115 - kept open for the server's life
        process = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", str(config)], stdout=log, stderr=log, stdin=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 15
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"sshd did not start: {(root / 'sshd.log').read_text()[-500:]}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    process.kill()
                    raise RuntimeError("sshd did not listen within 15 s") from None
                time.sleep(0.05)
        import getpass

        return cls(
            root,
            port,
            process,
            getpass.getuser(),
            user_key,
            other_key,
            host_key,
            ssh_config,
            known_hosts,
            wrapper,
            root / "workdir",
        )

    @contextlib.contextmanager
    def client(self, host: str = "local") -> Iterator[SSHServer]:
        """This process (and its children) as the client: its own job table and SSH config, and ``host``
        registered with the user key, the work folder and the deepimagej under test, its host key accepted."""
        from deepimagej import remote

        saved = {k: os.environ.get(k) for k in ("DEEPIMAGEJ_CONFIG", "DEEPIMAGEJ_SSH_CONFIG")}
        os.environ["DEEPIMAGEJ_CONFIG"] = str(self.root / "client-config")
        os.environ["DEEPIMAGEJ_SSH_CONFIG"] = str(self.ssh_config)
        try:
            remote.add_host(
                host,
                self.address,
                key=self.user_key,
                workdir=str(self.workdir),
                deepimagej=str(self.deepimagej),
                replace=True,
            )
            remote.test_host(host, accept_host_key=True)
            yield self
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value

    def sessions(self) -> list[psutil.Process]:
        """The per-connection sshd processes (children of the listening one)."""
        return psutil.Process(self.process.pid).children(recursive=False)

    def drop_connections(self) -> int:
        """Kill every client connection (as a network failure would); returns how many."""
        sessions = self.sessions()
        for proc in sessions:
            proc.send_signal(signal.SIGKILL)
        psutil.wait_procs(sessions, timeout=5)
        return len(sessions)

    def job_processes(self, folder: Path | None = None) -> list[psutil.Process]:
        """Processes working inside a job folder (``folder``, default: any job of the work folder)."""
        root = str(folder or self.workdir / "jobs")
        found = []
        for proc in psutil.process_iter(["pid"]):
            with contextlib.suppress(psutil.Error):
                if proc.cwd().startswith(root) and proc.status() != psutil.STATUS_ZOMBIE:
                    found.append(proc)
        return found

    def stop(self) -> None:
        leftovers = self.job_processes()  # jobs a failed test left running
        for proc in leftovers + self.sessions():
            with contextlib.suppress(psutil.Error):
                proc.kill()
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
