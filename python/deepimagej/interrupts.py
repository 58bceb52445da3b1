"""Ctrl-C before a ``deepimagej`` command runs: one line and status 130, never a traceback.

Python takes about half a second to load the commands. :func:`quiet_while_loading` (called first
by :mod:`deepimagej.__main__`, with the standard library only) makes SIGINT in that time end the
process quietly; :func:`command_started` (called by :func:`deepimagej.cli_errors.friendly_errors`)
gives SIGINT back to the command, which stops its work and removes partial outputs. A SIGINT that
the process was started to ignore (``nohup``, a background job) stays ignored.
"""

from __future__ import annotations

import signal
import sys
import threading
from typing import Any


def _interrupted_while_loading(signum: int, frame: Any) -> None:
    sys.stderr.write("error: interrupted; nothing was done\n")
    raise SystemExit(130)


def quiet_while_loading() -> None:
    """Until :func:`command_started`, SIGINT exits with one line on stderr and status 130."""
    if threading.current_thread() is threading.main_thread() and (
        signal.getsignal(signal.SIGINT) is signal.default_int_handler
    ):
        signal.signal(signal.SIGINT, _interrupted_while_loading)


def command_started() -> None:
    """SIGINT raises KeyboardInterrupt again (the command's own handling), if :func:`quiet_while_loading` ran."""
    if threading.current_thread() is threading.main_thread() and (
        signal.getsignal(signal.SIGINT) is _interrupted_while_loading
    ):
        signal.signal(signal.SIGINT, signal.default_int_handler)
