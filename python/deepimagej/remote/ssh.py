"""The SSH connection to a host (paramiko): keys, host keys, commands as argument lists, SFTP.

What a user's ``ssh`` does, deepimagej does: ``~/.ssh/config`` (``HostName``, ``User``, ``Port``,
``IdentityFile``, ``IdentitiesOnly``, ``UserKnownHostsFile``, ``ProxyCommand``, ``ProxyJump``,
``ConnectTimeout``), the SSH agent, and ``known_hosts``. Authentication is by key only (never a
password). A server whose host key is not in ``known_hosts`` is refused, with its fingerprint and
the command that accepts it (``--accept-host-key``, which appends it to ``known_hosts``); a server
whose key changed is refused. ``$DEEPIMAGEJ_SSH_CONFIG`` names another config file (tests).

Commands run on the server are argument lists joined with :func:`shlex.join`: a file name with
``;``, spaces or ``$(...)`` stays one argument, never shell code.
"""

from __future__ import annotations

import contextlib
import errno
import getpass
import json
import logging
import os
import shlex
import socket
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deepimagej.errors import ConnectionLost, RemoteError
from deepimagej.remote.protocol import SERVER_ARGS
from deepimagej.remote.store import Host

if TYPE_CHECKING:  # pragma: no cover
    from typing import Self  # Python 3.11

    import paramiko

_SILENT = logging.NullHandler()
#: bytes per SFTP read/write call
CHUNK = 1 << 20
#: seconds between SSH keep-alive messages (a dead connection is noticed within a few of them)
KEEPALIVE_S = 10


def ssh_config_path() -> Path:
    """The OpenSSH client configuration read: ``$DEEPIMAGEJ_SSH_CONFIG`` or ``~/.ssh/config``."""
    return Path(os.environ.get("DEEPIMAGEJ_SSH_CONFIG") or "~/.ssh/config").expanduser()


def _paramiko() -> Any:
    try:
        import paramiko
    except ImportError:
        raise RemoteError(
            "remote hosts need the paramiko package: pip install 'deepimagej[remote]'"
        ) from None
    # paramiko logs what it then raises; errors reach the user once, as deepimagej's one-line message
    logging.getLogger("paramiko").addHandler(_SILENT)
    return paramiko


def fingerprint(key: paramiko.PKey) -> str:
    """``ssh-ed25519 SHA256:...``: a host key as ``ssh-keygen -l`` shows it."""
    return f"{key.get_name()} {key.fingerprint}"


class Target:
    """Where and how to connect: the host merged with its ``~/.ssh/config`` entry."""

    def __init__(self, host: Host) -> None:
        paramiko = _paramiko()
        path = ssh_config_path()
        config = paramiko.SSHConfig.from_path(str(path)) if path.is_file() else paramiko.SSHConfig()
        entry = config.lookup(host.hostname)
        self.name = host.name
        self.hostname: str = entry.get("hostname", host.hostname)
        self.port: int = host.port or int(entry.get("port", 22))
        self.user: str = host.user or entry.get("user") or _local_user()
        keys = [host.key] if host.key else list(entry.get("identityfile", []))
        self.key_files = [str(Path(k).expanduser()) for k in keys]
        if host.key and not Path(self.key_files[0]).is_file():
            raise RemoteError(
                f"{host.name}: key file {self.key_files[0]} not found (deepimagej remote add ... --key FILE)"
            )
        self.key_files = [k for k in self.key_files if Path(k).is_file()]
        self.identities_only = entry.get("identitiesonly", "no").lower() == "yes"
        known = entry.get("userknownhostsfile", "~/.ssh/known_hosts").split()
        self.known_hosts = Path(known[0]).expanduser()
        self.global_known_hosts = [
            Path(p).expanduser()
            for p in entry.get("globalknownhostsfile", "/etc/ssh/ssh_known_hosts").split()
        ]
        self.proxy_command: str | None = entry.get("proxycommand")
        self.proxy_jump: str | None = entry.get("proxyjump")
        self.timeout = float(entry.get("connecttimeout", host.timeout))
        self.host_key_name = self.hostname if self.port == 22 else f"[{self.hostname}]:{self.port}"

    def describe(self) -> str:
        return f"{self.user}@{self.hostname}:{self.port}"


def _local_user() -> str:
    return getpass.getuser()


