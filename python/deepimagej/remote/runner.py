"""The supervisor of one job on the server: runs the job's ``deepimagej`` command and keeps its status.

Started detached by :func:`deepimagej.remote.server.submit` (``deepimagej remote server run-job``).
The command runs in its own process group with a pseudo-terminal as its output, so that it
prints exactly what it prints for a user at a terminal (the tile progress bar of ``deepimagej
run``, the epoch lines of ``deepimagej train``). The supervisor turns that output into the job's
log (``log.txt``, plain lines) and its progress (``status.json``, refreshed every few seconds,
which is also the heartbeat the client watches), and records how the job ended: done, failed
(with the reason: the command's own ``error:`` line, a full disk, a signal) or cancelled.
"""

from __future__ import annotations

import codecs
import contextlib
import json
import os
import pty
import re
import select
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from deepimagej.remote import protocol as P
from deepimagej.remote.server import (
    Workdir,
    job_lock,
    kill_group,
    process_info,
    read_status,
    update_status,
    worker_command,
    worker_env,
    write_status,
)

#: seconds between two status refreshes while a job runs (the heartbeat)
HEARTBEAT_S = 2.0
#: a failed job's disk counts as full below this much free space (or 0.5 % of its size)
DISK_FULL_BYTES = 32 * 2**20
_ANSI = re.compile(r"\x1b(?:\[[0-9;?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[@-Z\\-_])")
_TILES = re.compile(r"\btiles\b.*?(\d+)\s*/\s*(\d+)")
_EPOCH = re.compile(r"\bepoch\s+(\d+)\s*/\s*(\d+)", re.IGNORECASE)
_METRIC = re.compile(
    r"\b(val[ _]loss|val[ _]acc(?:uracy)?|val[ _]iou|loss)\s*[:=]?\s*(-?\d+(?:\.\d+)?(?:e-?\d+)?|nan)",
    re.IGNORECASE,
)


class Terminal:
    """What a program writes to its terminal, as log lines and progress.

    Lines ended by a carriage return alone are redrawn in place (progress bars): they update
    :attr:`progress` but are not logged. Escape sequences (colours, cursor moves) are dropped.
    """

    def __init__(self) -> None:
        self.progress: dict[str, Any] = {}
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._pending = ""

    def feed(self, data: bytes, final: bool = False) -> list[str]:
        """Add output; returns the lines completed by it."""
        self._pending += self._decoder.decode(data, final)
        lines = []
        while True:
            match = re.search(r"\r\n|\r|\n", self._pending)
            if match is None:
                break
            segment, self._pending = self._pending[: match.start()], self._pending[match.end() :]
            text = _ANSI.sub("", segment).rstrip()
            bar = self._parse(text)
            if match.group() != "\r" and text and not bar:
                lines.append(text)
        if final and self._pending.strip():
            text = _ANSI.sub("", self._pending).rstrip()
            self._pending = ""
            if not self._parse(text):
                lines.append(text)
        return lines

    def _parse(self, text: str) -> bool:
        """Update the progress from one line; True when the line is a progress bar (not worth logging)."""
        tiles = _TILES.search(text)
        if tiles:
            self.progress["tiles"] = [int(tiles.group(1)), int(tiles.group(2))]
            return True
        epoch = _EPOCH.search(text)
        if epoch:
            self.progress.update(epoch=int(epoch.group(1)), epochs=int(epoch.group(2)))
            for name, value in _METRIC.findall(text):
                key = re.sub(r"[ _]+", "_", name.lower()).replace("accuracy", "acc")
                self.progress[key] = float(value)
        return False


