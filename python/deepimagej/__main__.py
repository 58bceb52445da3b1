"""The ``deepimagej`` command (and ``python -m deepimagej``).

Loading the commands takes about half a second. Ctrl-C (SIGINT) in that time, or before a command's
own handling starts, ends the process with one line on stderr and status 130, as it does once the
command runs, never with a traceback (:mod:`deepimagej.interrupts`).

A command that started the embedded ImageJ ends without the Java VM's teardown, as
``deepimagej macro`` always has (:func:`deepimagej.imagej.cli.finish`): JPype's teardown of a VM
whose AWT threads are still alive can crash the process (SIGSEGV in ``AWT-EventQueue``) after
the command has written its outputs, which would turn a success into exit status 139.
"""

from __future__ import annotations

import sys

from deepimagej.interrupts import quiet_while_loading


def main() -> None:
    """Run the ``deepimagej`` command line."""
    quiet_while_loading()
    from deepimagej.cli import main as cli

    try:
        cli()
    except SystemExit as exc:
        _end(exc.code)
        raise
    _end(0)


def _end(code: int | str | None) -> None:
    """After the embedded ImageJ ran: end the process now, with ``code``; otherwise return."""
    if "jpype" not in sys.modules:
        return
    from deepimagej.imagej.jvm import jvm_started

    if not jvm_started():
        return
    from deepimagej.imagej.cli import finish

    if isinstance(code, str):
        finish(1, code)
    finish(code or 0)


if __name__ == "__main__":
    main()