class _HostKeyPolicy:
    """Unknown host key: refused with its fingerprint, or appended to ``known_hosts`` when accepting."""

    def __init__(self, target: Target, accept: bool) -> None:
        self.target, self.accept = target, accept

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        t = self.target
        if not self.accept:
            raise RemoteError(
                f"{t.name}: unknown host key for {hostname} ({fingerprint(key)}); if this is the server's key "
                f"(ask its administrator, or run ssh-keyscan there), accept it with: "
                f"deepimagej remote test {t.name} --accept-host-key"
            )
        t.known_hosts.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(t.known_hosts, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(fd, "a", encoding="utf-8") as fh:
            fh.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")
        client.get_host_keys().add(hostname, key.get_name(), key)


class Connection:
    """An open SSH connection to a host (use :func:`connect`)."""

    def __init__(
        self, host: Host, target: Target, client: paramiko.SSHClient, jump: Connection | None
    ) -> None:
        self.host, self.target, self.client, self._jump = host, target, client, jump
        self._sftp: paramiko.SFTPClient | None = None

    # ------------------------------------------------------------------ life
    def close(self) -> None:
        with contextlib.suppress(Exception):
            if self._sftp is not None:
                self._sftp.close()
        with contextlib.suppress(Exception):
            self.client.close()
        if self._jump is not None:
            self._jump.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def alive(self) -> bool:
        transport = self.client.get_transport()
        return transport is not None and transport.is_active()

    @contextlib.contextmanager
    def guard(self, doing: str) -> Iterator[None]:
        """Turn a broken connection in the middle of ``doing`` into :class:`ConnectionLost`."""
        paramiko = _paramiko()
        try:
            yield
        except (EOFError, TimeoutError, paramiko.SSHException, ConnectionError) as exc:
            raise ConnectionLost(
                f"{self.host.name}: the connection was lost while {doing} "
                f"({type(exc).__name__}: {exc or 'closed'})"
            ) from None
        except OSError as exc:
            if self.alive and exc.errno not in (errno.EPIPE, errno.ECONNRESET):
                raise
            raise ConnectionLost(f"{self.host.name}: the connection was lost while {doing} ({exc})") from None

    # ------------------------------------------------------------------ commands
    def execute(
        self, argv: Sequence[str], stdin: bytes | None = None, timeout: float | None = None
    ) -> tuple[int, bytes, bytes]:
        """Run one command (an argument list, quoted with :func:`shlex.join`) on the server.

        Returns:
            ``(exit status, stdout, stderr)``.
        """
        command = shlex.join([str(a) for a in argv])
        with self.guard(f"running {argv[0]}"):
            channel = self.client.get_transport().open_session(timeout=self.target.timeout)
            channel.settimeout(timeout or max(60.0, 6 * self.target.timeout))
            channel.exec_command(command)
            if stdin:
                channel.sendall(stdin)
            channel.shutdown_write()
            out, err = bytearray(), bytearray()
            while True:
                got = False
                while channel.recv_ready():
                    out += channel.recv(65536)
                    got = True
                while channel.recv_stderr_ready():
                    err += channel.recv_stderr(65536)
                    got = True
                if (
                    channel.exit_status_ready()
                    and not channel.recv_ready()
                    and not channel.recv_stderr_ready()
                ):
                    break
                if not got:
                    time.sleep(0.01)
            status = channel.recv_exit_status()
            channel.close()
        return status, bytes(out), bytes(err)

    def server(self, verb: str, *args: str, payload: Any = None, timeout: float | None = None) -> Any:
        """Run ``deepimagej remote server VERB --workdir WORKDIR ARGS`` on the server; returns its JSON answer.

        Raises:
            RemoteError: no deepimagej there, an incompatible one, or the verb's own one-line error.
        """
        command = remote_command(self.host.deepimagej)
        data = None if payload is None else json.dumps(payload).encode("utf-8")
        status, out, err = self.execute(
            [command, *SERVER_ARGS, verb, "--workdir", self.host.workdir, *args], stdin=data, timeout=timeout
        )
        text = err.decode("utf-8", "replace").strip()
        if status == 0:
            try:
                return json.loads(out.decode("utf-8"))
            except ValueError:
                raise RemoteError(
                    f"{self.host.name}: '{self.host.deepimagej}' on the server did not answer as "
                    f"deepimagej does (got {out[:60]!r}); check --deepimagej"
                ) from None
        if (
            status == 127
            or "command not found" in text
            or "No such file or directory" in text.splitlines()[0:1]
        ):
            raise RemoteError(
                f"{self.host.name}: no deepimagej on the server ('{self.host.deepimagej}' not found on its login PATH); "
                f"install it there (pip install 'deepimagej[all]') or give its path: "
                f"deepimagej remote add {self.host.name} {self.host.address} --deepimagej /path/to/bin/deepimagej"
            )
        if status == 126:
            raise RemoteError(f"{self.host.name}: '{self.host.deepimagej}' on the server is not executable")
        if "No such command" in text or "No such option" in text:
            raise RemoteError(
                f"{self.host.name}: the server's deepimagej ('{self.host.deepimagej}') is too old for "
                f"remote jobs; upgrade it there: pip install -U 'deepimagej[all]'"
            )
        lines = [ln for ln in text.splitlines() if ln.strip()]
        errors = [ln for ln in lines if ln.startswith("error:")]
        if errors:
            raise RemoteError(f"{self.host.name}: {errors[-1].removeprefix('error:').strip()}")
        raise RemoteError(
            f"{self.host.name}: deepimagej failed on the server (exit status {status}): "
            f"{lines[-1] if lines else 'no message'}"
        )

    # ------------------------------------------------------------------ files
    @property
    def sftp(self) -> paramiko.SFTPClient:
        if self._sftp is None:
            with self.guard("opening SFTP"):
                self._sftp = self.client.open_sftp()
                self._sftp.get_channel().settimeout(max(60.0, 6 * self.target.timeout))
        return self._sftp

    def upload(self, local: Path, remote: str, offset: int, sent: Callable[[int], None]) -> None:
        """Copy ``local`` to ``remote`` from byte ``offset`` on (an interrupted upload continues); ``sent(n)`` per chunk.

        Raises:
            ConnectionLost: the connection broke.
            RemoteError: the server could not write (a full disk, permissions).
        """
        with self.guard(f"uploading {local.name}"), open(local, "rb") as src:
            try:
                dst = self.sftp.open(remote, "r+b" if offset else "wb")
            except OSError as exc:
                if not self.alive:
                    raise
                raise RemoteError(f"{self.host.name}: cannot write {remote} on the server ({exc})") from None
            with dst:
                dst.set_pipelined(True)
                dst.seek(offset)
                src.seek(offset)
                while chunk := src.read(CHUNK):
                    try:
                        dst.write(chunk)
                    except OSError as exc:
                        if not self.alive:
                            raise
                        raise RemoteError(
                            f"{self.host.name}: writing {remote} on the server failed ({exc}): "
                            f"is its disk full? deepimagej remote test {self.host.name} shows "
                            f"the free space"
                        ) from None
                    sent(len(chunk))

    def download(self, remote: str, local: Path, received: Callable[[int], None] | None = None) -> None:
        """Copy the server's ``remote`` file to ``local`` (the caller makes it atomic)."""
        done = [0]

        def callback(total_so_far: int, _size: int) -> None:
            if received is not None:
                received(total_so_far - done[0])
            done[0] = total_so_far

        with self.guard(f"downloading {Path(remote).name}"):
            self.sftp.get(remote, str(local), callback=callback)

    def read(self, remote: str, offset: int = 0, limit: int | None = None) -> bytes:
        """Bytes of a (small) server file from ``offset`` on; empty when the file does not exist."""
        with self.guard(f"reading {Path(remote).name}"):
            try:
                with self.sftp.open(remote, "rb") as fh:
                    fh.seek(offset)
                    return fh.read(limit) if limit is not None else fh.read()
            except FileNotFoundError:
                return b""


def remote_command(path: str) -> str:
    """The server's ``deepimagej`` as an argument: ``~/x`` becomes ``x`` (commands start in the home folder)."""
    return path.removeprefix("~/")


def connect(host: Host, accept_host_key: bool = False, _jumped: int = 0) -> Connection:
    """Open an SSH connection to ``host`` (keys only; the host key checked against ``known_hosts``).

    Args:
        host: the host.
        accept_host_key: append an unknown host key to ``known_hosts`` instead of refusing it.

    Raises:
        RemoteError: every reason the connection cannot be made, in one line with what to do.
    """
    paramiko = _paramiko()
    target = Target(host)
    jump = sock = None
    if target.proxy_jump and target.proxy_jump.lower() != "none":
        if _jumped > 4:
            raise RemoteError(f"{host.name}: ProxyJump loops in {ssh_config_path()}")
        hop = target.proxy_jump.split(",")[0].strip()
        jump = connect(
            Host(f"{host.name} (via {hop})", hop, host.key, host.workdir, host.deepimagej, host.timeout),
            accept_host_key,
            _jumped + 1,
        )
        try:
            sock = jump.client.get_transport().open_channel(
                "direct-tcpip", (target.hostname, target.port), ("127.0.0.1", 0), timeout=target.timeout
            )
        except (paramiko.SSHException, OSError) as exc:
            jump.close()
            raise RemoteError(
                f"{host.name}: the jump host {hop} cannot reach {target.hostname}:{target.port} ({exc})"
            ) from None
    elif target.proxy_command and target.proxy_command.lower() != "none":
        sock = paramiko.ProxyCommand(target.proxy_command)
    client = paramiko.SSHClient()
    for path in target.global_known_hosts + [target.known_hosts]:
        if path.is_file():
            with contextlib.suppress(OSError):
                client.load_system_host_keys(str(path))
    client.set_missing_host_key_policy(_HostKeyPolicy(target, accept_host_key))
    started = time.monotonic()
    try:
        client.connect(
            target.hostname,
            port=target.port,
            username=target.user,
            key_filename=target.key_files or None,
            allow_agent=not (target.identities_only and target.key_files),
            look_for_keys=not target.key_files,
            timeout=target.timeout,
            banner_timeout=target.timeout,
            auth_timeout=target.timeout,
            channel_timeout=target.timeout,
            sock=sock,
            compress=False,
        )
    except BaseException as exc:
        client.close()
        if jump is not None:
            jump.close()
        if isinstance(exc, RemoteError) or not isinstance(exc, Exception):
            raise
        raise RemoteError(_connect_error(exc, host, target, time.monotonic() - started)) from None
    client.get_transport().set_keepalive(KEEPALIVE_S)
    return Connection(host, target, client, jump)


def _connect_error(exc: Exception, host: Host, target: Target, waited: float) -> str:
    paramiko = _paramiko()
    where = f"{host.name} ({target.describe()})"
    if isinstance(exc, paramiko.BadHostKeyException):
        return (
            f"{where}: THE HOST KEY CHANGED: the server now shows {fingerprint(exc.key)}, known_hosts has "
            f"{fingerprint(exc.expected_key)}; refused (someone may be intercepting the connection). If the "
            f"server was reinstalled, remove the old key with: ssh-keygen -R '{target.host_key_name}' "
            f"-f {target.known_hosts}"
        )
    if isinstance(exc, paramiko.PasswordRequiredException):
        return (
            f"{where}: the key {', '.join(target.key_files)} is protected by a passphrase; load it into the SSH "
            f"agent (ssh-add KEY) and try again"
        )
    if isinstance(exc, paramiko.AuthenticationException):
        keys = ", ".join(target.key_files) or "the SSH agent's and ~/.ssh/id_* keys"
        return (
            f"{where}: the server refused the key for user '{target.user}' (tried {keys}); check the user name "
            f"and add the public key (KEY.pub) to ~/.ssh/authorized_keys on the server"
        )
    if isinstance(exc, paramiko.ssh_exception.NoValidConnectionsError):
        return (
            f"{where}: connection refused (no SSH server listening on port {target.port}; is the host up "
            f"and the port right?)"
        )
    if isinstance(exc, ConnectionRefusedError):
        return f"{where}: connection refused (no SSH server listening on port {target.port})"
    if isinstance(exc, socket.gaierror):
        return f"{where}: unknown host name '{target.hostname}' (check the address or ~/.ssh/config)"
    if isinstance(exc, TimeoutError) or (
        isinstance(exc, paramiko.SSHException)
        and ("banner" in str(exc).lower() or "no existing session" in str(exc).lower())
    ):
        if waited < 0.9 * target.timeout:
            return (
                f"{where}: the connection closed before the SSH greeting (no SSH server there, or a "
                f"firewall or proxy in between)"
            )
        return (
            f"{where}: no SSH answer within {waited:.0f} s (the host is down, or a firewall drops the "
            f"connection)"
        )
    if isinstance(exc, OSError) and exc.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH):
        return f"{where}: the host is unreachable ({exc.strerror})"
    if isinstance(exc, paramiko.SSHException):
        return f"{where}: SSH failed ({exc})"
    return f"{where}: cannot connect ({type(exc).__name__}: {exc})"
