"""A private X server (Xvfb) so that ImageJ 1.x commands work without a screen.

ImageJ 1.x commands (Analyze Particles, Watershed, ResultsTable...) need AWT; with
``java.awt.headless=true`` many of them throw ``HeadlessException``. "Headless" for
deepimagej therefore means: no *user-visible* display is needed; when there is none, a
private Xvfb is started on a free display number and stopped when Python exits.

It never outlives Python, however Python ends: Xvfb starts with a parent-death signal
(``prctl(PR_SET_PDEATHSIG)``, through util-linux ``setpriv`` where there is one), so the
kernel terminates it when Python is killed (``kill -9``) too. That signal follows the
*thread* that started the child, so Xvfb is started from a thread of its own that lives as
long as the process.
"""

from __future__ import annotations

import atexit
import ctypes
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from deepimagej.errors import ImageJError

SOCKET_DIR = Path("/tmp/.X11-unix")
FIRST_DISPLAY = 99
LAST_DISPLAY = 199
START_TIMEOUT_S = 10.0


@dataclass
class Xvfb:
    """A running Xvfb process owned by this Python process."""

    display: str
    process: subprocess.Popen
    #: the kernel terminates it when this process ends (parent-death signal in place)
    dies_with_parent: bool = False

    def stop(self) -> None:
        """Terminate the server (idempotent)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


_running: Xvfb | None = None
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _spawn(argv: list[str], errlog) -> tuple[subprocess.Popen, bool]:
    """Start ``argv`` so that the kernel terminates it when this process ends, however it ends.

    Returns:
        The process, and whether the parent-death signal is in place (Linux).
    """
    setpriv = shutil.which("setpriv")
    if setpriv is not None:
        argv, preexec = [setpriv, "--pdeathsig", "TERM", "--", *argv], None
    else:
        preexec = _die_with_parent if sys.platform.startswith("linux") else None
    dies_with_parent = setpriv is not None or preexec is not None
    started: dict[str, object] = {}
    ready = threading.Event()

    def owner() -> None:  # the child's parent for the kernel: must live as long as the process
        try:
            started["process"] = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=errlog, preexec_fn=preexec
            )  # noqa: PLW1509 - only without setpriv; Xvfb starts before Java's threads
        except OSError as exc:
            started["error"] = exc
        ready.set()
        threading.Event().wait()

    threading.Thread(target=owner, name="deepimagej-xvfb", daemon=True).start()
    ready.wait()
    if "error" in started:
        raise ImageJError(f"could not start Xvfb ({started['error']})")
    return started["process"], dies_with_parent  # type: ignore[return-value]


def stop_private_at_exit() -> None:
    """For a process about to end with ``os._exit``: make sure its private Xvfb ends too.

    Nothing to do where the kernel ends it with the process (stopping it first would make
    Java's X connection fail and exit the process with status 1 before ``os._exit``);
    elsewhere it is sent SIGTERM now.
    """
    if _running is not None and not _running.dies_with_parent and _running.process.poll() is None:
        _running.process.terminate()


def _display_in_use(n: int) -> bool:
    return (SOCKET_DIR / f"X{n}").exists() or Path(f"/tmp/.X{n}-lock").exists()


def start_xvfb(screen: str = "1280x1024x24") -> Xvfb:
    """Start Xvfb on the first free display from :99 and wait until it accepts clients.

    Raises:
        ImageJError: Xvfb is not installed or did not start.
    """
    global _running
    if _running is not None and _running.process.poll() is None:
        return _running
    exe = shutil.which("Xvfb")
    if exe is None:
        raise ImageJError(
            "no display and no Xvfb: ImageJ commands need an X display. Install Xvfb "
            "(Debian/Ubuntu: sudo apt-get install xvfb) or set DISPLAY to a running X server."
        )
    last_error = ""
    for n in range(FIRST_DISPLAY, LAST_DISPLAY + 1):
        if _display_in_use(n):
            continue
        errlog = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the server
        proc, dies_with_parent = _spawn([exe, f":{n}", "-screen", "0", screen, "-nolisten", "tcp"], errlog)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if proc.poll() is not None:  # lost a race for this display number, or broken
                errlog.seek(0)
                err = errlog.read().decode(errors="replace").strip()
                last_error = err.splitlines()[-1] if err else f"Xvfb exited with code {proc.returncode}"
                break
            if (SOCKET_DIR / f"X{n}").exists():
                _running = Xvfb(f":{n}", proc, dies_with_parent)
                atexit.register(_running.stop)
                return _running
            time.sleep(0.05)
        else:
            proc.kill()
            last_error = f"display :{n} did not come up in {START_TIMEOUT_S:.0f} s"
    raise ImageJError(f"could not start Xvfb ({last_error or 'no free display number'})")


def ensure_display(display: str | None = None) -> str:
    """Return the X display to use, starting a private Xvfb when there is none.

    Args:
        display: ``None`` (use ``$DISPLAY`` if set, else start Xvfb), ``"xvfb"`` (always
            start a private Xvfb) or an explicit display such as ``":0"``.

    The chosen display is written to ``os.environ["DISPLAY"]`` so that the JVM, started
    afterwards in this process, uses it.
    """
    if display is None:
        display = os.environ.get("DISPLAY") or "xvfb"
    if display == "xvfb":
        display = start_xvfb().display
    os.environ["DISPLAY"] = display
    return display


def require_display(what: str) -> str:
    """The user's X display (``$DISPLAY``), for a window the user is meant to see.

    Args:
        what: how the user asked for the window, for the message (e.g. "`deepimagej imagej`").

    Raises:
        ImageJError: ``DISPLAY`` is not set (a private Xvfb would show the window to nobody).
    """
    display = os.environ.get("DISPLAY", "")
    if not display:
        raise ImageJError(
            f"no display (DISPLAY is not set): run {what} on a desktop, or under `xvfb-run` for a virtual one"
        )
    return display