def failure_reason(returncode: int, log_tail: str, workdir: Path) -> str:
    """Why a job failed, in one line: its ``error:`` line, a signal, or its last line; and a full disk."""
    lines = [ln.strip() for ln in log_tail.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error:")]
    if returncode < 0:
        name = signal.Signals(-returncode).name
        hint = " (out of memory, or killed on the server)" if returncode == -signal.SIGKILL else ""
        reason = f"the job's process was killed by {name}{hint}"
    elif errors:
        reason = errors[-1].removeprefix("error:").strip()
    else:
        reason = lines[-1] if lines else f"exit status {returncode}"
    usage = shutil.disk_usage(workdir)
    if "No space left on device" in log_tail or usage.free < max(DISK_FULL_BYTES, usage.total // 200):
        reason += (
            f"; the server's disk is full ({usage.free / 1e6:.1f} MB free in {workdir}): free some space "
            f"there, then 'deepimagej jobs resume'"
        )
    return reason


def run_job(workdir: Workdir, job_id: str) -> None:
    """Supervise job ``job_id`` until its command ends (or it is cancelled); never raises for the job's faults."""
    folder = workdir.existing_job(job_id)
    stop = {"requested": False}

    def on_term(_signum: int, _frame: Any) -> None:
        stop["requested"] = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    spec = json.loads((folder / P.JOB_FILE).read_text(encoding="utf-8"))
    status = read_status(folder)
    with open(folder / P.LOG_FILE, "a", encoding="utf-8") as log:
        if status.get("attempt", 1) > 1:
            log.write(
                f"---- resumed (attempt {status['attempt']}) {time.strftime('%Y-%m-%d %H:%M:%S')} ----\n"
            )
            log.flush()
        if status.get("cancel_requested"):
            _finish(folder, "cancelled", None, "cancelled", {})
            return
        master, slave = pty.openpty()
        try:
            proc = subprocess.Popen(
                worker_command(workdir, folder, spec),
                cwd=folder / P.WORK,
                env=worker_env(workdir),
                stdin=subprocess.DEVNULL,
                stdout=slave,
                stderr=slave,
                start_new_session=True,
                close_fds=True,
            )
        except OSError as exc:
            os.close(master)
            _finish(folder, "failed", None, f"cannot start deepimagej on the server: {exc.strerror}", {})
            return
        finally:
            os.close(slave)
        worker = {**process_info(proc.pid), "pgid": proc.pid}
        attempt_started = time.time()
        update_status(
            folder,
            state="running",
            worker=worker,
            attempt_started=attempt_started,
            started=status.get("started") or attempt_started,
        )
        terminal, cancelling = Terminal(), False
        tail: list[str] = []
        next_beat = time.monotonic() + HEARTBEAT_S
        while True:
            if stop["requested"] and not cancelling:
                cancelling = True
                _append(log, ["---- cancelled ----"])
                kill_group(worker)
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: every writer of the terminal is gone
                    data = b""
                if not data:
                    break
                lines = terminal.feed(data)
                _append(log, lines)
                tail = (tail + lines)[-50:]
            if time.monotonic() >= next_beat:
                with contextlib.suppress(OSError):  # a full disk: the job's own error says so
                    update_status(folder, progress=terminal.progress)
                next_beat = time.monotonic() + HEARTBEAT_S
        lines = terminal.feed(b"", final=True)
        _append(log, lines)
        tail = (tail + lines)[-50:]
        os.close(master)
        returncode = proc.wait()
        if cancelling:
            kill_group(worker)  # anything of the job's process group still there
        run_s = time.time() - attempt_started
    if cancelling:
        _finish(folder, "cancelled", returncode, "cancelled", terminal.progress, run_s)
    elif returncode == 0:
        _finish(folder, "done", 0, None, terminal.progress, run_s)
    else:
        _finish(
            folder,
            "failed",
            returncode,
            failure_reason(returncode, "\n".join(tail), workdir.root),
            terminal.progress,
            run_s,
        )


def _append(log: Any, lines: list[str]) -> None:
    """Add lines to the job's log (a full disk loses log lines, never the job)."""
    if lines:
        with contextlib.suppress(OSError):
            log.write("".join(line + "\n" for line in lines))
            log.flush()


def _finish(
    folder: Path,
    state: str,
    returncode: int | None,
    error: str | None,
    progress: dict[str, Any],
    run_s: float = 0.0,
) -> None:
    with job_lock(folder):
        status = read_status(folder)
        if status["state"] in P.FINISHED:  # cancelled meanwhile by the cancel verb
            return
        status.update(
            state=state,
            returncode=returncode,
            error=error,
            finished=time.time(),
            run_seconds=status.get("run_seconds", 0.0) + run_s,
        )
        if progress:
            status["progress"] = progress
        with contextlib.suppress(OSError):
            write_status(folder, status)
